"""Onsets-and-Frames, sized for CPUs.

A shared convolutional acoustic model feeds four heads: onsets (BiLSTM), offsets
(linear), velocity (linear) and frames (BiLSTM over the acoustic features
concatenated with the detached onset and offset probabilities, so the frame head is
conditioned on the onset head as in Hawthorne et al. 2018).

Two acoustic models: ``conv`` (the paper's stack: three 3x3 conv layers and a dense
layer per frame, +-3 frames of context) and ``dilated`` (the ``cnn`` family's trunk:
a conv stem, then residual blocks of dilated 1-D convolutions over time, +-0.6 s of
context), whose weights can be copied from a ``cnn`` checkpoint before training.

With ``onset_stack = true`` the onset, offset and velocity heads also read a second,
paper-style conv stack of their own (+-3 frames of context) on a log-mel of their own
with a short window (``onset_n_fft``, 32 ms by default), as Onsets-and-Frames gives its
onset detector its own acoustic model: the shared log-mel's 128 ms window spreads an
attack over +-3 frames (20 ms each).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from amtcli.families.layers import FrequencyMaxPool
from amtcli.families.losses import frame_loss, onset_loss, velocity_loss
from amtcli.families.config import FamilyConfig
from amtcli.features import build_frontend, feature_shape, with_channels
from amtcli.options import FeatureSpec
from amtcli.types import N_KEYS

FAMILY = "onf"


@dataclass(frozen=True)
class OnsetsFramesConfig(FamilyConfig):
    """Hyperparameters of :class:`OnsetsFrames` (sizes in channels / units).

    Attributes:
        acoustic: "conv" (``conv_channels``) or "dilated" (``stem_channels``,
            ``blocks`` x ``dilations``, as the ``cnn`` family).
        model_dim: acoustic features per frame.
        lstm_units: units per direction of the onset and frame heads.
        frame_readout: add a linear per-frame read-out of the acoustic features to the
            frame head's logits (a 1x1 convolution, the ``cnn`` family's frame output, so
            it can be copied from a ``cnn`` checkpoint with ``[init]``); the conditioned
            BiLSTM frame head then starts at zero and learns a correction to it.
        onset_stack: give the onset, offset and velocity heads a conv stack of their own
            (``conv_channels``, ``onset_dim`` features per frame) beside the acoustic model,
            on a log-mel of ``onset_n_bins`` bands over ``onset_n_fft`` samples per frame
            (same hop and frequency range as ``features``).
        onset_dim: features per frame of the onset stack.
        harmonic_negative_weight: weight of the frame loss at silent keys that are
            partials of a sounding note (:func:`~amtcli.families.losses.frame_loss`; 1: none).
    """

    features: FeatureSpec = FeatureSpec()
    conv_channels: int = 16
    model_dim: int = 256
    lstm_units: int = 64
    acoustic: str = "conv"
    frame_readout: bool = False
    stem_channels: int = 16
    blocks: int = 4
    dilations: tuple[int, ...] = (1, 2, 4)
    onset_stack: bool = False
    onset_dim: int = 128
    onset_n_fft: int = 512
    onset_n_bins: int = 64
    harmonic_negative_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.acoustic not in ("conv", "dilated"):
            raise ValueError(f"acoustic must be 'conv' or 'dilated', got {self.acoustic!r}")


class ConvStack(nn.Module):
    """(batch, n_frames, n_bins) -> (batch, n_frames, model_dim)."""

    def __init__(self, n_bins: int, channels: int, model_dim: int):
        super().__init__()
        c = channels
        self.cnn = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
            FrequencyMaxPool(2),
            nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
            FrequencyMaxPool(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
            FrequencyMaxPool(2),
        )
        self.fc = nn.Sequential(nn.Linear(2 * c * (n_bins // 8), model_dim), nn.ReLU())

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = self.cnn(spec.unsqueeze(1))
        x = x.permute(0, 2, 1, 3).flatten(2)
        return self.fc(x)


def build_acoustic(config) -> tuple[nn.Module, nn.Module]:
    """(input normalisation, acoustic model) for a config with ``features``,
    ``acoustic`` ("conv" or "dilated"), ``conv_channels``, ``stem_channels``,
    ``model_dim``, ``blocks`` and ``dilations`` (``onf`` and ``seq2seq``)."""
    spec = config.features
    if config.acoustic == "dilated":
        from amtcli.families.framewise_cnn import TemporalTrunk

        n_bins, channels = feature_shape(spec)
        return nn.BatchNorm2d(channels), TemporalTrunk(n_bins, channels, config.stem_channels, config.model_dim,
                                                       config.blocks, config.dilations)
    if config.acoustic != "conv":
        raise ValueError(f"acoustic must be 'conv' or 'dilated', got {config.acoustic!r}")
    return nn.BatchNorm1d(spec.n_bins), ConvStack(spec.n_bins, config.conv_channels, config.model_dim)


def run_acoustic(kind: str, norm: nn.Module, acoustic: nn.Module, spectrum: torch.Tensor) -> torch.Tensor:
    """Frontend output (batch, n_frames, n_bins[, channels]) -> (batch, n_frames, model_dim)
    through the pair made by :func:`build_acoustic` for ``kind``."""
    if kind == "dilated":
        spectrum = with_channels(spectrum)
        spectrum = norm(spectrum.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return acoustic(spectrum).transpose(1, 2)
    return acoustic(norm(spectrum.transpose(1, 2)).transpose(1, 2))


class BiLSTMHead(nn.Module):
    """(batch, n_frames, in_dim) -> (batch, n_frames, 88) logits.

    A linear read-out of the input plus a BiLSTM read-out: the linear path learns
    within a few hundred steps, the recurrent path adds temporal context (a plain
    BiLSTM head sat at the per-pitch prior for the first ~500 steps in our runs).
    """

    def __init__(self, in_dim: int, units: int):
        super().__init__()
        self.direct = nn.Linear(in_dim, N_KEYS)
        self.lstm = nn.LSTM(in_dim, units, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * units, N_KEYS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.direct(x) + self.out(self.lstm(x)[0])


class OnsetsFrames(nn.Module):
    """Audio (batch, n_samples) at ``features.sample_rate`` -> dict of logits.

    Returns ``{"onset", "offset", "frame", "velocity"}``, each (batch, n_frames, 88);
    ``velocity`` is a regression output (sigmoid gives velocity / 127).
    """

    def __init__(self, config: OnsetsFramesConfig):
        super().__init__()
        self.config = config
        spec = config.features
        self.frontend = build_frontend(spec)
        self.norm, self.acoustic = build_acoustic(config)
        onset_in = config.model_dim
        if config.onset_stack:
            onset_spec = replace(spec, kind="logmel", n_fft=config.onset_n_fft, n_bins=config.onset_n_bins)
            self.onset_frontend = build_frontend(onset_spec)
            self.onset_norm = nn.BatchNorm1d(onset_spec.n_bins)
            self.onset_acoustic = ConvStack(onset_spec.n_bins, config.conv_channels, config.onset_dim)
            onset_in += config.onset_dim
        self.onset_head = BiLSTMHead(onset_in, config.lstm_units)
        self.offset_head = nn.Linear(onset_in, N_KEYS)
        self.velocity_head = nn.Linear(onset_in, N_KEYS)
        self.frame_in = nn.Linear(config.model_dim, config.model_dim // 2)
        self.frame_head = BiLSTMHead(config.model_dim // 2 + 2 * N_KEYS, config.lstm_units)
        if config.frame_readout:
            self.frame_readout = nn.Conv1d(config.model_dim, N_KEYS, 1)
            for layer in (self.frame_head.direct, self.frame_head.out):   # a correction, zero at first
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def acoustic_features(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio (batch, n_samples) -> (batch, n_frames, model_dim)."""
        return run_acoustic(self.config.acoustic, self.norm, self.acoustic, self.frontend(audio))

    def forward(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        acoustic = self.acoustic_features(audio)
        onset_input = acoustic
        if self.config.onset_stack:
            onset_features = run_acoustic("conv", self.onset_norm, self.onset_acoustic, self.onset_frontend(audio))
            onset_input = torch.cat([acoustic, onset_features], dim=-1)
        onset = self.onset_head(onset_input)
        offset = self.offset_head(onset_input)
        frame_input = torch.cat(
            [torch.relu(self.frame_in(acoustic)), torch.sigmoid(onset).detach(), torch.sigmoid(offset).detach()],
            dim=-1,
        )
        frame = self.frame_head(frame_input)
        if self.config.frame_readout:
            frame = frame + self.frame_readout(acoustic.transpose(1, 2)).transpose(1, 2)
        return {"onset": onset, "offset": offset, "frame": frame, "velocity": self.velocity_head(onset_input)}

    @staticmethod
    def probabilities(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits -> probabilities in [0, 1] (velocity as velocity / 127)."""
        return {key: torch.sigmoid(value) for key, value in outputs.items()}

    #: Channel order of :meth:`posteriorgram`.
    CHANNELS = ("frame", "onset", "offset", "velocity")

    @torch.no_grad()
    def posteriorgram(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio (batch, n_samples) -> probabilities (batch, n_frames, 88, 4) in CHANNELS order."""
        probs = self.probabilities(self(audio))
        return torch.stack([probs[name] for name in self.CHANNELS], dim=-1)


def onsets_frames_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                       harmonic_negative_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Per-head losses (scalars) for logits ``outputs`` and 0/1 ``targets``, each (batch, n_frames, 88).

    Onset, offset and frame heads use binary cross-entropy; velocity is a squared
    error on velocity / 127, counted only at labelled onsets (as in Onsets-and-Frames).
    The onset term is weighted (:func:`~amtcli.families.losses.onset_loss`). The frame term weighs
    silent keys at a sounding note's partials ``harmonic_negative_weight`` times
    (:func:`~amtcli.families.losses.frame_loss`).
    """
    bce = nn.functional.binary_cross_entropy_with_logits
    return {
        "onset": onset_loss(outputs["onset"], targets["onset"]),
        "offset": bce(outputs["offset"], targets["offset"]),
        "frame": frame_loss(outputs["frame"], targets["frame"], harmonic_negative_weight),
        "velocity": velocity_loss(outputs["velocity"], targets),
    }
