"""Notes -> frame-aligned training targets on the model's frame grid."""

from __future__ import annotations

import numpy as np

from amtcli.types import N_KEYS, PIANO_LOW, Note


ONSET_FRAMES = 2  #: Frames marked as onset from the onset frame on (40 ms at 50 frames/s).


def frame_targets(notes: list[Note], start_s: float, n_frames: int, frame_rate_hz: float,
                  reattack_gap_frames: int = 0) -> dict[str, np.ndarray]:
    """Targets for the frames [start_s, start_s + n_frames / frame_rate_hz).

    Returns float32 arrays (n_frames, 88): ``frame`` (1 while a note sounds: frames
    round(onset)..round(offset)-1, at least one), ``onset`` (1 for
    ``ONSET_FRAMES`` frames from round(onset) on, so a 20 ms grid still gives the sparse
    onset head enough positives), ``offset`` (1 at round(offset), the first silent frame) and ``velocity``
    (velocity / 127 over the note's frames). Pitches outside 21..108 are ignored.

    With ``reattack_gap_frames`` > 0 a note's ``frame`` target ends that many frames
    before the next onset of the same pitch when the two would otherwise touch or
    overlap, so a frame-only model can show a repeated note as a dip (its decoder
    splits there); the note keeps at least one frame.
    """
    out = {key: np.zeros((n_frames, N_KEYS), dtype=np.float32) for key in ("frame", "onset", "offset", "velocity")}
    next_onset = _next_same_pitch_onset(notes, start_s, frame_rate_hz) if reattack_gap_frames > 0 else {}
    for index, note in enumerate(notes):
        key = note.pitch - PIANO_LOW
        if not 0 <= key < N_KEYS:
            continue
        on = int(round((note.onset_s - start_s) * frame_rate_hz))
        off = max(on + 1, int(round((note.offset_s - start_s) * frame_rate_hz)))
        if index in next_onset and next_onset[index] - reattack_gap_frames < off:
            off = max(on + 1, next_onset[index] - reattack_gap_frames)
        if off <= 0 or on >= n_frames:
            continue
        lo, hi = max(on, 0), min(off, n_frames)
        out["frame"][lo:hi, key] = 1.0
        out["velocity"][lo:hi, key] = note.velocity / 127.0
        if on + ONSET_FRAMES > 0:   # (a note that began before the crop has no onset in it)
            out["onset"][max(on, 0):min(on + ONSET_FRAMES, off, n_frames), key] = 1.0
        if off < n_frames:
            out["offset"][off, key] = 1.0
    return out


def _next_same_pitch_onset(notes: list[Note], start_s: float, frame_rate_hz: float) -> dict[int, int]:
    """Index of each note -> onset frame of the next later note of the same pitch."""
    order = sorted(range(len(notes)), key=lambda i: (notes[i].pitch, notes[i].onset_s))
    out = {}
    for a, b in zip(order, order[1:]):
        if notes[a].pitch == notes[b].pitch and notes[b].onset_s > notes[a].onset_s:
            out[a] = int(round((notes[b].onset_s - start_s) * frame_rate_hz))
    return out
