import math

import pytest

from amtcli.types import Note, Transcription, midi_to_hz, validate_notes


def test_note_defaults_and_duration():
    note = Note(0.5, 1.25, 60)
    assert (note.velocity, note.program, note.confidence) == (80, None, None)
    assert note.duration_s == 0.75


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(onset_s=-0.1, offset_s=1.0, pitch=60),
        dict(onset_s=1.0, offset_s=1.0, pitch=60),
        dict(onset_s=0.0, offset_s=math.nan, pitch=60),
        dict(onset_s=0.0, offset_s=1.0, pitch=128),
        dict(onset_s=0.0, offset_s=1.0, pitch=60.5),
        dict(onset_s=0.0, offset_s=1.0, pitch=60, velocity=0),
        dict(onset_s=0.0, offset_s=1.0, pitch=60, velocity=128),
        dict(onset_s=0.0, offset_s=1.0, pitch=60, program=128),
        dict(onset_s=0.0, offset_s=1.0, pitch=60, confidence=1.5),
    ],
)
def test_invalid_notes_are_rejected(kwargs):
    with pytest.raises(ValueError):
        Note(**kwargs)


def test_overlapping_same_pitch_same_instrument_is_rejected():
    with pytest.raises(ValueError, match="overlapping"):
        validate_notes([Note(0, 1, 60), Note(0.5, 1.5, 60)])
    validate_notes([Note(0, 1, 60), Note(1, 2, 60), Note(0.5, 1.5, 60, program=40), Note(0.5, 1.5, 61)])


def test_transcription_sorts_notes_and_exports_arrays():
    t = Transcription(notes=(Note(1, 2, 62), Note(0, 1, 60)), duration_s=3)
    assert [n.pitch for n in t.notes] == [60, 62]
    intervals, pitches = t.as_arrays()
    assert intervals.tolist() == [[0, 1], [1, 2]] and pitches.tolist() == [60, 62]


def test_midi_to_hz():
    assert midi_to_hz(69) == pytest.approx(440.0)
    assert midi_to_hz(57) == pytest.approx(220.0)
