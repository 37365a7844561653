"""Frame posteriors -> notes, as a stream.

Two decoders share one per-pitch state machine (:class:`_RunTracker`):

* :class:`OnsetFrameDecoder` (Onsets-and-Frames): a note starts where the onset
  probability rises above ``onset_threshold`` and lasts while the frame (or onset)
  probability stays above ``frame_threshold``; a new onset while a note sounds
  re-attacks it.
* :class:`FrameOnlyDecoder`: a note is a run of frames above ``frame_threshold``;
  gaps up to ``gap_fill_s`` are filled, notes shorter than ``min_duration_s`` are
  dropped, and with ``reonset_threshold`` > 0 a sharp rise in probability inside a
  held note splits it. Given onset probabilities, an onset peak inside a held note
  re-attacks it, and with ``onset_support`` > 0 a run of frames starts a note only if
  the onset probability reaches that value within ``ONSET_SUPPORT_S`` of its rise, or
  if it rises sharply (by ``reonset_threshold`` in one frame, which starts a note
  anyway); the decoder then holds back that many frames to see them. What it drops
  are runs that fade in with no attack, such as a partial of a held note.

Both take (n, 88) chunks in order (``push``) and emit finished notes, then
``finish`` flushes; feeding one whole posteriorgram or many chunks gives the same
notes. Frame k is time k / frame_rate_hz seconds; column j is MIDI pitch 21 + j.

Posteriorgrams stitched from overlapping windows change from one window's output to
the next at the joins (:func:`~amtcli.windowing.join_frames`). A step there is not a rise
inside a note: told the joins (``add_joins``), neither decoder re-attacks a note that is
sounding when a join frame arrives (an onset head that reads a window starting mid-note as
an onset would otherwise split sustained notes at every join). The rule uses the decoder's
own note state, so it too gives the same notes however the posteriorgram is chunked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from amtcli.options import DecodeOptions
from amtcli.types import N_KEYS, PIANO_LOW, FramePosteriors, Note

ONSET_SUPPORT_S = 0.06
"""How far (seconds, each side) from a frame rise ``onset_support`` looks for the onset."""


class _RunTracker:
    """Per-pitch note state across chunks, on the global frame index."""

    def __init__(self, frame_rate_hz: float, gap_frames: int, min_frames: int, require_start: bool):
        self.frame_rate_hz = frame_rate_hz
        self.joins: set[int] = set()
        self.gap_frames = gap_frames
        self.min_frames = max(1, min_frames)
        self.require_start = require_start
        self.open_start = np.full(N_KEYS, -1, dtype=np.int64)
        self.fell_at = np.full(N_KEYS, -1, dtype=np.int64)
        self.velocity = np.zeros(N_KEYS, dtype=np.float32)
        self.confidence = np.zeros(N_KEYS, dtype=np.float32)
        self.prev_active = np.zeros(N_KEYS, dtype=bool)
        self.position = 0
        self.notes: list[Note] = []

    def _close(self, pitch: int, end: int) -> None:
        start = int(self.open_start[pitch])
        if start >= 0 and end - start >= self.min_frames:
            self.notes.append(
                Note(
                    onset_s=start / self.frame_rate_hz,
                    offset_s=end / self.frame_rate_hz,
                    pitch=PIANO_LOW + int(pitch),
                    velocity=int(np.clip(round(float(self.velocity[pitch]) * 127), 1, 127)),
                    confidence=float(np.clip(self.confidence[pitch], 0.0, 1.0)),
                )
            )
        self.open_start[pitch] = -1
        self.fell_at[pitch] = -1

    def _open(self, pitch: int, frame: int, velocity: float, confidence: float) -> None:
        self.open_start[pitch] = frame
        self.fell_at[pitch] = -1
        self.velocity[pitch] = velocity
        self.confidence[pitch] = confidence

    def push(self, active: np.ndarray, starts: np.ndarray, velocity: np.ndarray, confidence: np.ndarray,
             rise_ok: np.ndarray | None = None) -> None:
        """Advance over one chunk.

        Args:
            active: (n, 88) bool, pitch sounding.
            starts: (n, 88) bool, a note (re)starts here.
            velocity: (n, 88) velocity / 127 to give a note starting in that frame.
            confidence: (n, 88) confidence to give a note starting in that frame.
            rise_ok: (n, 88) bool or None: where False, a rise of ``active`` opens no note
                (None: every rise may, unless ``require_start``).
        """
        n = active.shape[0]
        at_join = np.zeros(n, dtype=bool)
        for frame in self.joins:
            if self.position <= frame < self.position + n:
                at_join[frame - self.position] = True
        previous = np.concatenate([self.prev_active[None, :], active[:-1]], axis=0)
        rising = active & ~previous
        falling = ~active & previous
        for pitch in np.flatnonzero((rising | falling | starts).any(axis=0) | (self.open_start >= 0)):
            events = np.flatnonzero(rising[:, pitch] | falling[:, pitch] | starts[:, pitch])
            for t in events:
                frame = self.position + int(t)
                if self.fell_at[pitch] >= 0 and frame - self.fell_at[pitch] > self.gap_frames:
                    self._close(pitch, int(self.fell_at[pitch]))
                if starts[t, pitch]:
                    if at_join[t] and self.open_start[pitch] >= 0 and self.fell_at[pitch] < 0:
                        continue        # windows hand over here: the note goes on, no re-attack
                    if self.open_start[pitch] >= 0:
                        self._close(pitch, frame if self.fell_at[pitch] < 0 else int(self.fell_at[pitch]))
                    self._open(pitch, frame, velocity[t, pitch], confidence[t, pitch])
                elif rising[t, pitch]:
                    if self.open_start[pitch] >= 0:
                        self.fell_at[pitch] = -1
                    elif not self.require_start and (rise_ok is None or rise_ok[t, pitch]):
                        self._open(pitch, frame, velocity[t, pitch], confidence[t, pitch])
                elif falling[t, pitch] and self.open_start[pitch] >= 0:
                    self.fell_at[pitch] = frame
            end = self.position + n
            if self.fell_at[pitch] >= 0 and end - self.fell_at[pitch] > self.gap_frames:
                self._close(pitch, int(self.fell_at[pitch]))
        self.prev_active = active[-1].copy()
        self.position += n
        self.joins = {frame for frame in self.joins if frame >= self.position}

    def finish(self) -> list[Note]:
        for pitch in np.flatnonzero(self.open_start >= 0):
            end = int(self.fell_at[pitch]) if self.fell_at[pitch] >= 0 else self.position
            self._close(int(pitch), end)
        notes, self.notes = self.notes, []
        return notes

    def take(self) -> list[Note]:
        notes, self.notes = self.notes, []
        return notes


def _frames_for(seconds: float, frame_rate_hz: float) -> int:
    return int(math.ceil(seconds * frame_rate_hz - 1e-9))


class _TrackedDecoder:
    """What the streaming frame decoders share: a :class:`_RunTracker` in ``_tracker``."""

    _tracker: _RunTracker

    def add_joins(self, frames: Iterable[int]) -> None:
        """Global frames where the posteriorgram passes from one window's output to the
        next (no re-attack of a sounding note there); frames already pushed are ignored."""
        self._tracker.joins.update(int(f) for f in frames)

    def finish(self) -> list[Note]:
        return self._tracker.finish()


class OnsetFrameDecoder(_TrackedDecoder):
    """Onset-peak + frame-continuation decoding (see module docstring)."""

    def __init__(self, frame_rate_hz: float, options: DecodeOptions = DecodeOptions()):
        self.options = options
        self._tracker = _RunTracker(frame_rate_hz, 0, _frames_for(options.min_duration_s, frame_rate_hz), True)
        self._prev_onset = np.zeros(N_KEYS, dtype=bool)

    def push(self, frames: np.ndarray, onsets: np.ndarray, velocity: np.ndarray | None = None) -> list[Note]:
        """Feed (n, 88) frame and onset probabilities (and velocity / 127); return finished notes."""
        onset_on = onsets >= self.options.onset_threshold
        previous = np.concatenate([self._prev_onset[None, :], onset_on[:-1]], axis=0)
        starts = onset_on & ~previous
        active = (frames >= self.options.frame_threshold) | onset_on
        vel = velocity if velocity is not None else np.full_like(frames, 80 / 127)
        self._tracker.push(active, starts, vel, onsets)
        self._prev_onset = onset_on[-1].copy()
        return self._tracker.take()



class FrameOnlyDecoder(_TrackedDecoder):
    """Threshold + gap filling + minimum duration (+ optional re-onset, onset support) decoding."""

    def __init__(self, frame_rate_hz: float, options: DecodeOptions = DecodeOptions()):
        self.options = options
        self._tracker = _RunTracker(
            frame_rate_hz,
            _frames_for(options.gap_fill_s, frame_rate_hz) if options.gap_fill_s > 0 else 0,
            _frames_for(options.min_duration_s, frame_rate_hz),
            False,
        )
        self._prev_prob = np.zeros(N_KEYS, dtype=np.float32)
        self._prev_onset = np.zeros(N_KEYS, dtype=bool)
        self._support_frames = int(round(ONSET_SUPPORT_S * frame_rate_hz))
        self._held: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None   # frames not yet decoded
        self._onset_history = np.zeros((self._support_frames, N_KEYS), dtype=np.float32)

    def push(self, frames: np.ndarray, onsets: np.ndarray | None = None,
             velocity: np.ndarray | None = None) -> list[Note]:
        """Feed (n, 88) frame probabilities; return finished notes.

        With ``onsets`` (n, 88), a rising edge of onset probability above
        ``onset_threshold`` inside a held note re-attacks it (and ``onset_support``
        applies); ``velocity`` (n, 88, velocity / 127) gives each note the velocity of
        its first frame.
        """
        vel = velocity if velocity is not None else np.full_like(frames, 80 / 127)
        if onsets is None or self.options.onset_support <= 0:
            self._decode(frames, onsets, vel, None)
            return self._tracker.take()
        if self._held is not None:
            frames, onsets, vel = (np.concatenate([held, new]) for held, new in zip(self._held, (frames, onsets, vel)))
        ready = len(frames) - self._support_frames
        if ready <= 0:
            self._held = (frames, onsets, vel)
            return []
        self._held = (frames[ready:], onsets[ready:], vel[ready:])
        self._decode_supported(frames[:ready], onsets, vel[:ready])
        return self._tracker.take()

    def finish(self) -> list[Note]:
        held, self._held = self._held, None
        if held is not None and len(held[0]):
            frames, onsets, vel = held
            future = np.zeros((self._support_frames, N_KEYS), dtype=onsets.dtype)
            self._decode_supported(frames, np.concatenate([onsets, future]), vel)
        return self._tracker.finish()

    def _decode_supported(self, frames: np.ndarray, onsets: np.ndarray, velocity: np.ndarray) -> None:
        """Decode (n, 88) ``frames``; ``onsets`` has ``support_frames`` rows of look-ahead more."""
        n, w = len(frames), self._support_frames
        context = np.concatenate([self._onset_history, onsets.astype(np.float32)])   # frames -w .. n + w - 1
        nearby = np.max(np.stack([context[k : k + n] for k in range(2 * w + 1)]), axis=0)
        self._onset_history = context[n : n + w]
        self._decode(frames, onsets[:n], velocity, nearby >= self.options.onset_support)

    def _decode(self, frames: np.ndarray, onsets: np.ndarray | None, velocity: np.ndarray,
                rise_ok: np.ndarray | None) -> None:
        active = frames >= self.options.frame_threshold
        if self.options.reonset_threshold > 0:
            previous = np.concatenate([self._prev_prob[None, :], frames[:-1]], axis=0)
            starts = active & (frames - previous >= self.options.reonset_threshold)
        else:
            starts = np.zeros_like(active)
        if onsets is not None:
            onset_on = onsets >= self.options.onset_threshold
            previous_onset = np.concatenate([self._prev_onset[None, :], onset_on[:-1]], axis=0)
            starts = starts | (active & onset_on & ~previous_onset)
            self._prev_onset = onset_on[-1].copy()
        self._tracker.push(active, starts, velocity, frames, rise_ok)
        self._prev_prob = frames[-1].astype(np.float32).copy()


def decoder_for(frame_rate_hz: float, options: DecodeOptions, has_onsets: bool):
    """The decoder for a model's outputs: :class:`OnsetFrameDecoder` when the model has an
    onset head and ``options.note_start == "onset"``, else :class:`FrameOnlyDecoder`.

    Both accept ``push(frames, onsets=None, velocity=None)`` and ``add_joins(frames)``.
    """
    if has_onsets and options.note_start == "onset":
        return OnsetFrameDecoder(frame_rate_hz, options)
    return FrameOnlyDecoder(frame_rate_hz, options)


def decode_posteriors(posteriors: FramePosteriors, options: DecodeOptions = DecodeOptions()) -> list[Note]:
    """Decode a whole posteriorgram with :func:`decoder_for`."""
    decoder = decoder_for(posteriors.frame_rate_hz, options, posteriors.onsets is not None)
    notes = decoder.push(posteriors.frames, posteriors.onsets, posteriors.velocity)
    return notes + decoder.finish()
