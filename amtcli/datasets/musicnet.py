"""MusicNet label CSVs <-> notes.

Format: ``start_time,end_time,instrument,note,start_beat,end_beat,note_value`` with
times as sample indices at 44.1 kHz and instrument as a **1-based** General MIDI
program. This module is the one place where the 1-based code becomes the 0-based
program used everywhere else (and back).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from amtcli.atomic import atomic_path
from amtcli.errors import LabelError
from amtcli.types import Note

MUSICNET_SAMPLE_RATE = 44100  #: Label times are sample indices at this rate.
COLUMNS = ("start_time", "end_time", "instrument", "note", "start_beat", "end_beat", "note_value")
DEFAULT_VELOCITY = 80  #: MusicNet has no velocities; references get this one.


def read_musicnet_labels(path: str | os.PathLike) -> list[Note]:
    """Read a MusicNet label CSV into notes (seconds, MIDI pitch, 0-based program).

    Raises LabelError naming the file and line for anything malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"{path}: cannot read label file ({exc})") from None
    try:
        return _parse_rows(path, list(csv.reader(text.splitlines())))
    except csv.Error as exc:
        raise LabelError(f"{path}: malformed CSV ({exc})") from None


def _parse_rows(path: Path, table: list[list[str]]) -> list[Note]:
    rows = iter(table)
    header = next(rows, None)
    if header is None or [h.strip() for h in header[:4]] != list(COLUMNS[:4]):
        raise LabelError(
            f"{path}:1: not a MusicNet label file (expected header starting with "
            f"{','.join(COLUMNS[:4])})"
        )
    notes: list[Note] = []
    for line_no, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < 4:
            raise LabelError(f"{path}:{line_no}: expected at least 4 columns, got {len(row)}")
        try:
            start, end = int(row[0]), int(row[1])
            code, pitch = int(row[2]), int(row[3])
        except ValueError:
            raise LabelError(f"{path}:{line_no}: start_time, end_time, instrument and note must be integers") from None
        if not 1 <= code <= 128:
            raise LabelError(f"{path}:{line_no}: instrument code {code} is not a 1-based GM program 1..128")
        try:
            notes.append(
                Note(
                    onset_s=start / MUSICNET_SAMPLE_RATE,
                    offset_s=end / MUSICNET_SAMPLE_RATE,
                    pitch=pitch,
                    velocity=DEFAULT_VELOCITY,
                    program=code - 1,
                )
            )
        except (ValueError, OverflowError) as exc:
            raise LabelError(f"{path}:{line_no}: {exc}") from None
    return notes


def _beat(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


def write_musicnet_labels(
    path: str | os.PathLike,
    notes: list[Note],
    beats: list[tuple[float, float, str]] | None = None,
    overwrite: bool = False,
) -> None:
    """Write notes as a MusicNet label CSV (atomically).

    Args:
        notes: notes with a program set (None is written as piano, code 1).
        beats: optional per-note (start_beat, end_beat, note_value) aligned with ``notes``.
    """
    if beats is not None and len(beats) != len(notes):
        raise ValueError("beats must have one entry per note")
    order = sorted(range(len(notes)), key=lambda i: (notes[i].onset_s, notes[i].pitch))
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(COLUMNS)
            for i in order:
                note = notes[i]
                start_beat, end_beat, value = beats[i] if beats is not None else (None, None, "")
                writer.writerow(
                    [
                        int(round(note.onset_s * MUSICNET_SAMPLE_RATE)),
                        int(round(note.offset_s * MUSICNET_SAMPLE_RATE)),
                        (note.program if note.program is not None else 0) + 1,
                        note.pitch,
                        _beat(start_beat),
                        _beat(end_beat),
                        value,
                    ]
                )
