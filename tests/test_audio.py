import numpy as np
import pytest
import soundfile as sf

from amtcli.audio import audio_from_array, load_audio
from amtcli.errors import AudioError


def tone(rate, seconds=1.0, channels=1, freq=440.0):
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_formats_load_and_resample(tmp_path, fmt):
    path = tmp_path / f"a.{fmt}"
    sf.write(path, tone(44100, 2.0, channels=2), 44100)
    audio = load_audio(path, 16000)
    assert audio.sample_rate == 16000
    assert abs(audio.duration_s - 2.0) < 0.06  # mp3 adds encoder padding
    spectrum = np.abs(np.fft.rfft(audio.samples[:16000]))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins: the tone kept its pitch


@pytest.mark.parametrize("rate, subtype", [(8000, "PCM_16"), (96000, "PCM_24"), (22050, "FLOAT"), (48000, "PCM_U8")])
def test_rates_and_sample_types(tmp_path, rate, subtype):
    path = tmp_path / "a.wav"
    sf.write(path, tone(rate, 1.0), rate, subtype=subtype)
    audio = load_audio(path, 16000)
    assert len(audio.samples) == 16000
    assert 0.3 < np.abs(audio.samples).max() < 0.6


def test_multichannel_is_mixed_to_mono(tmp_path):
    x = np.zeros((16000, 6), dtype=np.float32)
    x[:, 2] = 0.6
    sf.write(tmp_path / "six.wav", x, 16000, subtype="FLOAT")
    audio = load_audio(tmp_path / "six.wav", 16000)
    assert audio.samples.shape == (16000,)
    assert np.allclose(audio.samples, 0.1, atol=1e-6)


def test_silence_is_valid(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros(8000, dtype=np.float32), 16000)
    assert not load_audio(tmp_path / "s.wav", 16000).samples.any()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("this is not audio"), "cannot decode"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, make, message):
    path = tmp_path / "song.wav"
    make(path)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path, 16000)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_truncated_file_is_an_error_or_shorter(tmp_path):
    path = tmp_path / "t.flac"
    sf.write(path, tone(16000, 3.0), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    try:
        audio = load_audio(path, 16000)
    except AudioError as exc:
        assert "\n" not in str(exc)
    else:
        assert audio.duration_s <= 3.0


def test_a_cut_off_wav_warns_but_one_written_to_a_pipe_does_not(tmp_path):
    """A WAV whose data chunk claims more than the file holds is read as far as it goes
    with a warning; the unknown sizes a streaming writer leaves (0xFFFFFFFF: ffmpeg, sox)
    are no such sign, and a whole file gets none."""
    import struct

    whole = tmp_path / "whole.wav"
    sf.write(whole, tone(16000, 2.0), 16000, subtype="PCM_16")
    data = whole.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    piped = bytearray(data)
    at = piped.find(b"data")
    piped[4:8] = piped[at + 4: at + 8] = struct.pack("<I", 0xFFFFFFFF)
    (tmp_path / "piped.wav").write_bytes(bytes(piped))
    found: dict[str, list[str]] = {}
    for name in ("whole", "cut", "piped"):
        found[name] = []
        audio = load_audio(tmp_path / f"{name}.wav", 16000, found[name])
        assert audio.duration_s == pytest.approx(1.0 if name == "cut" else 2.0, abs=0.01)
    assert found["whole"] == [] and found["piped"] == []
    assert len(found["cut"]) == 1 and "ends before its header says" in found["cut"][0]


def test_header_only_wav_has_no_samples(tmp_path):
    sf.write(tmp_path / "z.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(tmp_path / "z.wav", 16000)


def test_nan_samples_are_rejected(tmp_path):
    x = tone(16000, 1.0)
    x[100] = np.nan
    sf.write(tmp_path / "n.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(tmp_path / "n.wav", 16000)
    with pytest.raises(AudioError, match="NaN"):
        audio_from_array(x, 16000, 16000)


def test_array_input_resamples():
    audio = audio_from_array(tone(32000, 1.0, channels=2), 32000, 16000)
    assert audio.samples.shape == (16000,)
