"""CTC outputs -> timed notes, as a stream.

Vocabulary (shared with the "CTC vs. Seq2Seq" study): token ``pitch - 21`` for the 88
keys, ``PAD`` 88, ``BLANK`` 89, ``SOS`` 90, ``EOS`` 91. A CTC model emits ``slots``
token distributions per frame (several so that a chord's notes can all fire within
one 20 ms frame), over the first ``N_CTC_CLASSES`` ids.

A note starts at the frame whose slot emits its token; it ends at the first later
frame where the model's frame-activity probability for that pitch falls below
``frame_threshold`` (at least ``min_duration_s`` after its start), or where the same
pitch is emitted again. Both decoders take stitched chunks in order (``push``) and
emit finished notes; ``finish`` flushes. Feeding one whole array or many chunks
gives the same notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from amtcli.types import N_KEYS, PIANO_LOW, Note

PAD, BLANK, SOS, EOS = 88, 89, 90, 91
N_CTC_CLASSES = 90  #: Pitch tokens 0..87, PAD (never a target) and BLANK.


def notes_to_tokens(notes: list[Note]) -> list[int]:
    """Pitch tokens of ``notes`` ordered by onset, then pitch (keys outside 21..108 dropped)."""
    ordered = sorted(notes, key=lambda n: (n.onset_s, n.pitch))
    return [n.pitch - PIANO_LOW for n in ordered if 0 <= n.pitch - PIANO_LOW < N_KEYS]


def onset_starts(onset_targets: np.ndarray) -> np.ndarray:
    """(n_frames, 88) onset targets -> (n_frames, 88) bool, True at each note's first onset
    frame (the rising edges of ``onset_targets > 0.5``; a label several frames wide is one note)."""
    on = onset_targets > 0.5
    return on & ~np.concatenate([np.zeros((1, on.shape[1]), dtype=bool), on[:-1]], axis=0)


def onset_tokens(onset_targets: np.ndarray) -> list[int]:
    """Tokens from a (n_frames, 88) onset target: rising edges ordered by frame, then pitch."""
    frames, keys = np.nonzero(onset_starts(onset_targets))
    return [int(k) for _, k in sorted(zip(frames, keys))]


@dataclass(frozen=True)
class CTCLayout:
    """Where things sit in one row of a CTC model's stitched output.

    A row (one frame) is ``slots * N_CTC_CLASSES`` token log-probabilities (slot-major),
    then 88 frame-activity probabilities, then 88 velocities (velocity / 127).
    """

    slots: int

    @property
    def width(self) -> int:
        return self.slots * N_CTC_CLASSES + 2 * N_KEYS

    def split(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, width) -> log-probs (n, slots, 90), frame probs (n, 88), velocity (n, 88)."""
        n = chunk.shape[0]
        tokens = self.slots * N_CTC_CLASSES
        return (chunk[:, :tokens].reshape(n, self.slots, N_CTC_CLASSES),
                chunk[:, tokens : tokens + N_KEYS], chunk[:, tokens + N_KEYS :])


