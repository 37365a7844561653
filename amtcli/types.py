"""The typed values passed from stage to stage.

After decoding, times are seconds (float) and pitches are MIDI note numbers (int).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

PIANO_LOW = 21  #: MIDI number of A0, the lowest of the 88 keys.
N_KEYS = 88  #: Number of pitch classes every model predicts (MIDI 21..108).


def midi_to_hz(pitch: np.ndarray | float) -> np.ndarray | float:
    """Frequency in Hz of MIDI note number(s) (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=float) - 69.0) / 12.0)


#: Semitones from a fundamental to its 2nd-6th partials (an octave, an octave and a fifth,
#: two octaves, two octaves and a major third, two octaves and a fifth).
HARMONIC_INTERVALS = (12, 19, 24, 28, 31)

@dataclass(frozen=True, order=True)
class Note:
    """One note. Validated on creation.

    Attributes:
        onset_s: start time in seconds (>= 0).
        offset_s: end time in seconds (> onset_s).
        pitch: MIDI note number 0..127.
        velocity: MIDI velocity 1..127.
        program: 0-based General MIDI program, or None when the instrument is unknown.
        confidence: model confidence in [0, 1], or None.
    """

    onset_s: float
    offset_s: float
    pitch: int
    velocity: int = 80
    program: int | None = None
    confidence: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.onset_s) and math.isfinite(self.offset_s)):
            raise ValueError(f"note times must be finite, got {self.onset_s}..{self.offset_s}")
        if self.onset_s < 0:
            raise ValueError(f"note onset {self.onset_s} s is negative")
        if not self.offset_s > self.onset_s:
            raise ValueError(f"note offset {self.offset_s} s is not after onset {self.onset_s} s")
        if not (isinstance(self.pitch, (int, np.integer)) and 0 <= self.pitch <= 127):
            raise ValueError(f"note pitch {self.pitch!r} is not a MIDI number 0..127")
        if not (isinstance(self.velocity, (int, np.integer)) and 1 <= self.velocity <= 127):
            raise ValueError(f"note velocity {self.velocity!r} is not in 1..127")
        if self.program is not None and not (
            isinstance(self.program, (int, np.integer)) and 0 <= self.program <= 127
        ):
            raise ValueError(f"note program {self.program!r} is not a GM program 0..127")
        if self.confidence is not None and not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"note confidence {self.confidence} is not in [0, 1]")

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s


def validate_notes(notes: list[Note] | tuple[Note, ...]) -> None:
    """Check list-level invariants: no two notes of the same pitch and instrument overlap.

    Raises ValueError naming the first offending pair.
    """
    last_by_key: dict[tuple[int, int | None], Note] = {}
    for note in sorted(notes, key=lambda n: (n.onset_s, n.pitch)):
        key = (note.pitch, note.program)
        previous = last_by_key.get(key)
        if previous is not None and note.onset_s < previous.offset_s - 1e-9:
            raise ValueError(
                f"overlapping notes of pitch {note.pitch}: {previous.onset_s:.3f}-"
                f"{previous.offset_s:.3f} s and {note.onset_s:.3f}-{note.offset_s:.3f} s"
            )
        if previous is None or note.offset_s > previous.offset_s:
            last_by_key[key] = note


@dataclass(frozen=True)
class Transcription:
    """The result of transcribing one recording.

    Attributes:
        notes: notes sorted by (onset_s, pitch).
        duration_s: length of the input audio in seconds.
        source: where the audio came from (a path, or "" for in-memory audio).
        model: name of the model that produced it.
        stats: counters from decoding (e.g. invalid or dropped tokens, n_windows).
    """

    notes: tuple[Note, ...]
    duration_s: float
    source: str = ""
    model: str = ""
    stats: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.notes, key=lambda n: (n.onset_s, n.pitch, n.offset_s)))
        object.__setattr__(self, "notes", ordered)
        validate_notes(ordered)

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(intervals (n, 2) in seconds, pitches (n,) as MIDI numbers) for mir_eval."""
        if not self.notes:
            return np.zeros((0, 2)), np.zeros(0)
        intervals = np.array([[n.onset_s, n.offset_s] for n in self.notes], dtype=float)
        pitches = np.array([n.pitch for n in self.notes], dtype=float)
        return intervals, pitches


@dataclass(frozen=True)
class FramePosteriors:
    """Frame-aligned model output for a whole recording (after stitching).

    Every array is (n_frames, 88), float32 in [0, 1]; column k is MIDI pitch 21 + k.
    ``onsets``, ``offsets`` and ``velocity`` are None for frame-only models.
    ``velocity`` holds velocity / 127.

    Attributes:
        frames: probability that a pitch sounds in each frame.
        frame_rate_hz: frames per second.
    """

    frames: np.ndarray
    frame_rate_hz: float
    onsets: np.ndarray | None = None
    offsets: np.ndarray | None = None
    velocity: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class NoteScores:
    """Precision, recall and F1 of one mir_eval measure (all in [0, 1])."""

    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class ErrorCounts:
    """Matched notes and the unmatched ones by class (:mod:`amtcli.note_errors`).

    Attributes:
        hit: matched (reference, estimate) pairs of the note-onset measure.
        missed: reference notes left unmatched.
        harmonic, octave_below, split, timing, semitone, silence, other: unmatched
            estimated notes, each in the first class that applies.
    """

    ESTIMATE_CLASSES = ("harmonic", "octave_below", "split", "timing", "semitone", "silence", "other")

    hit: int = 0
    missed: int = 0
    harmonic: int = 0
    octave_below: int = 0
    split: int = 0
    timing: int = 0
    semitone: int = 0
    silence: int = 0
    other: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"hit": self.hit, "missed": self.missed, **{k: getattr(self, k) for k in self.ESTIMATE_CLASSES}}

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(**{k: v + other.as_dict()[k] for k, v in self.as_dict().items()})


@dataclass(frozen=True)
class EvalResult:
    """Scores of one estimate against one reference.

    Attributes:
        name: identifier of the pair (usually the file stem).
        note_onset: onset-only note scores (50 ms tolerance).
        note_offset: note-with-offset scores (offset ratio 0.2, minimum 50 ms).
        frame: frame-level scores on a 10 ms grid.
        n_ref, n_est: number of reference and estimated notes.
        by_instrument: the same measures per instrument name, when asked for.
        errors: the unmatched notes by class, when asked for (``eval --errors``).
    """

    name: str
    note_onset: NoteScores
    note_offset: NoteScores
    frame: NoteScores
    n_ref: int
    n_est: int
    by_instrument: dict[str, "EvalResult"] = field(default_factory=dict)
    errors: ErrorCounts | None = None

    def as_dict(self) -> dict:
        out: dict = {"name": self.name, "n_ref": self.n_ref, "n_est": self.n_est}
        for key in ("note_onset", "note_offset", "frame"):
            scores: NoteScores = getattr(self, key)
            out[key] = {"precision": scores.precision, "recall": scores.recall, "f1": scores.f1}
        if self.by_instrument:
            out["by_instrument"] = {k: v.as_dict() for k, v in self.by_instrument.items()}
        if self.errors is not None:
            out["errors"] = self.errors.as_dict()
        return out
