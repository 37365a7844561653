"""Frame-wise CNN (``cnn``): the fastest family.

A small 2-D convolutional stem over the spectrum, then a stack of 1-D convolutions
over time with a skip connection around every three layers (the multi-layer CNN
with skips that beat LSTM and attention variants in the study behind this family;
no dropout, which hurt it there). Each frame sees about +-0.6 s of context through
the dilated layers instead of one isolated clip. The model is a multi-label
classifier over the 88 keys; a linear velocity read-out rides along so MIDI files
get dynamics. With ``onset_readout=True`` a small onset read-out of the same features
rides along too (for decoding: re-attacks and ``onset_support``, not a second model).

With ``reconstruction=True`` (Cheuk et al. 2021, spectrogram reconstruction), a
second network rebuilds the normalised spectrum from the first posteriorgram, the
same transcriber is applied to the reconstruction, and the loss adds the L2
reconstruction error and the second pass's BCE. The second pass is the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from amtcli.families.layers import FrequencyMaxPool
from amtcli.families.losses import frame_loss, onset_loss, velocity_loss
from amtcli.families.config import FamilyConfig
from amtcli.features import build_frontend, feature_shape, with_channels
from amtcli.options import FeatureSpec
from amtcli.types import N_KEYS

FAMILY = "cnn"


@dataclass(frozen=True)
class FramewiseCNNConfig(FamilyConfig):
    """Hyperparameters of :class:`FramewiseCNN`.

    Attributes:
        features: input spectrum (log-mel or constant-Q).
        stem_channels: channels of the two 2-D convolutions.
        model_dim: channels of the 1-D temporal stack.
        blocks: residual blocks of ``len(dilations)`` layers each (4 x 3 = 12 layers).
        dilations: dilation of each layer inside a block (frames).
        reconstruction: train and run with the spectrogram-reconstruction second pass.
        harmonic_negative_weight: training only: weight of the frame loss at silent keys
            that are partials of a sounding note (1: plain BCE; see
            :func:`amtcli.families.losses.frame_loss`).
        onset_readout: add an onset output: a 3-frame convolution and a linear layer over
            the trunk's features, trained with the onset BCE (as ``onf``'s onset term).
    """

    features: FeatureSpec = FeatureSpec(n_bins=128)
    stem_channels: int = 16
    model_dim: int = 128
    blocks: int = 4
    dilations: tuple[int, ...] = (1, 2, 4)
    reconstruction: bool = False
    harmonic_negative_weight: float = 1.0
    onset_readout: bool = False


class ResidualBlock(nn.Module):
    """(batch, dim, n_frames) -> same shape: conv-BN-ReLU layers plus the input."""

    def __init__(self, dim: int, dilations: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = []
        for d in dilations:
            layers += [nn.Conv1d(dim, dim, 3, padding=d, dilation=d), nn.BatchNorm1d(dim), nn.ReLU()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class TemporalTrunk(nn.Module):
    """Normalised spectrum (batch, n_frames, n_bins, channels) -> features
    (batch, model_dim, n_frames): a 2-D conv stem over each frame's spectrum, a 1x1
    projection, then ``blocks`` residual blocks of dilated 1-D convolutions over time.
    Shared by ``cnn`` and the ``dilated`` acoustic model of ``onf``."""

    def __init__(self, n_bins: int, in_channels: int, stem_channels: int, model_dim: int, blocks: int,
                 dilations: tuple[int, ...]):
        super().__init__()
        c = stem_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), FrequencyMaxPool(2),
            nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), FrequencyMaxPool(2),
        )
        self.project = nn.Conv1d(c * (n_bins // 4), model_dim, 1)
        self.blocks = nn.Sequential(*[ResidualBlock(model_dim, dilations) for _ in range(blocks)])

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        x = self.stem(spec.permute(0, 3, 1, 2))              # (batch, c, n_frames, n_bins // 4)
        x = x.permute(0, 1, 3, 2).flatten(1, 2)               # (batch, c * n_bins // 4, n_frames)
        return self.blocks(torch.relu(self.project(x)))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.features(spec)


class Transcriber(TemporalTrunk):
    """Normalised spectrum (batch, n_frames, n_bins, channels) -> ``{"frame", "velocity"}``
    logits (and ``"onset"`` with ``onset_readout``), each (batch, n_frames, 88)."""

    def __init__(self, n_bins: int, in_channels: int, config: FramewiseCNNConfig):
        super().__init__(n_bins, in_channels, config.stem_channels, config.model_dim, config.blocks, config.dilations)
        self.frame = nn.Conv1d(config.model_dim, N_KEYS, 1)
        self.velocity = nn.Conv1d(config.model_dim, N_KEYS, 1)
        if config.onset_readout:
            self.onset = nn.Sequential(nn.Conv1d(config.model_dim, config.model_dim, 3, padding=1), nn.ReLU(),
                                       nn.Conv1d(config.model_dim, N_KEYS, 1))

    def forward(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.features(spec)
        heads = {"frame": self.frame, "velocity": self.velocity}
        if hasattr(self, "onset"):
            heads["onset"] = self.onset
        return {name: head(x).transpose(1, 2) for name, head in heads.items()}


class Reconstructor(nn.Module):
    """Frame probabilities (batch, n_frames, 88) -> spectrum (batch, n_frames, n_bins, channels)."""

    def __init__(self, n_bins: int, channels: int, dim: int):
        super().__init__()
        self.shape = (n_bins, channels)
        self.net = nn.Sequential(
            nn.Conv1d(N_KEYS, dim, 5, padding=2), nn.ReLU(),
            nn.Conv1d(dim, dim, 5, padding=2), nn.ReLU(),
            nn.Conv1d(dim, n_bins * channels, 1),
        )

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        out = self.net(probs.transpose(1, 2)).transpose(1, 2)
        return out.reshape(out.shape[0], out.shape[1], *self.shape)


class FramewiseCNN(nn.Module):
    """Audio (batch, n_samples) at ``features.sample_rate`` -> dict of logits.

    Returns ``{"frame", "velocity"}`` (and ``"onset"`` with ``onset_readout``), each
    (batch, n_frames, 88); with reconstruction
    also ``"frame_first"`` (first-pass logits), ``"spectrum"`` (normalised input) and
    ``"reconstruction"`` (its rebuild), each (batch, n_frames, n_bins, channels) for the
    spectra.
    """

    #: Channel order of :meth:`posteriorgram` (an instance with ``onset_readout`` has
    #: ``("frame", "onset", "velocity")``).
    CHANNELS: tuple[str, ...] = ("frame", "velocity")

    def __init__(self, config: FramewiseCNNConfig):
        super().__init__()
        self.config = config
        if config.onset_readout:
            self.CHANNELS = ("frame", "onset", "velocity")
        n_bins, channels = feature_shape(config.features)
        self.frontend = build_frontend(config.features)
        self.norm = nn.BatchNorm2d(channels)
        self.transcriber = Transcriber(n_bins, channels, config)
        self.reconstructor = Reconstructor(n_bins, channels, config.model_dim) if config.reconstruction else None

    def normalised_spectrum(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, n_samples) -> (batch, n_frames, n_bins, channels), batch-normalised."""
        spec = with_channels(self.frontend(audio))
        return self.norm(spec.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def forward(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        spec = self.normalised_spectrum(audio)
        first = self.transcriber(spec)
        if self.reconstructor is None:
            return first
        rebuilt = self.reconstructor(torch.sigmoid(first["frame"]))
        return {**self.transcriber(rebuilt), "frame_first": first["frame"], "spectrum": spec,
                "reconstruction": rebuilt}

    @torch.no_grad()
    def posteriorgram(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio (batch, n_samples) -> probabilities (batch, n_frames, 88, len(CHANNELS)) in
        CHANNELS order."""
        outputs = self(audio)
        return torch.stack([torch.sigmoid(outputs[name]) for name in self.CHANNELS], dim=-1)


def framewise_cnn_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                       harmonic_negative_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Per-term losses (scalars): frame BCE (partials of sounding notes weighted by
    ``harmonic_negative_weight``), velocity squared error at labelled onsets
    (velocity / 127), with an onset read-out its weighted BCE
    (:func:`~amtcli.families.losses.onset_loss`), and with reconstruction the first
    pass's BCE and the L2 error of the rebuilt spectrum. Targets are (batch, n_frames, 88)."""
    bce = nn.functional.binary_cross_entropy_with_logits
    losses = {
        "frame": frame_loss(outputs["frame"], targets["frame"], harmonic_negative_weight),
        "velocity": velocity_loss(outputs["velocity"], targets),
    }
    if "onset" in outputs:
        losses["onset"] = onset_loss(outputs["onset"], targets["onset"])
    if "reconstruction" in outputs:
        losses["frame_first"] = bce(outputs["frame_first"], targets["frame"])
        losses["reconstruction"] = (outputs["reconstruction"] - outputs["spectrum"].detach()).square().mean()
    return losses
