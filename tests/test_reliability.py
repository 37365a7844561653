"""The faults an outside test found (issue "Reliability"): each case failed before its fix."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from amtcli.atomic import atomic_path, temporary_prefix
from amtcli.cli import app
from test_training import RECIPE   # the tiny onf recipe of the training tests (steps = {steps})

RATE = 16000


def wav_with_rate(path: Path, rate: int, n_samples: int = 4000) -> None:
    """A 16-bit mono PCM WAV whose header says ``rate`` Hz (written by hand)."""
    samples = (np.sin(np.arange(n_samples) * 0.05) * 8000).astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    path.write_bytes(header + b"data" + struct.pack("<I", len(samples)) + samples)


def test_absurd_sample_rates_are_one_error_line_and_the_batch_goes_on(tmp_path, random_onf_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    wav_with_rate(folder / "one-hertz.wav", 1)
    wav_with_rate(folder / "huge-rate.wav", 4_000_000)
    sf.write(folder / "good.wav", np.zeros(RATE, dtype=np.float32), RATE)
    result = CliRunner().invoke(app, ["transcribe", str(folder), "--output-dir", str(tmp_path / "out"),
                                      "--model", str(random_onf_checkpoint)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "sample rate 1 Hz is outside" in result.output and "sample rate 4000000 Hz" in result.output
    assert (tmp_path / "out" / "good.mid").exists()


def test_a_255_byte_input_name_is_transcribed(tmp_path, random_onf_checkpoint):
    name = "n" * 251 + ".wav"
    sf.write(tmp_path / name, np.zeros(RATE, dtype=np.float32), RATE)
    result = CliRunner().invoke(app, ["transcribe", str(tmp_path / name), "--output-dir", str(tmp_path / "out"),
                                      "--model", str(random_onf_checkpoint), "--format", "mid,csv"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["n" * 251 + ".csv", "n" * 251 + ".mid"]


def test_temporary_names_stay_within_255_bytes_and_stale_parts_are_removed(tmp_path):
    target = tmp_path / ("é" * 125 + ".mid")               # 254 bytes in UTF-8
    assert len(temporary_prefix(target).encode()) + 8 + len(".part.mid") <= 255
    stale = tmp_path / (temporary_prefix(target) + "k1lled_x.part.mid")
    stale.write_bytes(b"half a file")
    other = tmp_path / ".other.mid.abcdefgh.part.mid"
    other.write_bytes(b"not ours")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and not stale.exists() and other.exists()


def test_sigterm_keeps_finished_outputs_and_removes_partial_ones(tmp_path, random_onf_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(40):
        sf.write(folder / f"f{i:02d}.wav", np.random.default_rng(i).normal(0, 0.1, RATE * 20).astype(np.float32), RATE)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "amtcli", "transcribe", str(folder), "--output-dir", str(out),
                                "--model", str(random_onf_checkpoint), "--format", "mid,csv"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and any(out.glob("*.csv"))):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, (stdout, stderr)
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert not [p for p in out.iterdir() if ".part" in p.name]
    for csv_file in out.glob("*.csv"):
        assert csv_file.read_text().startswith("onset,offset,pitch")   # whole files only


def test_damaged_weights_are_refused(tmp_path, random_onf_checkpoint):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from amtcli.checkpoint import load_checkpoint
    from amtcli.errors import ModelError

    flipped = tmp_path / "flipped"
    shutil.copytree(random_onf_checkpoint, flipped)
    data = bytearray((flipped / "model.safetensors").read_bytes())
    for i in range(len(data) - 64, len(data)):
        data[i] ^= 0x5A
    (flipped / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 does not match"):
        load_checkpoint(flipped)

    nans = tmp_path / "nans"
    shutil.copytree(random_onf_checkpoint, nans)
    state = load_file(str(nans / "model.safetensors"))
    name = sorted(state)[0]
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(nans / "model.safetensors"))
    config = json.loads((nans / "config.json").read_text())
    config.pop("weights_sha256")                     # a checkpoint without a recorded hash
    (nans / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=f"tensor '{name}' holds NaN"):
        load_checkpoint(nans)


def test_a_path_to_a_bundled_folder_is_verified_like_its_name(tmp_path, monkeypatch):
    import shutil

    from amtcli import registry
    from amtcli.errors import ModelError

    root = tmp_path / "models"
    shutil.copytree(registry.models_root() / "cnn", root / "cnn")
    monkeypatch.setattr(registry, "models_root", lambda: root)
    assert registry.resolve_model(str(root / "cnn"))[1] == root / "cnn"
    data = bytearray((root / "cnn" / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (root / "cnn" / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError):
        registry.resolve_model(str(root / "cnn"))


def _train(tmp_path, dataset, steps, *extra):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(steps=steps))
    return CliRunner().invoke(app, ["train", "--recipe", str(recipe), "--dataset", str(dataset),
                                    "--run-dir", str(tmp_path / "run"), *extra])


def test_resume_point_is_one_unit(tmp_path, tiny_dataset):
    from amtcli.training.loop import _resume_point

    assert _train(tmp_path, tiny_dataset, 2).exit_code == 0
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    os.rename(run / "last", run / ".last.old")          # killed between the two renames
    (run / ".last.123.part").mkdir()                     # and a half-written new one
    assert _resume_point(run) == run / "last" and not (run / ".last.123.part").exists()
    result = _train(tmp_path, tiny_dataset, 4)
    assert result.exit_code == 0 and "resumed from step 2" in result.output


@pytest.mark.parametrize("damage", ["trainer_state.pt", "model.safetensors", "mixed"])
def test_a_damaged_resume_point_is_one_line(tmp_path, tiny_dataset, damage):
    assert _train(tmp_path, tiny_dataset, 2).exit_code == 0
    last = tmp_path / "run" / "last"
    if damage == "mixed":                                # weights of another step than the optimizer's
        config = json.loads((last / "config.json").read_text())
        config["step"] = 99
        (last / "config.json").write_text(json.dumps(config))
    else:
        (last / damage).write_bytes(b"garbage")
    result = _train(tmp_path, tiny_dataset, 4)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot be resumed" in result.output and "--no-resume" in result.output
    assert _train(tmp_path, tiny_dataset, 2, "--no-resume").exit_code == 0


def test_synth_into_an_existing_file_is_one_line(tmp_path):
    target = tmp_path / "corpus"
    target.write_text("a file")
    result = CliRunner().invoke(app, ["data", "synth", str(target)])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output and "Traceback" not in result.output


def test_missing_init_checkpoint_is_named_and_resolved_from_the_recipe_folder(tmp_path, tiny_dataset,
                                                                              random_onf_checkpoint):
    import shutil

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    text = RECIPE.format(steps=2) + '[init]\ncheckpoint = "start"\nmodules = ["acoustic"]\n'
    (recipes / "r.toml").write_text(text)
    args = ["train", "--recipe", str(recipes / "r.toml"), "--dataset", str(tiny_dataset),
            "--run-dir", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "[init] checkpoint start not found" in result.output
    shutil.copytree(random_onf_checkpoint, recipes / "start")      # next to the recipe, not in the cwd
    assert CliRunner().invoke(app, args).exit_code == 0


def test_eval_folders_count_a_missing_estimate_as_misses_and_exit_1(tmp_path):
    for folder in ("ref", "est"):
        (tmp_path / folder).mkdir()
    for name in ("a", "b"):
        (tmp_path / "ref" / f"{name}.csv").write_text("onset,offset,pitch\n0.5,1.0,60\n")
    (tmp_path / "est" / "a.csv").write_text("onset,offset,pitch\n0.5,1.0,60\n")
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "ref"), str(tmp_path / "est")])
    assert result.exit_code == 1
    assert "reference only: b.csv (scored as all missed)" in result.output
    assert "0.500" in result.output                      # the mean of 1.0 and 0.0


def test_odd_paths_get_messages_that_say_what_they_are(tmp_path, random_onf_checkpoint):
    loop = tmp_path / "loop.wav"
    loop.symlink_to(loop)
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    sf.write(tmp_path / "a.wav", np.zeros(RATE, dtype=np.float32), RATE)
    runner = CliRunner()
    model = ["--model", str(random_onf_checkpoint)]
    out = runner.invoke(app, ["transcribe", str(loop), "-o", str(tmp_path / "l.mid"), *model]).output
    assert "symbolic link that leads nowhere" in out
    out = runner.invoke(app, ["transcribe", str(fifo), "-o", str(tmp_path / "p.mid"), *model]).output
    assert "not a regular file" in out
    out = runner.invoke(app, ["transcribe", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a.wav" / "x.mid"),
                              *model]).output
    assert "a.wav is a file, not a folder" in " ".join(out.split())


def test_an_output_file_whose_format_is_left_out_is_a_usage_error(tmp_path, random_onf_checkpoint):
    sf.write(tmp_path / "a.wav", np.zeros(RATE, dtype=np.float32), RATE)
    result = CliRunner().invoke(app, ["transcribe", str(tmp_path / "a.wav"), "-o", str(tmp_path / "x.csv"),
                                      "--format", "mid", "--model", str(random_onf_checkpoint)])
    assert result.exit_code == 2 and "leaves csv out" in " ".join(result.output.split())
    assert not (tmp_path / "x.mid").exists()


def test_eval_says_how_many_midi_drum_and_zero_length_notes_it_left_out(tmp_path):
    import mido

    midi = mido.MidiFile(ticks_per_beat=480)          # 120 bpm: 960 ticks per second
    piano = mido.MidiTrack()
    piano += [mido.Message("note_on", note=60, velocity=80, time=480), mido.Message("note_off", note=60, time=480),
              mido.Message("note_on", note=62, velocity=80, time=0), mido.Message("note_off", note=62, time=0)]
    drums = mido.MidiTrack()
    for _ in range(3):
        drums += [mido.Message("note_on", channel=9, note=36, velocity=80, time=0),
                  mido.Message("note_off", channel=9, note=36, time=96)]
    midi.tracks += [piano, drums]
    midi.save(str(tmp_path / "ref.mid"))
    (tmp_path / "est.csv").write_text("onset,offset,pitch\n0.5,1.0,60\n")
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "ref.mid"), str(tmp_path / "est.csv")])
    assert result.exit_code == 0, result.output
    assert "3 drum notes and 1 zero-length note left out" in " ".join(result.output.split())
