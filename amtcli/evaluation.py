"""Score estimated notes against reference notes with mir_eval.

Measures (all precision / recall / F1 in [0, 1]; pitches are compared in Hz, so the
50-cent pitch tolerance of mir_eval applies):

- note onset: ``mir_eval.transcription.precision_recall_f1_overlap`` with
  ``onset_tolerance=0.05`` s and ``offset_ratio=None``.
- note with offset: the same with ``offset_ratio=0.2`` and ``offset_min_tolerance=0.05`` s.
- frame: ``mir_eval.multipitch.evaluate`` on a 10 ms grid ``t_k = k / 100`` s,
  ``k = 0 .. ceil(last offset * 100)`` (the last offset over reference and estimate):
  a note's pitch is active at ``t_k`` when ``onset_s <= t_k < offset_s``. F1 is
  ``mir_eval.util.f_measure`` of the frame precision and recall.

Instruments are pooled (a note matches whatever its program) unless per-instrument
scores are asked for. Empty inputs are defined here, not left to mir_eval: both
reference and estimate empty scores 1.0 everywhere; exactly one of them empty scores
0.0 everywhere.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np

from amtcli.instruments import program_name
from amtcli.types import ErrorCounts, EvalResult, Note, NoteScores, midi_to_hz

ONSET_TOLERANCE_S = 0.05
OFFSET_RATIO = 0.2
OFFSET_MIN_TOLERANCE_S = 0.05
FRAME_RATE_HZ = 100  #: Frames per second of the frame-level grid (10 ms hop).
UNKNOWN_INSTRUMENT = "unknown"  #: by_instrument key for notes with program None.

_PERFECT = NoteScores(1.0, 1.0, 1.0)
_ZERO = NoteScores(0.0, 0.0, 0.0)


def _note_arrays(notes: list[Note]) -> tuple[np.ndarray, np.ndarray]:
    """(intervals (n, 2) in seconds, pitches (n,) in Hz) in mir_eval's layout."""
    if not notes:
        return np.zeros((0, 2)), np.zeros(0)
    intervals = np.array([[n.onset_s, n.offset_s] for n in notes], dtype=float)
    pitches_hz = np.asarray(midi_to_hz(np.array([n.pitch for n in notes], dtype=float)))
    return intervals, pitches_hz


def frame_times(n_frames: int) -> np.ndarray:
    """Times of the frame grid in seconds, (n_frames,): ``k / 100`` for k = 0..n-1."""
    return np.arange(n_frames) / FRAME_RATE_HZ


def note_frames(notes: list[Note], n_frames: int) -> np.ndarray:
    """Boolean piano roll (n_frames, 128): pitch p is active at t_k iff onset <= t_k < offset."""
    times = frame_times(n_frames)
    roll = np.zeros((n_frames, 128), dtype=bool)
    for note in notes:
        first = np.searchsorted(times, note.onset_s, side="left")
        stop = np.searchsorted(times, note.offset_s, side="left")
        roll[first:stop, note.pitch] = True
    return roll


def _frame_scores(reference: list[Note], estimate: list[Note]) -> NoteScores:
    import mir_eval

    last_offset_s = max(n.offset_s for n in reference + estimate)
    n_frames = int(math.ceil(last_offset_s * FRAME_RATE_HZ)) + 1
    times = frame_times(n_frames)
    ref_roll = note_frames(reference, n_frames)
    est_roll = note_frames(estimate, n_frames)
    all_hz = np.asarray(midi_to_hz(np.arange(128, dtype=float)))
    ref_hz = [all_hz[row] for row in ref_roll]
    est_hz = [all_hz[row] for row in est_roll]
    scores = mir_eval.multipitch.evaluate(times, ref_hz, times, est_hz)
    precision, recall = float(scores["Precision"]), float(scores["Recall"])
    return NoteScores(precision, recall, float(mir_eval.util.f_measure(precision, recall)))


def _note_scores(reference: list[Note], estimate: list[Note], offset_ratio: float | None) -> NoteScores:
    import mir_eval

    ref_intervals, ref_hz = _note_arrays(reference)
    est_intervals, est_hz = _note_arrays(estimate)
    precision, recall, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_intervals,
        ref_hz,
        est_intervals,
        est_hz,
        onset_tolerance=ONSET_TOLERANCE_S,
        offset_ratio=offset_ratio,
        offset_min_tolerance=OFFSET_MIN_TOLERANCE_S,
    )
    return NoteScores(float(precision), float(recall), float(f1))


