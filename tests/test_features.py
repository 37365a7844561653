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


@pytest.mark.parametrize("midi", [40, 60, 81, 100])
def test_constant_q_peaks_at_the_played_pitch(midi):
    from amtcli.features import LogConstantQ

    spec = FeatureSpec(kind="cqt", n_fft=4096, n_bins=252, bins_per_octave=36, fmin_hz=27.5, fmax_hz=8000.0)
    t = np.arange(16000) / 16000
    tone = torch.from_numpy((0.5 * np.sin(2 * np.pi * librosa.midi_to_hz(midi) * t)).astype(np.float32))[None]
    out = LogConstantQ(spec)(tone)
    assert out.shape == (1, 50, 252)
    assert int(out[0, 25].argmax()) == (midi - 21) * 3  # 3 bins per semitone from A0


def test_constant_q_filters_sum_to_one_and_vanish_above_nyquist():
    from amtcli.features import constant_q_filterbank

    bank = constant_q_filterbank(16000, 4096, 400, 36, 27.5)
    centres = 27.5 * 2.0 ** (np.arange(400) / 36)
    below = centres < 8000
    np.testing.assert_allclose(bank[below].sum(axis=1), 1.0, rtol=1e-5)
    assert not bank[~below].any()


def test_hcqt_channels_are_cqts_shifted_by_the_harmonic():
    from amtcli.features import LogConstantQ

    base = dict(kind="hcqt", n_fft=4096, n_bins=144, bins_per_octave=36, fmin_hz=55.0, fmax_hz=8000.0)
    hcqt = LogConstantQ(FeatureSpec(**base, harmonics=(1.0, 2.0)))
    cqt = LogConstantQ(FeatureSpec(**{**base, "kind": "cqt"}))
    audio = torch.randn(1, 16000)
    out = hcqt(audio)
    assert out.shape == (1, 50, 144, 2)
    torch.testing.assert_close(out[..., 0], cqt(audio), rtol=1e-4, atol=1e-4)
    # Harmonic 2 starts one octave (36 bins) higher: its bin k is the plain CQT's bin k + 36.
    torch.testing.assert_close(out[..., :-36, 1], cqt(audio)[..., 36:], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("factor, n_bins", [(2, 128), (2, 127), (3, 252), (3, 100)])
def test_frequency_max_pool_equals_max_pool2d(factor, n_bins):
    from amtcli.families.layers import FrequencyMaxPool

    x = torch.randn(2, 3, 7, n_bins)
    assert torch.equal(FrequencyMaxPool(factor)(x), torch.nn.MaxPool2d((1, factor))(x))


def test_shifted_hcqt_equals_the_exact_hcqt_for_octave_harmonics():
    import torch

    from amtcli.features import build_frontend, feature_shape
    from amtcli.options import FeatureSpec

    common = dict(n_fft=2048, n_bins=120, bins_per_octave=36, fmin_hz=27.5)
    exact = FeatureSpec(kind="hcqt", harmonics=(0.5, 1, 2, 4), **common)
    shifted = FeatureSpec(kind="hcqt_shifted", harmonics=(0.5, 1, 2, 4), **common)
    audio = torch.randn(2, 16000)
    a, b = build_frontend(exact)(audio), build_frontend(shifted)(audio)
    assert a.shape == b.shape == (2, 50, 120, 4) and feature_shape(shifted) == (120, 4)
    assert torch.allclose(a, b, atol=1e-4)


def test_shifted_hcqt_puts_a_tone_at_its_harmonics_bins():
    import numpy as np
    import torch

    from amtcli.features import build_frontend
    from amtcli.options import FeatureSpec

    spec = FeatureSpec(kind="hcqt_shifted", n_fft=2048, n_bins=264, bins_per_octave=36, fmin_hz=27.5,
                       harmonics=(0.5, 1, 2, 3))
    t = np.arange(16000) / 16000
    tone = torch.tensor(np.sin(2 * np.pi * 660.0 * t), dtype=torch.float32)[None]   # E5, 3 x 220 Hz (A3)
    out = build_frontend(spec)(tone)[0, 25]                                            # (264, 4)
    bin_of = lambda hz: int(round(36 * np.log2(hz / 27.5)))
    assert int(out[:, 1].argmax()) == bin_of(660.0)          # harmonic 1: the tone itself
    assert int(out[:, 3].argmax()) == bin_of(220.0)          # harmonic 3: seen at its fundamental's bin
