"""The pieces of transcription: windows through the model, stitching, decoding. No I/O.

:func:`amtcli.batching.transcribe` puts them together for one recording and
:mod:`amtcli.batching` for many. Audio is cut into overlapping windows on the model's
frame grid and run through the model a few windows at a time. Frame-aligned outputs (onf, cnn, ctc) are stitched on the frame axis by
keeping each window's centre and decoded once as a stream; seq2seq token windows go
through a stateful detokenizer. Memory does not grow with the recording's length.
:func:`stitched_posteriors` gives the raw stitched posteriorgram (for tuning and
validation).
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
from amtcli.windowing import iter_windows, join_frames, stitch_stream, total_frames


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
    for window in iter_windows(samples, spec):
        batch.append(window)
        if len(batch) == batch_windows:
            yield from run_windows(model, batch, model.decode)
            batch = []
    if batch:
        yield from run_windows(model, batch, model.decode)


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


def output_kind(model: LoadedModel) -> str:
    """"frames" (onf, cnn), "ctc" or "tokens" (seq2seq): how window outputs are decoded."""
    return getattr(model.module, "OUTPUT", "frames")


def run_windows(model: LoadedModel, windows: list[np.ndarray], options: DecodeOptions) -> np.ndarray:
    """Window audio (n, window_samples) -> the model's raw outputs, one row block per window:
    posteriorgrams for frame and CTC models, decoded token rows for seq2seq."""
    tensor = torch.from_numpy(np.stack(windows)).to(model.device)
    if output_kind(model) == "tokens":
        return model.module.decode_windows(
            tensor, options.beam_width, options.token_grammar, confirm_threshold=options.confirm_threshold,
            end_threshold=options.end_threshold, onset_confirm_threshold=options.onset_confirm_threshold,
            rise_threshold=options.rise_threshold, reattack_s=options.reattack_s,
            fusion_weight=options.fusion_weight, fusion_window_s=(options.fusion_before_s, options.fusion_after_s))
    return model.module.posteriorgram(tensor).float().cpu().numpy()


class ChunkDecoder:
    """Push-style decoding: ``push(chunk) -> notes`` for stitched frame chunks,
    ``push_window(output, start_frame, lo, hi)`` for one window's raw output of which
    frames [lo, hi) are its own, ``finish() -> notes``.

    Frame models go through :func:`~amtcli.decoding.frames.decoder_for`; CTC models
    through the greedy or prefix-beam CTC decoder (stitched log-probabilities,
    collapsed once); seq2seq windows through the stateful
    :class:`~amtcli.decoding.tokens.Detokenizer`. ``stats`` holds token counts; for
    seq2seq, ``unconfirmed_note_ons`` counts the NOTE_ONs the frame-head rules dropped in
    whole windows, so one that falls where two windows overlap may be counted twice.
    """

    def __init__(self, model: LoadedModel, options: DecodeOptions):
        rate = model.features.frame_rate_hz
        self.frame_rate_hz = rate
        self.kind = output_kind(model)
        if self.kind == "tokens":
            from amtcli.decoding.tokens import Detokenizer

            self._decoder = Detokenizer()
            self._stops = {code: 0 for code in model.module.STOP_CODES}
            self._unconfirmed = 0
            self._stop_codes = model.module.STOP_CODES
            return
        if self.kind == "ctc":
            from amtcli.decoding.ctc import CTCGreedyDecoder, CTCPrefixBeamDecoder

            common = dict(frame_threshold=options.frame_threshold, min_duration_s=options.min_duration_s,
                          blank_offset=options.blank_offset)
            if options.beam_width > 1:
                self._decoder = CTCPrefixBeamDecoder(model.module.layout, rate, beam_width=options.beam_width, **common)
            else:
                self._decoder = CTCGreedyDecoder(model.module.layout, rate, **common)
            return
        channels = model.module.CHANNELS
        self._decoder = decoder_for(rate, options, "onset" in channels)
        self._frame_at = channels.index("frame")
        self._onset_at = channels.index("onset") if "onset" in channels else None
        self._velocity_at = channels.index("velocity") if "velocity" in channels else None

    @property
    def stats(self) -> dict[str, float]:
        if self.kind == "tokens":
            stops = {f"windows_stopped_{k}": float(v) for k, v in self._stops.items()}
            return {**self._decoder.stats.as_dict(), "unconfirmed_note_ons": float(self._unconfirmed), **stops}
        if self.kind == "ctc":
            return {"n_tokens": float(self._decoder.n_tokens)}
        return {}

    def push_window(self, output: np.ndarray, start_frame: int, lo: int, hi: int) -> list:
        """One window's output; frames [lo, hi) of it (window-relative) are its own."""
        if self.kind != "tokens":
            if start_frame > 0:                 # a later window: its first kept frame is a join
                self.add_joins([start_frame + lo])
            return self.push(output[lo:hi])
        from amtcli.decoding.tokens import PAD

        rate = self.frame_rate_hz
        self._stops[self._stop_codes[int(output[-1])]] += 1
        self._unconfirmed += int(output[-2])
        start_s = start_frame / rate
        tokens = output[:-2].tolist()
        tokens = tokens[: tokens.index(PAD)] if PAD in tokens else tokens   # the row's padding, not output
        return self._decoder.push(tokens, start_s, start_s + lo / rate, start_s + hi / rate)

    def add_joins(self, frames) -> None:
        """Global frames where one window's output hands over to the next: frame decoders
        re-attack no sounding note there (CTC and token decoders need no such rule)."""
        if self.kind == "frames":
            self._decoder.add_joins(frames)

    def push(self, chunk: np.ndarray) -> list:
        if self.kind == "ctc":
            return self._decoder.push(chunk)
        onsets = chunk[..., self._onset_at] if self._onset_at is not None else None
        velocity = chunk[..., self._velocity_at] if self._velocity_at is not None else None
        return self._decoder.push(chunk[..., self._frame_at], onsets, velocity)

    def finish(self, duration_s: float = 0.0) -> list:
        """Flush; ``duration_s`` (the recording's length) ends seq2seq notes still sounding."""
        if self.kind == "tokens":
            return self._decoder.finish(duration_s)
        return self._decoder.finish()


def decode_chunks(model: LoadedModel, chunks, options: DecodeOptions, spec: WindowSpec | None = None) -> list:
    """Decode a recording's stitched posteriorgram, as chunks in order (from
    :func:`stitched_posteriors`, windowed by ``spec``, default the model's), into notes
    sorted by onset: the same notes as :func:`amtcli.batching.transcribe` gives."""
    chunks = list(chunks)
    decoder = ChunkDecoder(model, options)
    decoder.add_joins(join_frames(sum(len(c) for c in chunks), spec or window_spec(model)))
    notes = []
    for chunk in chunks:
        notes.extend(decoder.push(chunk))
    notes.extend(decoder.finish())
    return sorted(notes)


def finish_transcription(model: LoadedModel, source: str, duration_s: float, notes: list, n_windows: int,
                         extra_stats: dict[str, float] | None = None) -> Transcription:
    """Notes in seconds -> a Transcription of a recording of ``duration_s`` seconds
    (notes clipped to it)."""
    duration = duration_s
    notes = [n if n.offset_s <= duration else _clip(n, duration) for n in sorted(notes) if n.onset_s < duration]
    return Transcription(notes=tuple(notes), duration_s=duration, source=source, model=model.name,
                         stats={"n_windows": float(n_windows), **(extra_stats or {})})


def _clip(note, duration_s: float):
    from dataclasses import replace

    return replace(note, offset_s=duration_s)
