"""Spectral front ends as torch modules built from a :class:`FeatureSpec`.

They live inside each model so training and inference cannot compute features
differently. Filterbanks are derived from the spec and are not part of the
checkpoint (non-persistent buffers).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from amtcli.options import FeatureSpec


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (as librosa, htk=False)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mel = hz / f_sp
    log_region = hz >= min_log_hz
    mel[log_region] = min_log_hz / f_sp + np.log(hz[log_region] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    hz = mel * f_sp
    min_log_mel = min_log_hz / f_sp
    log_region = mel >= min_log_mel
    hz[log_region] = min_log_hz * np.exp(logstep * (mel[log_region] - min_log_mel))
    return hz


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """Slaney-normalised triangular mel filters, (n_mels, n_fft // 2 + 1) float32.

    Numerically the same as ``librosa.filters.mel`` with its defaults (a test checks
    this); written out here because importing librosa's filters costs over a second
    at every start of the command.
    """
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(np.array([fmin_hz]))[0], _hz_to_mel(np.array([fmax_hz]))[0], n_mels + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2 : n_mels + 2] - mel_hz[:n_mels]))[:, None]
    return weights.astype(np.float32)


class LogMel(nn.Module):
    """Audio (batch, n_samples) -> log-mel (batch, n_frames, n_bins).

    ``n_frames = n_samples // hop_samples``: frame k is centred on sample
    k * hop_samples, i.e. at time k / frame_rate_hz seconds.
    """

    def __init__(self, spec: FeatureSpec):
        super().__init__()
        self.spec = spec
        mel = mel_filterbank(spec.sample_rate, spec.n_fft, spec.n_bins, spec.fmin_hz, spec.fmax_hz)
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


def constant_q_filterbank(sample_rate: int, n_fft: int, n_bins: int, bins_per_octave: int,
                          fmin_hz: float) -> np.ndarray:
    """Triangular filters centred on constant-Q frequencies, (n_bins, n_fft // 2 + 1) float32.

    Bin k is centred on ``fmin_hz * 2 ** (k / bins_per_octave)`` Hz with a half-width of
    one bin spacing, or of one FFT bin where the constant-Q spacing is narrower (there
    the filter interpolates between the two nearest FFT bins). Each filter sums to 1;
    bins above the Nyquist frequency are all zeros.
    """
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    fft_step = sample_rate / n_fft
    centres = fmin_hz * 2.0 ** (np.arange(n_bins) / bins_per_octave)
    widths = np.maximum(centres * (2.0 ** (1.0 / bins_per_octave) - 1.0), fft_step)
    weights = np.maximum(0.0, 1.0 - np.abs(fft_hz[None, :] - centres[:, None]) / widths[:, None])
    weights[centres >= sample_rate / 2.0] = 0.0
    sums = weights.sum(axis=1, keepdims=True)
    return (weights / np.where(sums > 0, sums, 1.0)).astype(np.float32)


class LogConstantQ(nn.Module):
    """Audio (batch, n_samples) -> log constant-Q spectrum (batch, n_frames, n_bins) for
    ``kind="cqt"``, or (batch, n_frames, n_bins, n_harmonics) for ``kind="hcqt"``.

    A pseudo-CQT: constant-Q filters (:func:`constant_q_filterbank`) applied to the
    power spectrum of one ``n_fft``-point STFT, so it costs about as much as a log-mel.
    Above roughly ``bins_per_octave * sample_rate / n_fft`` Hz it resolves like a true
    CQT; below, neighbouring bins interpolate the same FFT bins. Harmonic channel h
    starts at ``fmin_hz * h`` (the HCQT of Bittner et al. 2017). Frames as :class:`LogMel`.
    """

    def __init__(self, spec: FeatureSpec):
        super().__init__()
        self.spec = spec
        banks = [constant_q_filterbank(spec.sample_rate, spec.n_fft, spec.n_bins, spec.bins_per_octave,
                                       spec.fmin_hz * h) for h in self.harmonics]
        stacked = np.concatenate(banks, axis=0)
        used = np.flatnonzero(stacked.any(axis=0))
        self.low, self.high = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
        self.register_buffer("basis", torch.from_numpy(stacked[:, self.low : self.high]).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(spec.n_fft), persistent=False)

    @property
    def harmonics(self) -> tuple[float, ...]:
        return self.spec.harmonics if self.spec.kind == "hcqt" else (1.0,)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        n_frames = audio.shape[-1] // self.spec.hop_samples
        stft = torch.stft(audio, n_fft=self.spec.n_fft, hop_length=self.spec.hop_samples, window=self.window,
                          center=True, return_complex=True)[..., self.low : self.high, :n_frames]
        power = stft.real.square() + stft.imag.square()
        out = torch.log(torch.matmul(self.basis, power) + 1e-6).transpose(1, 2)
        if self.spec.kind == "cqt":
            return out
        return out.reshape(out.shape[0], out.shape[1], len(self.harmonics), self.spec.n_bins).transpose(2, 3)


class ShiftedHarmonicCQT(nn.Module):
    """Audio (batch, n_samples) -> harmonic-stacked log constant-Q spectrum
    (batch, n_frames, n_bins, n_harmonics) for ``kind="hcqt_shifted"``.

    One pseudo-CQT (as :class:`LogConstantQ`) spans every harmonic channel's range; the
    channel of harmonic h is that spectrum shifted by ``round(bins_per_octave * log2(h))``
    bins. Exact for powers of two; at 36 bins per octave the 3rd, 6th and 7th harmonics
    land within 2 cents and the 5th within 14 cents (0.41 bin) of their frequency. The
    filterbank has ``n_bins`` plus the shift range rows instead of ``n_bins`` per
    harmonic, so it costs a fraction of :class:`LogConstantQ`'s exact HCQT.
    """

    def __init__(self, spec: FeatureSpec):
        super().__init__()
        self.spec = spec
        self.shifts = [int(round(spec.bins_per_octave * np.log2(h))) for h in spec.harmonics]
        self.lowest = min(0, min(self.shifts))
        n_total = spec.n_bins + max(self.shifts) - self.lowest
        fmin_hz = spec.fmin_hz * 2.0 ** (self.lowest / spec.bins_per_octave)
        bank = constant_q_filterbank(spec.sample_rate, spec.n_fft, n_total, spec.bins_per_octave, fmin_hz)
        used = np.flatnonzero(bank.any(axis=0))
        self.low, self.high = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
        self.register_buffer("basis", torch.from_numpy(bank[:, self.low : self.high]).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(spec.n_fft), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        n_frames = audio.shape[-1] // self.spec.hop_samples
        stft = torch.stft(audio, n_fft=self.spec.n_fft, hop_length=self.spec.hop_samples, window=self.window,
                          center=True, return_complex=True)[..., self.low : self.high, :n_frames]
        power = stft.real.square() + stft.imag.square()
        spectrum = torch.log(torch.matmul(self.basis, power) + 1e-6).transpose(1, 2)   # (batch, frames, n_total)
        n = self.spec.n_bins
        return torch.stack([spectrum[..., s - self.lowest : s - self.lowest + n] for s in self.shifts], dim=-1)


def with_channels(spectrum: torch.Tensor) -> torch.Tensor:
    """Frontend output as (batch, n_frames, n_bins, channels): log-mel and CQT (3-D) get
    one channel, an HCQT (4-D) keeps its harmonics."""
    return spectrum.unsqueeze(-1) if spectrum.dim() == 3 else spectrum


def feature_shape(spec: FeatureSpec) -> tuple[int, int]:
    """(bins, channels) of the frontend's output per frame."""
    return spec.n_bins, (len(spec.harmonics) if spec.kind in ("hcqt", "hcqt_shifted") else 1)


def build_frontend(spec: FeatureSpec) -> nn.Module:
    """The feature module for ``spec.kind``: :class:`LogMel`, :class:`LogConstantQ` or
    :class:`ShiftedHarmonicCQT`."""
    if spec.kind == "logmel":
        return LogMel(spec)
    if spec.kind == "hcqt_shifted":
        return ShiftedHarmonicCQT(spec)
    return LogConstantQ(spec)
