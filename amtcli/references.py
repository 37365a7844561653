"""Read note lists (references or estimates) from label CSVs and MIDI files.

Supported inputs, chosen by suffix and, for CSV, by the header line:

- MusicNet label CSV (``.csv``, header starting ``start_time,end_time,instrument,note``):
  read by :func:`amtcli.datasets.musicnet.read_musicnet_labels` (sample indices at
  44.1 kHz -> seconds, 1-based instrument codes -> 0-based programs).
- Our CSV note list (``.csv``, header ``onset,offset,pitch`` plus optional ``velocity``
  and ``instrument`` columns, in any order): times in seconds, pitch as a MIDI number,
  velocity 1..127 (80 when absent or empty), instrument a short name, GM name or
  0-based program (unknown when absent or empty). This is what
  :func:`amtcli.writers.csv.write_csv` writes.
- MIDI (``.mid``, ``.midi``) through pretty_midi: every non-drum note, with its track's
  0-based program and its velocity; notes of a program-0 track named ``"transcription"``
  (where :func:`amtcli.writers.midi.write_midi` puts notes without an instrument) have
  no program, so amtcli's MIDI reads back as instrument-less, like its CSV. Sustain pedal is **not** applied: a note ends at its
  note-off. Zero-length notes (note-off at the note-on time) and drum notes are skipped;
  ``eval`` says how many.

Same-pitch notes of the same instrument must not overlap (see
:func:`amtcli.types.validate_notes`). When they do in an input file, the earlier note is
trimmed to end at the later onset, and dropped if that leaves nothing (two notes with
the same onset keep the longer one).

Every problem is a LabelError whose message names the file and, for CSV, the line.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from amtcli.errors import LabelError
from amtcli.instruments import parse_instrument
from amtcli.types import Note

CSV_SUFFIXES = (".csv",)
MIDI_SUFFIXES = (".mid", ".midi")
SUFFIXES = CSV_SUFFIXES + MIDI_SUFFIXES
REQUIRED_COLUMNS = ("onset", "offset", "pitch")
OPTIONAL_COLUMNS = ("velocity", "instrument")
DEFAULT_VELOCITY = 80  #: Velocity of notes read from a CSV without one.
MUSICNET_HEADER_START = "start_time"


def load_notes(path: str | os.PathLike, left_out: list[str] | None = None) -> list[Note]:
    """Read the notes of a reference or estimate file (formats in the module docstring).

    Returns notes sorted by (onset_s, pitch), with same-pitch overlaps trimmed. When a
    MIDI file's drum or zero-length notes are skipped, one line saying how many is
    appended to ``left_out`` (if given).
    Raises LabelError naming the file (and line) for unreadable or malformed input or
    an unsupported suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        notes, drums, empty = _read_midi(path)
        if (drums or empty) and left_out is not None:
            parts = [f"{n} {kind} note{'s' if n != 1 else ''}" for n, kind in ((drums, "drum"), (empty, "zero-length"))
                     if n]
            left_out.append(f"{path}: {' and '.join(parts)} left out")
    elif suffix in CSV_SUFFIXES:
        notes = _read_csv(path)
    else:
        raise LabelError(
            f"{path}: unsupported note file type {suffix or '(none)'!r}; "
            f"expected one of {', '.join(SUFFIXES)}"
        )
    return remove_overlaps(notes)


def remove_overlaps(notes: list[Note]) -> list[Note]:
    """Trim same-pitch, same-program overlaps: the earlier note ends at the later onset.

    A note left with no duration is dropped. Returns a new list sorted by
    (onset_s, pitch, offset_s).
    """
    ordered = sorted(notes, key=lambda n: (n.onset_s, n.pitch, n.offset_s))
    kept: list[Note | None] = []
    last_index: dict[tuple[int, int | None], int] = {}
    for note in ordered:
        key = (note.pitch, note.program)
        index = last_index.get(key)
        if index is not None:
            previous = kept[index]
            if previous is not None and note.onset_s < previous.offset_s:
                if note.onset_s > previous.onset_s:
                    kept[index] = Note(
                        onset_s=previous.onset_s,
                        offset_s=note.onset_s,
                        pitch=previous.pitch,
                        velocity=previous.velocity,
                        program=previous.program,
                        confidence=previous.confidence,
                    )
                else:
                    kept[index] = None
        last_index[key] = len(kept)
        kept.append(note)
    return [note for note in kept if note is not None]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"{path}: cannot read note file ({exc})") from None


def _read_csv(path: Path) -> list[Note]:
    text = _read_text(path)
    first_line = text.lstrip().split("\n", 1)[0]
    if first_line.strip().lower().startswith(MUSICNET_HEADER_START):
        from amtcli.datasets.musicnet import read_musicnet_labels

        try:
            return read_musicnet_labels(path)
        except (csv.Error, OverflowError) as exc:
            raise LabelError(f"{path}: malformed MusicNet label file ({exc})") from None
    return _parse_note_csv(path, text)


