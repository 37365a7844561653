"""Transcription -> Standard MIDI File (via pretty_midi)."""

from __future__ import annotations

import os

from amtcli.atomic import atomic_path
from amtcli.instruments import program_name
from amtcli.types import Transcription

#: Ticks per quarter note. At the default 120 bpm one tick is exactly 0.5 ms, so times on
#: a millisecond grid (decoded notes, the CSV's precision) come back on the same tick, equal
#: up to float rounding (960 gave 0.52 ms ticks: 0.320 s came back as 0.319792 s).
TICKS_PER_BEAT = 1000
#: Track name used for notes whose instrument is unknown (program None).
UNKNOWN_TRACK_NAME = "transcription"


def write_midi(
    transcription: Transcription,
    path: str | os.PathLike,
    overwrite: bool = False,
    tempo_bpm: float = 120.0,
) -> None:
    """Write the notes as a MIDI file, atomically.

    One instrument track per distinct program (0-based GM program number, named with
    :func:`amtcli.instruments.program_name`); notes with program None go to one piano
    track named ``"transcription"``. Velocities are kept; the initial tempo is
    ``tempo_bpm`` (it only sets the tick grid: note times in seconds are exact to the
    grid whatever the tempo).

    Raises OutputError if ``path`` exists and ``overwrite`` is False, ValueError for a
    non-positive tempo.
    """
    import pretty_midi

    if not tempo_bpm > 0:
        raise ValueError(f"tempo must be positive, got {tempo_bpm} bpm")
    midi = pretty_midi.PrettyMIDI(resolution=TICKS_PER_BEAT, initial_tempo=float(tempo_bpm))
    tracks: dict[int | None, pretty_midi.Instrument] = {}
    for note in transcription.notes:
        track = tracks.get(note.program)
        if track is None:
            if note.program is None:
                track = pretty_midi.Instrument(program=0, name=UNKNOWN_TRACK_NAME)
            else:
                track = pretty_midi.Instrument(
                    program=int(note.program), name=program_name(note.program)
                )
            tracks[note.program] = track
            midi.instruments.append(track)
        track.notes.append(
            pretty_midi.Note(
                velocity=int(note.velocity),
                pitch=int(note.pitch),
                start=float(note.onset_s),
                end=float(note.offset_s),
            )
        )
    with atomic_path(path, overwrite=overwrite) as tmp:
        midi.write(str(tmp))
