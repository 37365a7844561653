"""Reading references and estimates: our CSV, MusicNet labels, MIDI, and malformed input."""

from __future__ import annotations

from pathlib import Path

import pretty_midi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amtcli.errors import LabelError
from amtcli.references import load_notes, remove_overlaps
from amtcli.types import Note

REALDEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "realdev"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_our_csv_full_header(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "a.csv",
        "onset,offset,pitch,velocity,instrument\n0.5,1.25,60,100,violin\n\n2,3,48,7,\n",
    )
    assert load_notes(path) == [Note(0.5, 1.25, 60, 100, 40), Note(2.0, 3.0, 48, 7, None)]


def test_our_csv_without_velocity_and_reordered(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.csv", "pitch,instrument,offset,onset\n60,Acoustic Grand Piano,1.0,0.5\n62,42,2,1\n")
    assert load_notes(path) == [Note(0.5, 1.0, 60, 80, 0), Note(1.0, 2.0, 62, 80, 42)]


def test_our_csv_minimal_header_and_header_only(tmp_path: Path) -> None:
    assert load_notes(_write(tmp_path, "a.csv", "onset,offset,pitch\n0,0.1,21\n")) == [Note(0.0, 0.1, 21)]
    assert load_notes(_write(tmp_path, "b.csv", "onset,offset,pitch,velocity,instrument\n")) == []


@pytest.mark.skipif(not REALDEV.is_dir(), reason="shared realdev data not present")
def test_realdev_notes_csv_reads() -> None:
    notes = load_notes(REALDEV / "bach10_02_AchLiebenChristen" / "notes.csv")
    assert len(notes) == 283
    assert notes[:2] == [Note(0.223, 0.833, 60, 80, 65), Note(0.223, 0.553, 64, 80, 71)]
    assert {n.program for n in notes} == {40, 65, 70, 71}


def test_musicnet_labels_are_converted(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "1727.csv",
        "start_time,end_time,instrument,note,start_beat,end_beat,note_value\n"
        "44100,88200,1,60,0,1,Quarter\n"
        "22050,66150,41,72,0.5,1,Eighth\n",
    )
    assert load_notes(path) == [Note(0.5, 1.5, 72, 80, 40), Note(1.0, 2.0, 60, 80, 0)]


def test_musicnet_bad_row_names_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "m.csv",
        "start_time,end_time,instrument,note,start_beat,end_beat,note_value\n1,2,1,60,,,\n5,x,1,60,,,\n",
    )
    with pytest.raises(LabelError, match=r"m\.csv:3"):
        load_notes(path)


def _midi_file(path: Path) -> Path:
    midi = pretty_midi.PrettyMIDI(resolution=960)
    violin = pretty_midi.Instrument(program=40, name="violin")
    violin.notes.append(pretty_midi.Note(velocity=90, pitch=76, start=0.5, end=1.0))
    violin.notes.append(pretty_midi.Note(velocity=90, pitch=77, start=1.0, end=1.0))
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes.append(pretty_midi.Note(velocity=100, pitch=36, start=0.0, end=0.1))
    piano = pretty_midi.Instrument(program=0)
    piano.notes.append(pretty_midi.Note(velocity=30, pitch=60, start=0.0, end=0.5))
    piano.control_changes.append(pretty_midi.ControlChange(number=64, value=127, time=0.0))
    piano.control_changes.append(pretty_midi.ControlChange(number=64, value=0, time=2.0))
    midi.instruments.extend([violin, drums, piano])
    midi.write(str(path))
    return path


@pytest.mark.parametrize("name", ["r.mid", "r.MIDI"])
def test_midi_reference(tmp_path: Path, name: str) -> None:
    notes = load_notes(_midi_file(tmp_path / name))
    assert [(n.pitch, n.velocity, n.program) for n in notes] == [(60, 30, 0), (76, 90, 40)]
    piano, violin = notes
    assert piano.offset_s == pytest.approx(0.5, abs=1e-3)  # pedal held to 2 s is not applied
    assert violin.onset_s == pytest.approx(0.5, abs=1e-3) and violin.offset_s == pytest.approx(1.0, abs=1e-3)


def test_overlapping_same_pitch_notes_are_trimmed(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "o.csv",
        "onset,offset,pitch,instrument\n"
        "0.0,2.0,60,violin\n"
        "1.0,1.5,60,violin\n"
        "1.2,1.4,60,piano\n"
        "3.0,3.5,62,violin\n"
        "3.0,4.0,62,violin\n",
    )
    assert load_notes(path) == [
        Note(0.0, 1.0, 60, program=40),
        Note(1.0, 1.5, 60, program=40),
        Note(1.2, 1.4, 60, program=0),
        Note(3.0, 4.0, 62, program=40),
    ]


