"""Spectral front ends as torch modules built from a :class:`FeatureSpec`.

They live inside each model so training and inference cannot compute features
differently. Filterbanks are derived from the spec and are not part of the
checkpoint (non-persistent buffers).
"""

from __future__ import annotations

import torch
from torch import nn

from amtcli.options import FeatureSpec


class LogMel(nn.Module):
    """Audio (batch, n_samples) -> log-mel (batch, n_frames, n_bins).

    ``n_frames = n_samples // hop_samples``: frame k is centred on sample
    k * hop_samples, i.e. at time k / frame_rate_hz seconds.
    """

    def __init__(self, spec: FeatureSpec):
        super().__init__()
        import librosa

        self.spec = spec
        mel = librosa.filters.mel(
            sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_bins, fmin=spec.fmin_hz, fmax=spec.fmax_hz
        )
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(spec.n_fft), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        n_frames = audio.shape[-1] // self.spec.hop_samples
        stft = torch.stft(
            audio,
            n_fft=self.spec.n_fft,
            hop_length=self.spec.hop_samples,
            window=self.window,
            center=True,
            return_complex=True,
        )
        power = stft.real.square() + stft.imag.square()
        mel = torch.matmul(self.mel_basis, power[..., :n_frames])
        return torch.log(mel + 1e-6).transpose(1, 2)


def build_frontend(spec: FeatureSpec) -> nn.Module:
    """The feature module for ``spec.kind``."""
    if spec.kind == "logmel":
        return LogMel(spec)
    from amtcli.errors import ConfigError

    raise ConfigError(f"feature kind {spec.kind!r} is not implemented by any bundled model yet")