class _NoteEnder:
    """Opens a note per emitted token and ends it from the frame-activity probabilities."""

    def __init__(self, frame_rate_hz: float, frame_threshold: float, min_duration_s: float):
        self.frame_rate_hz = frame_rate_hz
        self.threshold = frame_threshold
        self.min_frames = max(1, int(math.ceil(min_duration_s * frame_rate_hz - 1e-9)))
        self.open_start = np.full(N_KEYS, -1, dtype=np.int64)
        self.velocity = np.zeros(N_KEYS, dtype=np.float32)
        self.notes: list[Note] = []

    def _close(self, key: int, end: int, limit: int | None = None) -> None:
        """End the open note of ``key`` at frame ``end``, lengthened to the minimum
        duration but never past ``limit`` (the start of a re-attack of the same key)."""
        start = int(self.open_start[key])
        end = max(end, start + self.min_frames)
        if limit is not None:
            end = min(end, limit)
        self.notes.append(Note(start / self.frame_rate_hz, end / self.frame_rate_hz,
                               PIANO_LOW + key, int(np.clip(round(float(self.velocity[key]) * 127), 1, 127))))
        self.open_start[key] = -1

    def push(self, position: int, emissions: list[tuple[int, int]], frames: np.ndarray, velocity: np.ndarray) -> None:
        """Advance over frames ``position .. position + len(frames)``; ``emissions`` holds
        (global frame, token) pairs inside that span, in order."""
        by_frame: dict[int, list[int]] = {}
        for frame, token in emissions:
            by_frame.setdefault(frame, []).append(token)
        below = frames < self.threshold
        for t in range(frames.shape[0]):
            frame = position + t
            for key in np.flatnonzero(self.open_start >= 0):
                if frame - self.open_start[key] >= self.min_frames and below[t, key]:
                    self._close(int(key), frame)
            for key in by_frame.get(frame, ()):
                if self.open_start[key] == frame:
                    continue                      # the same key twice in one frame: one note
                if self.open_start[key] >= 0:
                    self._close(key, frame, limit=frame)
                self.open_start[key] = frame
                self.velocity[key] = velocity[t, key]

    def finish(self, end: int) -> list[Note]:
        for key in np.flatnonzero(self.open_start >= 0):
            self._close(int(key), end)
        return self.take()

    def take(self) -> list[Note]:
        notes, self.notes = self.notes, []
        return sorted(notes)


