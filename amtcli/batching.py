"""Transcribe many recordings with windows from several files in each model batch.

One file at a time leaves the last batch of every file part-empty and pays the
model's per-call overhead per file; here windows are drawn in order from a queue of
loaded recordings and run ``batch_windows`` at a time whatever file they come from.
Each window's output goes straight to its file's stitcher and streaming decoder, so
a file's result is ready the moment its last window has run, and memory holds only
the recordings waiting in the queue plus one batch of outputs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, Iterable, Iterator, TypeVar

import numpy as np

from amtcli.audio import Audio
from amtcli.checkpoint import LoadedModel
from amtcli.errors import AmtError, ConfigError
from amtcli.inference import ChunkDecoder, finish_transcription, run_windows, window_spec
from amtcli.options import DecodeOptions, WindowSpec
from amtcli.types import Transcription
from amtcli.windowing import iter_windows, keep_range, total_frames, window_count

K = TypeVar("K")


@dataclass
class _FileState(Generic[K]):
    key: K
    audio: Audio
    n_frames: int
    n_windows: int
    windows: Iterator[np.ndarray]
    decoder: ChunkDecoder
    sent: int = 0
    received: int = 0
    notes: list = field(default_factory=list)


def transcribe_stream(model: LoadedModel, recordings: Iterable[tuple[K, Audio | AmtError]],
                      options: DecodeOptions | None = None, batch_windows: int = 8,
                      window_s: float | None = None, hop_s: float | None = None,
                      ) -> Iterator[tuple[K, Transcription | AmtError]]:
    """Yield ``(key, Transcription)`` for each ``(key, Audio)`` as soon as it is done.

    Transcriptions come in input order. ``recordings`` may carry an error in place of
    the audio (a file that failed to load); it is passed on as ``(key, error)`` when it
    is reached, so one bad file does not stop the others. Audio must be mono at
    ``model.features.sample_rate``. Results equal :func:`amtcli.inference.transcribe`
    on each file alone.
    """
    options = options or model.decode
    spec = window_spec(model, window_s, hop_s)
    source = iter(recordings)
    queue: deque[_FileState[K]] = deque()        # files with windows to send or outputs to receive
    exhausted = False
    while True:
        batch: list[tuple[_FileState[K], np.ndarray]] = []
        while len(batch) < batch_windows:
            state = next((s for s in queue if s.sent < s.n_windows), None)
            if state is None:
                if exhausted:
                    break
                try:
                    key, item = next(source)
                except StopIteration:
                    exhausted = True
                    continue
                if isinstance(item, AmtError):
                    yield key, item
                elif item.sample_rate != model.features.sample_rate:
                    yield key, ConfigError(f"audio is at {item.sample_rate} Hz but the model needs "
                                           f"{model.features.sample_rate} Hz")
                else:
                    queue.append(_new_state(model, key, item, spec, options))
                continue
            while state.sent < state.n_windows and len(batch) < batch_windows:
                batch.append((state, next(state.windows)))
                state.sent += 1
        if not batch:
            return
        outputs = run_windows(model, [window for _, window in batch], options)
        for (state, _), output in zip(batch, outputs):
            lo, hi = keep_range(state.received, state.n_windows, state.n_frames, spec)
            state.notes.extend(state.decoder.push_window(output, state.received * spec.hop_frames, lo, hi))
            state.received += 1
        while queue and queue[0].received == queue[0].n_windows:
            done = queue.popleft()
            done.notes.extend(done.decoder.finish())
            yield done.key, finish_transcription(model, done.audio, done.notes, done.n_windows, done.decoder.stats)


def _new_state(model: LoadedModel, key, audio: Audio, spec: WindowSpec, options: DecodeOptions) -> _FileState:
    n_frames = total_frames(len(audio.samples), spec)
    return _FileState(key, audio, n_frames, window_count(n_frames, spec), iter_windows(audio.samples, spec),
                      ChunkDecoder(model, options, audio.duration_s))
