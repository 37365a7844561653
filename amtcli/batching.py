"""Transcribe one recording (:func:`transcribe`) or many, with windows from several
files in each model batch.

One file at a time leaves the last batch of every file part-empty and pays the
model's per-call overhead per file; here windows are drawn in order from a queue of
loaded recordings and run ``batch_windows`` at a time whatever file they come from.
Audio arrives as blocks (:class:`~amtcli.audio.AudioStream`) and is cut into windows
as it comes; each window's output goes straight to its file's stitcher and streaming
decoder, so a file's result is ready the moment its last window has run, and memory
holds about one window of audio per file in flight plus one batch of outputs,
however long the recordings are.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, Iterable, Iterator, TypeVar

import numpy as np

from amtcli.audio import Audio, AudioStream
from amtcli.checkpoint import LoadedModel
from amtcli.errors import AmtError, ConfigError
from amtcli.inference import ChunkDecoder, finish_transcription, run_windows, window_spec
from amtcli.options import DecodeOptions, WindowSpec
from amtcli.types import Transcription
from amtcli.windowing import keep_span, stream_windows

K = TypeVar("K")


@dataclass
class _FileState(Generic[K]):
    key: K
    source: str
    sample_rate: int
    windows: Iterator[tuple[np.ndarray, int, int | None]]
    decoder: ChunkDecoder
    sent: int = 0
    received: int = 0
    n_frames: int | None = None     # known once the last window has been cut
    failed: bool = False
    notes: list = field(default_factory=list)
    counter: "_CountingBlocks | None" = None

    @property
    def all_sent(self) -> bool:
        return self.n_frames is not None or self.failed

    @property
    def n_samples(self) -> int:
        return self.counter.n_samples if self.counter is not None else 0


class _CountingBlocks:
    """Passes audio blocks through and counts their samples."""

    def __init__(self, blocks: Iterable[np.ndarray]):
        self._blocks = iter(blocks)
        self.n_samples = 0

    def __iter__(self) -> "_CountingBlocks":
        return self

    def __next__(self) -> np.ndarray:
        block = next(self._blocks)
        self.n_samples += len(block)
        return block


def transcribe_stream(model: LoadedModel, recordings: Iterable[tuple[K, "Audio | AudioStream | AmtError"]],
                      options: DecodeOptions | None = None, batch_windows: int = 4,
                      window_s: float | None = None, hop_s: float | None = None,
                      ) -> Iterator[tuple[K, Transcription | AmtError]]:
    """Yield ``(key, Transcription)`` for each ``(key, Audio or AudioStream)`` as soon as it is done.

    Anything with ``sample_rate``, ``source`` and a ``blocks()`` generator streams like
    an AudioStream (e.g. :class:`ReadAhead`).

    Transcriptions come in input order. An item may carry an error in place of the
    audio (a file that failed to open); it is passed on as ``(key, error)`` when it is
    reached, as is an error met while a stream is being read, so one bad file does not
    stop the others. Audio must be mono at ``model.features.sample_rate``. Results
    equal :func:`amtcli.inference.transcribe` on each file alone.
    """
    options = options or model.decode
    spec = window_spec(model, window_s, hop_s)
    source = iter(recordings)
    queue: deque[_FileState[K]] = deque()        # files with windows to send or outputs to receive
    exhausted = False
    while True:
        batch: list[tuple[_FileState[K], np.ndarray, int]] = []
        failures: list[tuple[K, AmtError]] = []
        while len(batch) < batch_windows:
            state = next((s for s in queue if not s.all_sent), None)
            if state is None:
                if exhausted:
                    break
                try:
                    key, item = next(source)
                except StopIteration:
                    exhausted = True
                    continue
                if isinstance(item, AmtError):
                    failures.append((key, item))
                elif item.sample_rate != model.features.sample_rate:
                    failures.append((key, ConfigError(f"audio is at {item.sample_rate} Hz but the model needs "
                                                      f"{model.features.sample_rate} Hz")))
                else:
                    queue.append(_new_state(model, key, item, spec, options))
                continue
            try:
                while not state.all_sent and len(batch) < batch_windows:
                    window, index, n_frames = next(state.windows)
                    batch.append((state, window, index))
                    state.sent += 1
                    state.n_frames = n_frames
            except AmtError as exc:          # a stream went bad part-way: drop the file, keep the rest
                state.failed = True
                queue.remove(state)
                failures.append((state.key, exc))
        yield from failures
        batch = [entry for entry in batch if not entry[0].failed]
        if not batch:
            if exhausted and not queue:
                return
            continue
        outputs = run_windows(model, [window for _, window, _ in batch], options)
        for (state, _, index), output in zip(batch, outputs):
            last = state.n_frames is not None and index == state.sent - 1
            lo, hi = keep_span(index, last, state.n_frames, spec)
            state.notes.extend(state.decoder.push_window(output, index * spec.hop_frames, lo, hi))
            state.received += 1
        while queue and queue[0].all_sent and queue[0].received == queue[0].sent:
            done = queue.popleft()
            duration_s = done.n_samples / done.sample_rate
            done.notes.extend(done.decoder.finish(duration_s))
            yield done.key, finish_transcription(model, done.source, duration_s, done.notes, done.sent,
                                                 done.decoder.stats)


def _new_state(model: LoadedModel, key, item: Audio | AudioStream, spec: WindowSpec,
               options: DecodeOptions) -> _FileState:
    counter = _CountingBlocks(item.blocks() if hasattr(item, "blocks") else [item.samples])
    return _FileState(key, item.source, item.sample_rate, stream_windows(counter, spec),
                      ChunkDecoder(model, options), counter=counter)


class ReadAhead:
    """An :class:`~amtcli.audio.AudioStream` whose blocks a background thread decodes and
    resamples up to ``max_blocks`` ahead, so file reading overlaps the model."""

    def __init__(self, stream: AudioStream, max_blocks: int = 4):
        import queue
        import threading

        self.sample_rate, self.source = stream.sample_rate, stream.source
        self.warning = stream.warning
        self._stream = stream
        self._queue: queue.Queue = queue.Queue(max_blocks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="amtcli-read", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            blocks = self._stream.blocks()
            try:
                for block in blocks:
                    if not self._put(("block", block)):
                        return
            finally:
                blocks.close()          # frees the decoder and resampler in this thread
            self._put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(("error", exc))

    def _put(self, item) -> bool:
        """Queue ``item``, waiting for room unless :meth:`close` was called (then False)."""
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    @property
    def reading(self) -> bool:
        """True while the background thread still holds the file."""
        return self._thread.is_alive()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop reading ahead and wait (up to ``timeout_s``) for the thread to let go of
        the file, so an interrupted run exits without native objects left alive."""
        self._stop.set()
        self._thread.join(timeout_s)

    def blocks(self) -> Iterator[np.ndarray]:
        while True:
            kind, value = self._queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value


def transcribe(model: LoadedModel, audio: Audio, options: DecodeOptions | None = None,
               window_s: float | None = None, hop_s: float | None = None, batch_windows: int = 4) -> Transcription:
    """Transcribe mono ``audio`` (already at ``model.features.sample_rate``).

    ``options`` defaults to the thresholds stored with the checkpoint (``model.decode``).
    Returns a Transcription whose notes are in seconds from the start of the audio.
    Raises ConfigError when the audio is not at the model's rate.
    """
    ((_, result),) = list(transcribe_stream(model, [(0, audio)], options, batch_windows, window_s, hop_s))
    if isinstance(result, Exception):
        raise result
    return result