class CTCGreedyDecoder:
    """Best path: per slot the most likely class (``blank_offset`` subtracted from the
    blank's log-probability first), repeats collapsed, blanks removed."""

    def __init__(self, layout: CTCLayout, frame_rate_hz: float, frame_threshold: float = 0.5,
                 min_duration_s: float = 0.05, blank_offset: float = 0.0):
        self.layout = layout
        self.blank_offset = blank_offset
        self.ender = _NoteEnder(frame_rate_hz, frame_threshold, min_duration_s)
        self.previous = BLANK
        self.position = 0
        self.n_tokens = 0

    def push(self, chunk: np.ndarray) -> list[Note]:
        """Feed (n, layout.width) stitched rows; return finished notes."""
        log_probs, frames, velocity = self.layout.split(chunk)
        scores = log_probs.reshape(-1, N_CTC_CLASSES).copy()
        scores[:, BLANK] -= self.blank_offset
        best = scores.argmax(axis=1)
        previous = np.concatenate([[self.previous], best[:-1]])
        fire = (best != BLANK) & (best != previous) & (best < N_KEYS)
        slots = self.layout.slots
        emissions = [(self.position + int(i) // slots, int(best[i])) for i in np.flatnonzero(fire)]
        self.n_tokens += len(emissions)
        self.previous = int(best[-1]) if len(best) else self.previous
        self.ender.push(self.position, emissions, frames, velocity)
        self.position += chunk.shape[0]
        return self.ender.take()

    def finish(self) -> list[Note]:
        return self.ender.finish(self.position)


class CTCPrefixBeamDecoder:
    """CTC prefix beam search over the slot sequence, streaming.

    Keeps ``beam_width`` prefixes with their blank / non-blank log-probabilities; at
    each slot only classes above ``prune_log_prob`` are expanded (a slot where none is
    only extends every prefix with a blank). Tokens on which every surviving prefix
    agrees are committed after each chunk and frames before the first undecided token
    go to the note ender, so memory stays bounded on long recordings.
    """

    def __init__(self, layout: CTCLayout, frame_rate_hz: float, beam_width: int = 8, frame_threshold: float = 0.5,
                 min_duration_s: float = 0.05, blank_offset: float = 0.0, prune_log_prob: float = math.log(1e-3)):
        self.layout = layout
        self.beam_width = beam_width
        self.blank_offset = blank_offset
        self.prune = prune_log_prob
        self.ender = _NoteEnder(frame_rate_hz, frame_threshold, min_duration_s)
        # prefix (tuple of (frame, token)) -> (log p ending in blank, log p ending in non-blank)
        self.beams: dict[tuple, tuple[float, float]] = {(): (0.0, -math.inf)}
        self.position = 0
        self.n_tokens = 0
        self._committed: list[tuple[int, int]] = []
        self._pending: list[tuple[int, np.ndarray, np.ndarray]] = []

    def _step(self, frame: int, scores: np.ndarray) -> None:
        candidates = [int(c) for c in np.flatnonzero(scores[:N_KEYS] > self.prune)]
        blank = float(scores[BLANK])
        if not candidates:
            self.beams = {prefix: (float(np.logaddexp(pb, pnb)) + blank, -math.inf)
                          for prefix, (pb, pnb) in self.beams.items()}
            return
        new: dict[tuple, list[float]] = {}

        def add(prefix: tuple, p_blank: float, p_token: float) -> None:
            entry = new.setdefault(prefix, [-math.inf, -math.inf])
            entry[0] = float(np.logaddexp(entry[0], p_blank))
            entry[1] = float(np.logaddexp(entry[1], p_token))

        for prefix, (pb, pnb) in self.beams.items():
            total = float(np.logaddexp(pb, pnb))
            add(prefix, total + blank, -math.inf)
            last = prefix[-1][1] if prefix else None
            for c in candidates:
                p = float(scores[c])
                if c == last:
                    add(prefix, -math.inf, pnb + p)                   # a repeat collapses
                    add(prefix + ((frame, c),), -math.inf, pb + p)    # the same token again after a blank
                else:
                    add(prefix + ((frame, c),), -math.inf, total + p)
        ranked = sorted(new.items(), key=lambda kv: -float(np.logaddexp(*kv[1])))[: self.beam_width]
        self.beams = {prefix: (v[0], v[1]) for prefix, v in ranked}

    def _commit_common_prefix(self) -> None:
        prefixes = list(self.beams)
        common = min(len(p) for p in prefixes)
        for i in range(common):
            if any(p[i] != prefixes[0][i] for p in prefixes[1:]):
                common = i
                break
        if common:
            self._committed.extend(prefixes[0][:common])
            self.beams = {p[common:]: v for p, v in self.beams.items()}

    def _release(self, limit: float) -> None:
        """Give the note ender every pending frame before ``limit`` with its committed tokens."""
        while self._pending and self._pending[0][0] < limit:
            start, frames, velocity = self._pending[0]
            n = int(min(len(frames), limit - start))
            span = [e for e in self._committed if e[0] < start + n]
            self._committed = self._committed[len(span):]
            self.n_tokens += len(span)
            self.ender.push(start, span, frames[:n], velocity[:n])
            if n == len(frames):
                self._pending.pop(0)
            else:
                self._pending[0] = (start + n, frames[n:], velocity[n:])

    def push(self, chunk: np.ndarray) -> list[Note]:
        """Feed (n, layout.width) stitched rows; return finished notes."""
        log_probs, frames, velocity = self.layout.split(chunk)
        scores = log_probs.astype(np.float64)
        scores[..., BLANK] -= self.blank_offset
        for t in range(chunk.shape[0]):
            for s in range(self.layout.slots):
                self._step(self.position + t, scores[t, s])
        self._pending.append((self.position, frames, velocity))
        self.position += chunk.shape[0]
        self._commit_common_prefix()
        undecided = [p[0][0] for p in self.beams if p]
        self._release(min(undecided) if undecided else self.position)
        return self.ender.take()

    def finish(self) -> list[Note]:
        best = max(self.beams.items(), key=lambda kv: float(np.logaddexp(*kv[1])))[0]
        self._committed.extend(best)
        self.beams = {(): (0.0, -math.inf)}
        self._release(math.inf)
        return self.ender.finish(self.position)
