"""eval --errors: each unmatched note lands in the class the rules give it."""

from __future__ import annotations

import json

import pytest

from amtcli.evaluation import evaluate_notes, mean_result
from amtcli.note_errors import classify_errors, classify_estimate
from amtcli.types import ErrorCounts, Note

REFERENCE = [Note(1.0, 3.0, 48), Note(1.0, 2.0, 60)]


@pytest.mark.parametrize("estimate, expected", [
    (Note(1.2, 2.0, 60), "harmonic"),        # +12 over the sounding 48
    (Note(1.5, 2.5, 67), "harmonic"),        # +19 over 48
    (Note(1.5, 2.5, 72), "harmonic"),        # +24 over 48 (also +12 over 60)
    (Note(1.5, 2.5, 76), "harmonic"),        # +28
    (Note(1.5, 2.5, 79), "harmonic"),        # +31
    (Note(1.5, 2.5, 36), "octave_below"),    # -12 under 48
    (Note(2.5, 2.9, 48), "split"),           # 48 re-attacked 1.5 s into it
    (Note(1.3, 1.9, 61), "semitone"),        # one above the sounding 60
    (Note(5.0, 6.0, 50), "silence"),
    (Note(1.5, 2.5, 53), "other"),
])
def test_each_class(estimate, expected):
    assert classify_estimate(estimate, REFERENCE) == expected


def test_timing_late_and_early():
    reference = [Note(1.0, 1.1, 50), Note(3.0, 4.0, 55)]
    assert classify_estimate(Note(1.12, 1.3, 50), reference) == "timing"   # 120 ms late, after the note ended
    assert classify_estimate(Note(2.9, 3.5, 55), reference) == "timing"    # 100 ms early
    assert classify_estimate(Note(3.1, 3.5, 55), reference) == "timing"    # 100 ms late, still sounding
    assert classify_estimate(Note(3.2, 3.5, 55), reference) == "split"     # 200 ms late: a re-attack
    assert classify_estimate(Note(1.3, 1.5, 50), reference) == "silence"   # 300 ms late, nothing sounding


def test_harmonic_is_checked_before_split():
    # 60 is both a held reference note (split) and the octave of the sounding 48
    reference = [Note(0.0, 3.0, 48), Note(0.0, 3.0, 60)]
    assert classify_estimate(Note(2.0, 2.5, 60), reference) == "harmonic"


def test_counts_hits_misses_and_classes():
    estimate = [Note(1.01, 3.0, 48), Note(1.2, 2.0, 60), Note(5.0, 6.0, 50)]
    counts = classify_errors(REFERENCE, estimate)
    assert counts == ErrorCounts(hit=1, missed=1, harmonic=1, silence=1)
    assert counts.hit + sum(getattr(counts, c) for c in ErrorCounts.ESTIMATE_CLASSES) == len(estimate)


def test_empty_sides():
    assert classify_errors([], []) == ErrorCounts()
    assert classify_errors(REFERENCE, []) == ErrorCounts(missed=2)
    assert classify_errors([], [Note(0.0, 1.0, 60)]) == ErrorCounts(silence=1)


def test_evaluate_notes_carries_counts_and_mean_sums_them():
    first = evaluate_notes(REFERENCE, [Note(1.2, 2.0, 60)], name="a", errors=True)
    second = evaluate_notes(REFERENCE, list(REFERENCE), name="b", errors=True)
    assert first.errors == ErrorCounts(hit=0, missed=2, harmonic=1)
    assert second.errors == ErrorCounts(hit=2)
    assert mean_result([first, second]).errors == ErrorCounts(hit=2, missed=2, harmonic=1)
    assert json.loads(json.dumps(first.as_dict()))["errors"]["harmonic"] == 1
    assert evaluate_notes(REFERENCE, REFERENCE).errors is None
