"""A corpus of bad and odd inputs through one ``amtcli transcribe`` batch.

Every case must end in a one-line error for that file or a correct (possibly empty)
result; never a traceback, never a half-written output, and the rest of the batch
goes on.
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from amtcli.cli import app

RATE = 16000


def tone(seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return mono if channels == 1 else np.repeat(mono[:, None], channels, axis=1)


def build_corpus(folder: Path) -> dict[str, str]:
    """Write the cases; returns file name -> expected outcome ("ok" or "error")."""
    folder.mkdir()
    sf.write(folder / "good.wav", tone(3.0), RATE)
    full = folder / "full.wav"
    sf.write(full, tone(3.0), RATE)
    data = full.read_bytes()
    (folder / "truncated.wav").write_bytes(data[: len(data) // 2])   # header promises more than there is
    (folder / "corrupt.wav").write_bytes(data[:12] + bytes(range(256)) * 8)  # RIFF/WAVE, then garbage chunks
    (folder / "text.wav").write_text("this is not audio\n")
    (folder / "zero.wav").write_bytes(b"")
    sf.write(folder / "one-sample.wav", np.array([0.1], dtype=np.float32), RATE)
    sf.write(folder / "rate-8k.wav", tone(2.0, 8000), 8000)
    sf.write(folder / "rate-96k.flac", tone(2.0, 96000), 96000)
    sf.write(folder / "six-channels.wav", tone(2.0, channels=6), RATE)
    nan = tone(2.0)
    nan[100:200] = np.nan
    sf.write(folder / "nans.wav", nan, RATE, subtype="FLOAT")
    sf.write(folder / "silence.wav", np.zeros(RATE * 2, dtype=np.float32), RATE)
    noise = np.random.default_rng(0).uniform(-1, 1, RATE * 2).astype(np.float32)
    sf.write(folder / "noise.wav", noise, RATE, subtype="FLOAT")
    (folder / "song.wav").mkdir()                                     # a directory with an audio name
    full.unlink()
    return {
        "good": "ok", "truncated": "ok", "corrupt": "error", "text": "error", "zero": "error",
        "one-sample": "ok", "rate-8k": "ok", "rate-96k": "ok", "six-channels": "ok", "nans": "error",
        "silence": "ok", "noise": "ok",
    }


def test_the_bad_input_corpus_in_one_batch(tmp_path):
    """With the bundled default model, so that silence must come out empty."""
    corpus = build_corpus(tmp_path / "in")
    out = tmp_path / "out"
    files = sorted(str(p) for p in (tmp_path / "in").iterdir())
    result = CliRunner().invoke(app, ["transcribe", *files, "--output-dir", str(out), "--format", "mid,csv"])
    assert result.exit_code == 1, result.output          # some files failed, the batch finished
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.splitlines()
    for name, expected in corpus.items():
        mine = [line for line in lines if f"/{name}." in line and (line.startswith("ok ") or line.startswith("error: "))]
        assert len(mine) == 1, (name, result.output)      # exactly one line per file
        outputs = sorted(p.name for p in out.glob(f"{name}.*")) if out.exists() else []
        if mine[0].startswith("ok "):
            assert expected in ("ok", "any"), (name, mine[0])
            assert outputs == [f"{name}.csv", f"{name}.mid"]
        else:
            assert expected in ("error", "any"), (name, mine[0])
            assert outputs == []                          # nothing half-written
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert len(warnings) == 1 and "/truncated.wav: the file ends before its header says" in warnings[0], warnings
    song_dir = [line for line in lines if "song.wav" in line]
    assert len(song_dir) == 1 and song_dir[0].startswith("error: ")
    assert not any(p.name.startswith(".") or p.suffix == ".tmp" for p in out.rglob("*"))  # no temp files left
    silent = (out / "silence.csv").read_text().splitlines()
    assert len(silent) == 1                               # header only: a correct empty result


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_output_folder_is_one_line_per_file(tmp_path, random_onf_checkpoint):
    sf.write(tmp_path / "a.wav", tone(1.0), RATE)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = CliRunner().invoke(app, ["transcribe", str(tmp_path / "a.wav"), "--output-dir", str(locked),
                                          "--model", random_onf_checkpoint])
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error" in result.output and list(locked.iterdir()) == []


def test_disk_full_leaves_no_partial_file_and_the_batch_goes_on(tmp_path, random_onf_checkpoint, monkeypatch):
    """ENOSPC after part of the first MIDI file reached the disk (simulated in the MIDI library)."""
    import errno

    import pretty_midi

    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", tone(1.0), RATE)
    real = pretty_midi.PrettyMIDI.write
    calls = {"n": 0}

    def full_disk(self, filename):
        calls["n"] += 1
        if calls["n"] == 1:
            Path(filename).write_bytes(b"MThd\x00\x00")     # a partial file, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, filename)

    monkeypatch.setattr(pretty_midi.PrettyMIDI, "write", full_disk)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["transcribe", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"),
                                      "--output-dir", str(out), "--model", random_onf_checkpoint])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    outcome = [line.split()[0] for line in result.output.splitlines() if line.startswith(("ok ", "error: "))]
    assert outcome == ["error:", "ok"], result.output
    assert "No space left on device" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["b.mid"]       # no partial a.mid, no temp file


def test_output_folder_that_cannot_be_created_is_one_line_per_file(tmp_path, random_onf_checkpoint):
    """Works as root too: the output folder would have to live inside a regular file."""
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", tone(1.0), RATE)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    result = CliRunner().invoke(app, ["transcribe", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"),
                                      "--output-dir", str(blocker / "out"), "--model", random_onf_checkpoint])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and all("cannot write" in line for line in errors)
    assert blocker.read_text() == "a file, not a folder"


def test_ctrl_c_keeps_finished_outputs_and_leaves_no_partial_file(tmp_path, random_onf_checkpoint, monkeypatch):
    """Ctrl-C while the second file's MIDI is being written; --skip-existing then resumes."""
    import pretty_midi

    for name in ("a", "b", "c"):
        sf.write(tmp_path / f"{name}.wav", tone(1.0), RATE)
    real = pretty_midi.PrettyMIDI.write
    calls = {"n": 0}

    def interrupted(self, filename):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(filename).write_bytes(b"MThd")
            raise KeyboardInterrupt
        return real(self, filename)

    monkeypatch.setattr(pretty_midi.PrettyMIDI, "write", interrupted)
    out = tmp_path / "out"
    inputs = [str(tmp_path / f"{n}.wav") for n in ("a", "b", "c")]
    runner = CliRunner()
    result = runner.invoke(app, ["transcribe", *inputs, "--output-dir", str(out), "--model", random_onf_checkpoint])
    assert result.exit_code == 130 and "interrupted" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.mid"]          # finished, complete; nothing partial
    monkeypatch.setattr(pretty_midi.PrettyMIDI, "write", real)
    again = runner.invoke(app, ["transcribe", *inputs, "--output-dir", str(out), "--model", random_onf_checkpoint,
                                "--skip-existing"])
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in out.iterdir()) == ["a.mid", "b.mid", "c.mid"]
    assert sum(line.startswith("skip ") for line in again.output.splitlines()) == 1
