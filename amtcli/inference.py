"""transcribe(model, audio, options) -> Transcription. No I/O happens here.

Audio is cut into overlapping windows on the model's frame grid, run through the
model a few windows at a time, stitched on the frame axis by keeping each window's
centre, and decoded once as a stream, so memory does not grow with the window
outputs of a long recording.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from amtcli.audio import Audio
from amtcli.checkpoint import LoadedModel
from amtcli.decoding.frames import decoder_for
from amtcli.errors import ConfigError
from amtcli.options import DecodeOptions, WindowSpec
from amtcli.types import Transcription
from amtcli.windowing import iter_windows, stitch_stream, total_frames, window_count


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def _window_outputs(model: LoadedModel, samples: np.ndarray, spec: WindowSpec, batch_windows: int) -> Iterator[np.ndarray]:
    batch: list[np.ndarray] = []

    def run(windows: list[np.ndarray]) -> Iterator[np.ndarray]:
        tensor = torch.from_numpy(np.stack(windows)).to(model.device)
        output = model.module.posteriorgram(tensor).float().cpu().numpy()
        yield from output

    for window in iter_windows(samples, spec):
        batch.append(window)
        if len(batch) == batch_windows:
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)


def window_spec(model: LoadedModel, window_s: float | None = None, hop_s: float | None = None) -> WindowSpec:
    """The model's windowing (``model.window_s`` / ``model.hop_s`` unless given)."""
    return WindowSpec.from_seconds(model.features, window_s or model.window_s, hop_s or model.hop_s)


def stitched_posteriors(model: LoadedModel, audio: Audio, window_s: float | None = None, hop_s: float | None = None,
                        batch_windows: int = 4) -> Iterator[np.ndarray]:
    """Yield the recording's posteriorgram in order, as stitched chunks (n, 88, channels).

    Channels are ``model.module.CHANNELS``; the chunks together have exactly one row per
    frame of the recording. Only a few windows' outputs are held at a time. Windows
    default to the checkpoint's (10 s with a 5 s hop for most).
    """
    if audio.sample_rate != model.features.sample_rate:
        raise ConfigError(f"audio is at {audio.sample_rate} Hz but the model needs {model.features.sample_rate} Hz")
    spec = window_spec(model, window_s, hop_s)
    n_frames = total_frames(len(audio.samples), spec)
    yield from stitch_stream(_window_outputs(model, audio.samples, spec, batch_windows), n_frames, spec)


def decode_chunks(model: LoadedModel, chunks, options: DecodeOptions) -> list:
    """Decode stitched posteriorgram chunks (from :func:`stitched_posteriors`) into notes.

    Frame models go through :func:`~amtcli.decoding.frames.decoder_for`; CTC models
    (``module.OUTPUT == "ctc"``) through the greedy or prefix-beam CTC decoder.
    """
    if getattr(model.module, "OUTPUT", "frames") == "ctc":
        return _decode_ctc(model, chunks, options)
    channels = model.module.CHANNELS
    decoder = decoder_for(model.features.frame_rate_hz, options, "onset" in channels)
    frame_at = channels.index("frame")
    onset_at = channels.index("onset") if "onset" in channels else None
    velocity_at = channels.index("velocity") if "velocity" in channels else None
    notes = []
    for chunk in chunks:
        onsets = chunk[..., onset_at] if onset_at is not None else None
        velocity = chunk[..., velocity_at] if velocity_at is not None else None
        notes.extend(decoder.push(chunk[..., frame_at], onsets, velocity))
    notes.extend(decoder.finish())
    return notes


def _decode_ctc(model: LoadedModel, chunks, options: DecodeOptions) -> list:
    from amtcli.decoding.ctc import CTCGreedyDecoder, CTCPrefixBeamDecoder

    rate = model.features.frame_rate_hz
    common = dict(frame_threshold=options.frame_threshold, min_duration_s=options.min_duration_s,
                  blank_offset=options.blank_offset)
    if options.beam_width > 1:
        decoder = CTCPrefixBeamDecoder(model.module.layout, rate, beam_width=options.beam_width, **common)
    else:
        decoder = CTCGreedyDecoder(model.module.layout, rate, **common)
    notes = []
    for chunk in chunks:
        notes.extend(decoder.push(chunk))
    notes.extend(decoder.finish())
    return sorted(notes)


def transcribe(model: LoadedModel, audio: Audio, options: DecodeOptions | None = None,
               window_s: float | None = None, hop_s: float | None = None, batch_windows: int = 4) -> Transcription:
    """Transcribe mono ``audio`` (already at ``model.features.sample_rate``).

    ``options`` defaults to the thresholds stored with the checkpoint (``model.decode``).
    Returns a Transcription whose notes are in seconds from the start of the audio.
    """
    chunks = stitched_posteriors(model, audio, window_s, hop_s, batch_windows)
    notes = decode_chunks(model, chunks, options or model.decode)
    duration = audio.duration_s
    notes = [n if n.offset_s <= duration else _clip(n, duration) for n in notes if n.onset_s < duration]
    spec = window_spec(model, window_s, hop_s)
    return Transcription(
        notes=tuple(notes),
        duration_s=duration,
        source=audio.source,
        model=model.name,
        stats={"n_windows": float(window_count(total_frames(len(audio.samples), spec), spec))},
    )


def _clip(note, duration_s: float):
    from dataclasses import replace

    return replace(note, offset_s=duration_s)