def test_remove_overlaps_keeps_disjoint_notes() -> None:
    notes = [Note(1.0, 2.0, 60), Note(0.0, 1.0, 60), Note(0.5, 3.0, 61)]
    assert remove_overlaps(notes) == sorted(notes)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("onset,offset,pitch\n0.1,0.2,60\nabc,0.3,60\n", 3, "numbers"),
        ("onset,offset,pitch\n0.1,0.2\n", 2, "columns"),
        ("onset,offset,pitch\n0.5,0.5,60\n", 2, "not after onset"),
        ("onset,offset,pitch\n0.6,0.5,60\n", 2, "not after onset"),
        ("onset,offset,pitch\n0.1,0.2,128\n", 2, "pitch"),
        ("onset,offset,pitch\n0.1,0.2,60.5\n", 2, "whole number"),
        ("onset,offset,pitch\n0.1,0.2,sixty\n", 2, "pitch"),
        ("onset,offset,pitch\n-0.1,0.2,60\n", 2, "negative"),
        ("onset,offset,pitch\nnan,0.2,60\n", 2, "finite"),
        ("onset,offset,pitch,velocity\n0.1,0.2,60,200\n", 2, "velocity"),
        ("onset,offset,pitch,instrument\n0.1,0.2,60,kazoo\n", 2, "kazoo"),
        ("onset,offset,pitch,instrument\n0.1,0.2,60,128\n", 2, "128"),
        ("start,end,pitch\n0.1,0.2,60\n", 1, "onset, offset"),
        ("onset,onset,offset,pitch\n", 1, "twice"),
        ("", 1, "empty"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(LabelError) as info:
        load_notes(path)
    message = str(info.value)
    assert f"bad.csv:{line}:" in message
    assert fragment in message
    assert "\n" not in message


def test_unreadable_midi_and_unknown_suffix(tmp_path: Path) -> None:
    garbage = tmp_path / "broken.mid"
    garbage.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    with pytest.raises(LabelError, match="broken.mid"):
        load_notes(garbage)
    with pytest.raises(LabelError, match="notes.txt"):
        load_notes(_write(tmp_path, "notes.txt", "onset,offset,pitch\n"))
    with pytest.raises(LabelError, match="missing.csv"):
        load_notes(tmp_path / "missing.csv")
    binary = tmp_path / "latin.csv"
    binary.write_bytes(b"onset,offset,pitch\n\xff\xfe\n")
    with pytest.raises(LabelError, match="latin.csv"):
        load_notes(binary)


_CELLS = st.sampled_from(
    ["0", "0.5", "1", "1.5", "60", "60.0", "-1", "128", "nan", "inf", "", " ", "x", "piano", "violin", '"', "1e999"]
)
_ROWS = st.lists(st.lists(_CELLS, min_size=0, max_size=6).map(",".join), max_size=6)
_HEADERS = st.sampled_from(
    [
        "onset,offset,pitch",
        "onset,offset,pitch,velocity,instrument",
        "onset,offset,pitch,instrument",
        "start_time,end_time,instrument,note,start_beat,end_beat,note_value",
        "offset,pitch",
        "",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=_HEADERS, rows=_ROWS, noise=st.text(max_size=30))
def test_fuzz_csv_gives_notes_or_label_error(tmp_path: Path, header: str, rows: list[str], noise: str) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_text("\n".join([header, *rows, noise]), encoding="utf-8")
    try:
        notes = load_notes(path)
    except LabelError as exc:
        assert "fuzz.csv" in str(exc)
        return
    assert all(isinstance(n, Note) for n in notes)


def _valid_midi_bytes() -> bytes:
    import io

    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    for program, pitch in ((0, 60), (40, 67)):
        instrument = pretty_midi.Instrument(program=program)
        instrument.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=0.1, end=0.6))
        instrument.control_changes.append(pretty_midi.ControlChange(64, 127, 0.0))
        midi.instruments.append(instrument)
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


_MIDI = _valid_midi_bytes()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, len(_MIDI)), flips=st.lists(st.tuples(st.integers(0, len(_MIDI) - 1), st.integers(0, 255)),
                                                     max_size=8), tail=st.binary(max_size=20))
def test_fuzz_midi_gives_notes_or_label_error(tmp_path: Path, cut: int, flips, tail: bytes) -> None:
    """Truncated, bit-flipped and padded MIDI files: notes or our LabelError, nothing else."""
    data = bytearray(_MIDI)
    for index, value in flips:
        data[index] = value
    path = tmp_path / "fuzz.mid"
    path.write_bytes(bytes(data[:cut]) + tail)
    try:
        notes = load_notes(path)
    except LabelError as exc:
        assert "fuzz.mid" in str(exc)
        return
    assert all(isinstance(n, Note) for n in notes)
