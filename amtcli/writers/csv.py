"""Transcription -> CSV note list.

Format (one header line, then one row per note, sorted by onset then pitch)::

    onset,offset,pitch,velocity,instrument
    0.500,1.250,60,80,piano

``onset`` and ``offset`` are seconds with 3 decimals (millisecond precision), ``pitch``
is the MIDI note number, ``velocity`` 1..127 and ``instrument`` the short name from
:func:`amtcli.instruments.program_name` (empty when the instrument is unknown).
:func:`amtcli.references.load_notes` reads this format back.
"""

from __future__ import annotations

import csv
import os

from amtcli.atomic import atomic_path
from amtcli.instruments import program_name
from amtcli.types import Transcription

HEADER = ("onset", "offset", "pitch", "velocity", "instrument")


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def write_csv(transcription: Transcription, path: str | os.PathLike, overwrite: bool = False) -> None:
    """Write the notes as a CSV note list (format in the module docstring), atomically.

    A note shorter than 1 ms whose onset and offset would round to the same
    millisecond is written 1 ms long, so every row can be read back.

    Raises OutputError if ``path`` exists and ``overwrite`` is False.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(HEADER)
            for note in transcription.notes:
                onset = round(note.onset_s, 3)
                offset = max(round(note.offset_s, 3), onset + 0.001)
                writer.writerow(
                    [
                        _seconds(onset),
                        _seconds(offset),
                        int(note.pitch),
                        int(note.velocity),
                        program_name(note.program),
                    ]
                )
