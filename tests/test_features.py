import librosa
import numpy as np
import pytest
import torch

from amtcli.features import LogMel, mel_filterbank
from amtcli.options import FeatureSpec


@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax", [(16000, 2048, 128, 30.0, 8000.0), (22050, 1024, 229, 0.0, 11025.0)])
def test_mel_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    reference = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-8)


def test_logmel_frames_and_peak_bin():
    spec = FeatureSpec(n_bins=128)
    t = np.arange(16000) / 16000
    tone = torch.from_numpy((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))[None]
    out = LogMel(spec)(tone)
    assert out.shape == (1, 50, 128)
    centre = librosa.mel_frequencies(n_mels=130, fmin=30, fmax=8000)[1:-1]
    assert abs(centre[int(out[0, 25].argmax())] - 1000) < 60
