"""Split audio into overlapping windows and stitch frame-aligned outputs back.

Everything is counted on the model's frame grid (``WindowSpec``): a window of
``window_frames`` frames starts every ``hop_frames`` frames, so window starts are
exact sample offsets and timing cannot drift. Stitching keeps each window's
centre: the first window keeps its start, the last keeps its end, and inner
windows keep ``hop_frames`` frames from the middle. All functions are pure; the
stitcher is a generator so a long recording is processed as a stream.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import numpy as np

from amtcli.options import WindowSpec


def total_frames(n_samples: int, spec: WindowSpec) -> int:
    """Frames covering ``n_samples`` samples: ceil(n_samples / hop_samples), at least 1."""
    return max(1, math.ceil(n_samples / spec.hop_samples))


def window_count(n_frames: int, spec: WindowSpec) -> int:
    """Number of windows needed so that every one of ``n_frames`` frames is covered."""
    if n_frames <= spec.window_frames:
        return 1
    return 1 + math.ceil((n_frames - spec.window_frames) / spec.hop_frames)


def join_frames(n_frames: int, spec: WindowSpec) -> list[int]:
    """Frames of a stitched posteriorgram of ``n_frames`` frames where one window's kept
    part ends and the next one's begins (the first kept frame of windows 1, 2, ...);
    none for a single window."""
    return [index * spec.hop_frames + keep_span(index, False, None, spec)[0]
            for index in range(1, window_count(n_frames, spec))]


def window_start_frames(n_frames: int, spec: WindowSpec) -> list[int]:
    """Start frame of each window."""
    return [i * spec.hop_frames for i in range(window_count(n_frames, spec))]


def keep_range(index: int, n_windows: int, n_frames: int, spec: WindowSpec) -> tuple[int, int]:
    """Frames [lo, hi) *within* window ``index`` that survive stitching."""
    return keep_span(index, index == n_windows - 1, n_frames, spec)


def keep_span(index: int, last: bool, n_frames: int | None, spec: WindowSpec) -> tuple[int, int]:
    """:func:`keep_range` for a stream that only knows whether this window is the last;
    ``n_frames`` (the recording's frame count) is needed for the last window only."""
    start = index * spec.hop_frames
    lo = 0 if index == 0 else spec.margin_frames
    hi = n_frames - start if last else spec.window_frames - spec.margin_frames
    return lo, hi


def iter_windows(samples: np.ndarray, spec: WindowSpec) -> Iterator[np.ndarray]:
    """Yield windows of exactly ``spec.window_samples`` samples; the last is zero-padded.

    Args:
        samples: mono audio (n_samples,).
    """
    for window, _, _ in stream_windows([samples], spec):
        yield window


def stitch_stream(outputs: Iterable[np.ndarray], n_frames: int, spec: WindowSpec) -> Iterator[np.ndarray]:
    """Yield the kept part of each window's output, in order.

    Args:
        outputs: one array per window, (window_frames, ...) each, in window order.
        n_frames: total frames of the recording (``total_frames``).

    The concatenation of the yielded chunks has exactly ``n_frames`` rows, and only
    one window's output is held at a time.
    """
    n_windows = window_count(n_frames, spec)
    produced = 0
    for index, output in enumerate(outputs):
        if index >= n_windows:
            raise ValueError(f"got more than the expected {n_windows} window outputs")
        if output.shape[0] != spec.window_frames:
            raise ValueError(f"window output has {output.shape[0]} frames, expected {spec.window_frames}")
        lo, hi = keep_range(index, n_windows, n_frames, spec)
        produced += 1
        yield output[lo:hi]
    if produced != n_windows:
        raise ValueError(f"got {produced} window outputs, expected {n_windows}")


def stitch(outputs: Iterable[np.ndarray], n_frames: int, spec: WindowSpec) -> np.ndarray:
    """Concatenate :func:`stitch_stream` into one array (n_frames, ...)."""
    return np.concatenate(list(stitch_stream(outputs, n_frames, spec)), axis=0)


def stream_windows(blocks: Iterable[np.ndarray], spec: WindowSpec) -> Iterator[tuple[np.ndarray, int, int | None]]:
    """Windows from audio arriving in blocks of any size, holding about one window.

    Yields ``(window, index, n_frames)`` where ``window`` has exactly
    ``spec.window_samples`` samples (the last zero-padded) and ``n_frames`` is None
    except on the last window, where it is the recording's frame count. The windows
    and their count are those :func:`iter_windows` and :func:`window_count` give for
    the whole recording; a window is known to be the last by reading one sample past it.
    """
    source = iter(blocks)
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0                      # sample index of buffer[0]
    exhausted = False
    index = 0
    while True:
        start = index * spec.hop_window_samples
        need = start - offset + spec.window_samples + 1
        parts = [buffer]
        have = len(buffer)
        while have < need and not exhausted:
            try:
                block = next(source)
            except StopIteration:
                exhausted = True
                break
            parts.append(np.asarray(block, dtype=np.float32))
            have += len(parts[-1])
        buffer = np.concatenate(parts) if len(parts) > 1 else buffer
        window = buffer[start - offset : start - offset + spec.window_samples]
        if len(window) < spec.window_samples:
            window = np.pad(window, (0, spec.window_samples - len(window)))
        n_frames = None
        if exhausted:
            n_frames = total_frames(offset + len(buffer), spec)
            if index * spec.hop_frames + spec.window_frames < n_frames:
                n_frames = None     # more windows follow from what is already buffered
        yield window, index, n_frames
        if n_frames is not None:
            return
        index += 1
        next_start = index * spec.hop_window_samples
        buffer = buffer[next_start - offset :]
        offset = next_start