def _pooled(reference: list[Note], estimate: list[Note], name: str) -> EvalResult:
    if not reference or not estimate:
        fixed = _PERFECT if not reference and not estimate else _ZERO
        return EvalResult(name, fixed, fixed, fixed, len(reference), len(estimate))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onset = _note_scores(reference, estimate, offset_ratio=None)
        offset = _note_scores(reference, estimate, offset_ratio=OFFSET_RATIO)
        frame = _frame_scores(reference, estimate)
    return EvalResult(name, onset, offset, frame, len(reference), len(estimate))


def instrument_key(program: int | None) -> str:
    """Name under which a program's scores appear in ``EvalResult.by_instrument``."""
    return program_name(program) if program is not None else UNKNOWN_INSTRUMENT


def evaluate_notes(
    reference: list[Note],
    estimate: list[Note],
    name: str = "",
    by_instrument: bool = False,
    errors: bool = False,
) -> EvalResult:
    """Score ``estimate`` against ``reference`` (measures in the module docstring).

    With ``errors``, ``errors`` also holds the unmatched notes by class
    (:func:`amtcli.note_errors.classify_errors`).

    With ``by_instrument``, ``by_instrument[instrument_key(p)]`` also holds the scores of
    the estimate's notes of program ``p`` against the reference's notes of program
    ``p``, for every program present on either side (None is ``"unknown"``).
    """
    reference, estimate = list(reference), list(estimate)
    result = _pooled(reference, estimate, name)
    if errors:
        from amtcli.note_errors import classify_errors

        result = replace(result, errors=classify_errors(reference, estimate))
    if not by_instrument:
        return result
    programs = {n.program for n in reference} | {n.program for n in estimate}
    per_instrument = {}
    for program in sorted(programs, key=lambda p: (p is None, p or 0)):
        key = instrument_key(program)
        per_instrument[key] = _pooled(
            [n for n in reference if n.program == program],
            [n for n in estimate if n.program == program],
            key,
        )
    return replace(result, by_instrument=per_instrument)


def _mean_scores(scores: list[NoteScores]) -> NoteScores:
    return NoteScores(
        float(np.mean([s.precision for s in scores])),
        float(np.mean([s.recall for s in scores])),
        float(np.mean([s.f1 for s in scores])),
    )


def mean_result(results: list[EvalResult], name: str = "mean") -> EvalResult:
    """Mean over files of every score (each file weighs the same; F1 is the mean of
    per-file F1s, not recomputed). ``n_ref``, ``n_est`` and error counts are totals.
    Per-instrument means are taken over the files in which that instrument appears.

    Raises ValueError for an empty list.
    """
    if not results:
        raise ValueError("mean_result needs at least one result")
    per_instrument: dict[str, list[EvalResult]] = {}
    for result in results:
        for key, sub in result.by_instrument.items():
            per_instrument.setdefault(key, []).append(sub)
    return EvalResult(
        name,
        _mean_scores([r.note_onset for r in results]),
        _mean_scores([r.note_offset for r in results]),
        _mean_scores([r.frame for r in results]),
        sum(r.n_ref for r in results),
        sum(r.n_est for r in results),
        by_instrument={key: mean_result(subs, key) for key, subs in per_instrument.items()},
        errors=sum((r.errors for r in results), ErrorCounts()) if all(r.errors is not None for r in results) else None,
    )


def token_metrics(reference: list[Note], estimate: list[Note], segment_s: float = 10.0) -> dict[str, float]:
    """Token measures of the "CTC vs. Seq2Seq" study, on pitch-token sequences.

    Both note lists become pitch tokens ordered by onset, then pitch, cut into
    ``segment_s``-second segments by onset time. Returns:

    - ``token_f1``: bag-of-tokens F1 (per segment, a token matches a reference token
      of the same pitch; counts summed over segments);
    - ``token_error_rate``: summed Levenshtein distance / summed reference length;
    - ``length_ratio``: estimated tokens / reference tokens.
    """
    from collections import Counter

    from rapidfuzz.distance import Levenshtein

    def segments(notes: list[Note]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for note in sorted(notes, key=lambda n: (n.onset_s, n.pitch)):
            out.setdefault(int(note.onset_s // segment_s), []).append(note.pitch)
        return out

    ref, est = segments(reference), segments(estimate)
    n_ref = sum(len(v) for v in ref.values())
    n_est = sum(len(v) for v in est.values())
    matched = edits = 0
    for key in set(ref) | set(est):
        r, e = ref.get(key, []), est.get(key, [])
        matched += sum((Counter(r) & Counter(e)).values())
        edits += Levenshtein.distance(r, e)
    precision = matched / n_est if n_est else float(n_ref == 0)
    recall = matched / n_ref if n_ref else float(n_est == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "token_f1": f1,
        "token_error_rate": edits / n_ref if n_ref else float(n_est > 0),
        "length_ratio": n_est / n_ref if n_ref else (1.0 if n_est == 0 else math.inf),
    }
