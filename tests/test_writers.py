"""Writers: MIDI round trip, exact CSV text, PNG output, atomic and no-overwrite behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from amtcli.errors import OutputError
from amtcli.references import load_notes
from amtcli.types import Note, Transcription
from amtcli.writers import write_csv, write_midi, write_pianoroll
from amtcli.writers import pianoroll as pianoroll_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

NOTES = (
    Note(0.5, 1.25, 60, velocity=100, program=0),
    Note(0.5, 0.75, 64, velocity=37, program=40),
    Note(1.0031, 2.4567, 67, velocity=64, program=40),
    Note(2.0, 3.0, 48, velocity=80, program=None),
)


@pytest.fixture
def transcription() -> Transcription:
    return Transcription(NOTES, duration_s=3.5, source="in/take.wav", model="test")


def _no_leftovers(folder: Path, expected: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == expected


def test_midi_round_trip(tmp_path: Path, transcription: Transcription) -> None:
    path = tmp_path / "out.mid"
    write_midi(transcription, path, tempo_bpm=90.0)
    midi = pretty_midi.PrettyMIDI(str(path))
    times, tempi = midi.get_tempo_changes()
    assert times[0] == 0.0 and tempi[0] == pytest.approx(90.0, abs=1e-3)
    tracks = {(int(i.program), i.name): i for i in midi.instruments}
    assert set(tracks) == {(0, "piano"), (40, "violin"), (0, "transcription")}
    assert not any(i.is_drum for i in midi.instruments)
    read = sorted(
        (n.start, n.end, n.pitch, n.velocity, name)
        for (_, name), instrument in tracks.items()
        for n in instrument.notes
    )
    name_of = {0: "piano", 40: "violin", None: "transcription"}
    expected = sorted((n.onset_s, n.offset_s, n.pitch, n.velocity, name_of[n.program]) for n in NOTES)
    assert len(read) == len(expected)
    for got, want in zip(read, expected):
        assert got[0] == pytest.approx(want[0], abs=1e-3)
        assert got[1] == pytest.approx(want[1], abs=1e-3)
        assert got[2:] == want[2:]


def test_midi_read_back_by_reference_loader(tmp_path: Path, transcription: Transcription) -> None:
    path = tmp_path / "out.mid"
    write_midi(transcription, path)
    notes = load_notes(path)
    assert [(n.pitch, n.velocity) for n in notes] == [(n.pitch, n.velocity) for n in transcription.notes]
    # program None goes to a program-0 track named "transcription" and reads back as None
    assert [n.program for n in notes] == [n.program for n in transcription.notes]
    assert None in [n.program for n in notes] and 0 in [n.program for n in notes]   # real pianos stay 0
    # at 120 bpm the tick is 0.5 ms: times on the millisecond grid come back on their tick
    # (equal up to float rounding), others within half a tick
    for got, want in zip(notes, transcription.notes):
        for a, b in ((got.onset_s, want.onset_s), (got.offset_s, want.offset_s)):
            on_grid = abs(b * 1000 - round(b * 1000)) < 1e-9
            assert abs(a - b) <= (1e-9 if on_grid else 0.00025), (a, b)
    grid = [Note(k / 1000, k / 1000 + 0.005, 60) for k in range(1, 3000, 7)]  # many ms-grid times
    write_midi(Transcription(tuple(grid), duration_s=3.5, source="x.wav", model="test"), tmp_path / "grid.mid")
    back = load_notes(tmp_path / "grid.mid")
    assert max(abs(a.onset_s - b.onset_s) for a, b in zip(back, grid)) < 1e-9


def test_midi_rejects_bad_tempo(tmp_path: Path, transcription: Transcription) -> None:
    with pytest.raises(ValueError):
        write_midi(transcription, tmp_path / "x.mid", tempo_bpm=0)
    _no_leftovers(tmp_path, set())


def test_csv_exact_text(tmp_path: Path, transcription: Transcription) -> None:
    path = tmp_path / "out.csv"
    write_csv(transcription, path)
    assert path.read_text(encoding="utf-8") == (
        "onset,offset,pitch,velocity,instrument\n"
        "0.500,1.250,60,100,piano\n"
        "0.500,0.750,64,37,violin\n"
        "1.003,2.457,67,64,violin\n"
        "2.000,3.000,48,80,\n"
    )


def test_csv_round_trip_and_sub_millisecond_note(tmp_path: Path) -> None:
    notes = (Note(1.0001, 1.0003, 60, program=73), Note(0.25, 0.5, 61, velocity=5, program=42))
    path = tmp_path / "out.csv"
    write_csv(Transcription(notes, duration_s=2.0), path)
    back = load_notes(path)
    assert [(n.onset_s, n.offset_s, n.pitch, n.velocity, n.program) for n in back] == [
        (0.25, 0.5, 61, 5, 42),
        (1.0, 1.001, 60, 80, 73),
    ]


def test_empty_transcription_writes_every_format(tmp_path: Path) -> None:
    empty = Transcription((), duration_s=1.0)
    write_csv(empty, tmp_path / "e.csv")
    write_midi(empty, tmp_path / "e.mid")
    write_pianoroll(empty, tmp_path / "e.png")
    assert (tmp_path / "e.csv").read_text() == "onset,offset,pitch,velocity,instrument\n"
    assert load_notes(tmp_path / "e.mid") == []
    assert (tmp_path / "e.png").read_bytes().startswith(PNG_MAGIC)


def test_pianoroll_is_png(tmp_path: Path, transcription: Transcription) -> None:
    plain, overlay = tmp_path / "plain.png", tmp_path / "overlay.png"
    write_pianoroll(transcription, plain)
    reference = [Note(0.5, 1.2, 60, program=0), Note(2.9, 3.4, 72, program=40)]
    write_pianoroll(transcription, overlay, reference=reference, title="with reference")
    for path in (plain, overlay):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert plain.read_bytes() != overlay.read_bytes()
    _no_leftovers(tmp_path, {"plain.png", "overlay.png"})


def test_pianoroll_leaves_pyplot_alone(tmp_path: Path, transcription: Transcription) -> None:
    import matplotlib

    backend = matplotlib.get_backend()
    write_pianoroll(transcription, tmp_path / "p.png")
    assert matplotlib.get_backend() == backend
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


@pytest.mark.parametrize(
    ("writer", "name"),
    [(write_midi, "a.mid"), (write_csv, "a.csv"), (write_pianoroll, "a.png")],
)
def test_refuses_overwrite_and_keeps_original(tmp_path: Path, transcription, writer, name) -> None:
    path = tmp_path / name
    path.write_bytes(b"original")
    with pytest.raises(OutputError, match="--overwrite"):
        writer(transcription, path)
    assert path.read_bytes() == b"original"
    _no_leftovers(tmp_path, {name})
    writer(transcription, path, overwrite=True)
    assert path.read_bytes() != b"original"
    _no_leftovers(tmp_path, {name})


def test_exception_mid_write_leaves_nothing(tmp_path: Path, transcription, monkeypatch) -> None:
    import pretty_midi as pm

    def explode(self, filename):
        Path(filename).write_bytes(b"half")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pm.PrettyMIDI, "write", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_midi(transcription, tmp_path / "a.mid")
    _no_leftovers(tmp_path, set())


def test_exception_mid_write_pianoroll_leaves_nothing(tmp_path: Path, transcription, monkeypatch) -> None:
    from matplotlib.figure import Figure

    def explode(self, fname, **kwargs):
        Path(fname).write_bytes(b"half")
        raise RuntimeError("renderer died")

    monkeypatch.setattr(Figure, "savefig", explode)
    with pytest.raises(RuntimeError, match="renderer died"):
        write_pianoroll(transcription, tmp_path / "a.png")
    _no_leftovers(tmp_path, set())


def test_exception_mid_write_csv_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import amtcli.writers.csv as csv_module

    calls = []

    def explode(program):
        calls.append(program)
        if len(calls) == 2:
            raise RuntimeError("lookup failed")
        return "piano"

    monkeypatch.setattr(csv_module, "program_name", explode)
    notes = (Note(0.0, 1.0, 60), Note(1.0, 2.0, 62))
    with pytest.raises(RuntimeError, match="lookup failed"):
        write_csv(Transcription(notes, duration_s=2.0), tmp_path / "a.csv")
    _no_leftovers(tmp_path, set())


def test_pitch_ticks_use_note_names() -> None:
    assert pianoroll_module._note_name(60) == "C4"
    assert pianoroll_module._pitch_ticks(20, 90) == [24, 36, 48, 60, 72, 84]
    assert pianoroll_module._pitch_ticks(59, 62) == [59, 60, 61, 62]


def test_outputs_get_normal_permissions(tmp_path):
    import os
    import stat

    from amtcli.atomic import atomic_path

    with atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("hi")
    mode = stat.S_IMODE(os.stat(tmp_path / "x.txt").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_attention_png_of_a_window_without_tokens_spans_the_window_without_warnings(tmp_path):
    """A window the decoder says nothing for (weights (0, n_positions)) still gets a map of
    the window's span, and matplotlib raises no warning about an empty axis."""
    import warnings

    from amtcli.writers.attention import write_attention_png

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = write_attention_png(np.zeros((0, 250)), [], tmp_path / "w.png", 3.0, 0.02)
    assert path.exists() and path.stat().st_size > 0