def _parse_note_csv(path: Path, text: str) -> list[Note]:
    """Parse our CSV note list (see the module docstring) from ``text``."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
        if header is None:
            raise LabelError(f"{path}:1: empty note file (expected header onset,offset,pitch)")
        columns = _header_columns(path, reader.line_num, header)
        notes: list[Note] = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            notes.append(_parse_row(path, reader.line_num, row, columns))
    except csv.Error as exc:
        raise LabelError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    return notes


def _header_columns(path: Path, line_no: int, header: list[str]) -> dict[str, int]:
    """Map known column names to their index; LabelError if required ones are missing."""
    names = [cell.strip().lower() for cell in header]
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in columns:
            raise LabelError(f"{path}:{line_no}: column {name!r} appears twice in the header")
        if name in REQUIRED_COLUMNS or name in OPTIONAL_COLUMNS:
            columns[name] = index
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise LabelError(
            f"{path}:{line_no}: header lacks column(s) {', '.join(missing)} "
            f"(expected onset,offset,pitch[,velocity][,instrument] or a MusicNet header)"
        )
    return columns


def _integer(text: str, what: str) -> int:
    value = float(text)
    if not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"{what} {text.strip()!r} is not a whole number")
    return int(value)


def _parse_row(path: Path, line_no: int, row: list[str], columns: dict[str, int]) -> Note:
    width = max(columns.values()) + 1
    required_width = max(columns[name] for name in REQUIRED_COLUMNS) + 1
    if len(row) < required_width:
        raise LabelError(f"{path}:{line_no}: expected {width} columns, got {len(row)}")

    def cell(name: str) -> str:
        index = columns.get(name)
        return row[index].strip() if index is not None and index < len(row) else ""

    try:
        onset_s = float(cell("onset"))
        offset_s = float(cell("offset"))
    except ValueError:
        raise LabelError(
            f"{path}:{line_no}: onset and offset must be numbers, got "
            f"{cell('onset')!r} and {cell('offset')!r}"
        ) from None
    try:
        pitch = _integer(cell("pitch"), "pitch")
        velocity = _integer(cell("velocity"), "velocity") if cell("velocity") else DEFAULT_VELOCITY
        program = parse_instrument(cell("instrument"))
        return Note(onset_s=onset_s, offset_s=offset_s, pitch=pitch, velocity=velocity, program=program)
    except (ValueError, OverflowError) as exc:
        message = str(exc)
        if message.startswith("could not convert"):
            message = f"pitch and velocity must be numbers ({message})"
        raise LabelError(f"{path}:{line_no}: {message}") from None


def _zero_length_notes(path: Path) -> int:
    """How many non-drum notes of a MIDI file end at the tick they start (pretty_midi
    drops them before amtcli sees them)."""
    import mido

    try:
        midi = mido.MidiFile(str(path))
    except Exception:  # already read by pretty_midi; a count is not worth an error
        return 0
    count = 0
    for track in midi.tracks:
        tick, started = 0, {}
        for message in track:
            tick += message.time
            if message.type not in ("note_on", "note_off") or message.channel == 9:
                continue
            key = (message.channel, message.note)
            if message.type == "note_on" and message.velocity > 0:
                started[key] = tick
            elif key in started:
                count += started.pop(key) == tick
    return count


def _read_midi(path: Path) -> tuple[list[Note], int, int]:
    """(notes, drum notes skipped, zero-length notes skipped) of a MIDI file."""
    import pretty_midi

    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # pretty_midi/mido raise many types for corrupt files
        raise LabelError(f"{path}: cannot read MIDI file ({type(exc).__name__}: {exc})") from None
    from amtcli.writers.midi import UNKNOWN_TRACK_NAME

    notes: list[Note] = []
    drums = empty = 0
    for instrument in midi.instruments:
        if instrument.is_drum:
            drums += len(instrument.notes)
            continue
        unlabelled = instrument.program == 0 and instrument.name == UNKNOWN_TRACK_NAME
        for note in instrument.notes:
            if not note.end > note.start:
                empty += 1
                continue
            try:
                notes.append(
                    Note(
                        onset_s=float(note.start),
                        offset_s=float(note.end),
                        pitch=int(note.pitch),
                        velocity=int(note.velocity),
                        program=None if unlabelled else int(instrument.program),
                    )
                )
            except ValueError as exc:
                raise LabelError(f"{path}: invalid note in MIDI file ({exc})") from None
    return notes, drums, empty + _zero_length_notes(path)
