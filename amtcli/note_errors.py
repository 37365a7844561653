"""Where the missing points go: every unmatched note of a transcription, in one class.

Notes are matched as the note-onset measure matches them (``mir_eval.transcription.
match_notes``, onset tolerance 50 ms, pitches within 50 cents, no offset condition).
Each unmatched *estimated* note is put in the first class that applies, checked in
this order (a reference note is *sounding* at time t when
``onset_s - 0.05 <= t < offset_s``; t is the estimated note's onset):

1. ``harmonic``: its pitch is +12, +19, +24, +28 or +31 semitones from a sounding
   reference note (the 2nd to 6th partial heard as a note);
2. ``octave_below``: 12 semitones below a sounding reference note;
3. ``split``: the pitch of a sounding reference note that began more than 150 ms before
   it (a held note re-attacked, whether that note's own onset was matched or not);
4. ``timing``: the pitch of a reference note whose onset is 50-150 ms away (late or
   early);
5. ``semitone``: one semitone from a sounding reference note;
6. ``silence``: no reference note is sounding;
7. ``other``.

Each unmatched *reference* note is ``missed``; ``hit`` counts the matched pairs.
"""

from __future__ import annotations

import warnings

import numpy as np

from amtcli.types import HARMONIC_INTERVALS, ErrorCounts, Note, midi_to_hz

ONSET_TOLERANCE_S = 0.05   #: as the note-onset measure (amtcli.evaluation)
TIMING_LIMIT_S = 0.15      #: onsets 50-150 ms off are "timing" errors


def matched_pairs(reference: list[Note], estimate: list[Note]) -> list[tuple[int, int]]:
    """(reference index, estimate index) of the note-onset measure's matches."""
    import mir_eval

    if not reference or not estimate:
        return []
    ref_intervals = np.array([[n.onset_s, n.offset_s] for n in reference], dtype=float)
    est_intervals = np.array([[n.onset_s, n.offset_s] for n in estimate], dtype=float)
    ref_hz = np.asarray(midi_to_hz(np.array([n.pitch for n in reference], dtype=float)))
    est_hz = np.asarray(midi_to_hz(np.array([n.pitch for n in estimate], dtype=float)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(mir_eval.transcription.match_notes(
            ref_intervals, ref_hz, est_intervals, est_hz, onset_tolerance=ONSET_TOLERANCE_S, offset_ratio=None))


def classify_estimate(note: Note, reference: list[Note]) -> str:
    """The class (see the module docstring) of one unmatched estimated note."""
    sounding = [r for r in reference if r.onset_s - ONSET_TOLERANCE_S <= note.onset_s < r.offset_s]
    intervals = {note.pitch - r.pitch for r in sounding}
    if intervals & set(HARMONIC_INTERVALS):
        return "harmonic"
    if -12 in intervals:
        return "octave_below"
    if any(r.pitch == note.pitch and note.onset_s - r.onset_s > TIMING_LIMIT_S for r in sounding):
        return "split"
    if any(r.pitch == note.pitch and ONSET_TOLERANCE_S < abs(note.onset_s - r.onset_s) <= TIMING_LIMIT_S
           for r in reference):
        return "timing"
    if intervals & {-1, 1}:
        return "semitone"
    if not sounding:
        return "silence"
    return "other"


def classify_errors(reference: list[Note], estimate: list[Note]) -> ErrorCounts:
    """Count hits, misses and each class of unmatched estimated note (module docstring)."""
    pairs = matched_pairs(reference, estimate)
    matched_est = {e for _, e in pairs}
    counts = {name: 0 for name in ErrorCounts.ESTIMATE_CLASSES}
    for index, note in enumerate(estimate):
        if index not in matched_est:
            counts[classify_estimate(note, reference)] += 1
    return ErrorCounts(hit=len(pairs), missed=len(reference) - len(pairs), **counts)
