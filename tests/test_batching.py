import numpy as np
import pytest
import torch

from amtcli.audio import Audio
from amtcli.batching import transcribe_stream
from amtcli.checkpoint import load_checkpoint, save_checkpoint
from amtcli.errors import AudioError
from amtcli.families.framewise_cnn import FramewiseCNN, FramewiseCNNConfig
from amtcli.batching import transcribe
from amtcli.options import DecodeOptions, FeatureSpec


@pytest.fixture(scope="module")
def sensitive_model(tmp_path_factory):
    """A random CNN with a low threshold, so noise gives plenty of notes to compare."""
    torch.manual_seed(0)
    config = FramewiseCNNConfig(features=FeatureSpec(n_bins=64), stem_channels=4, model_dim=16, blocks=1)
    folder = tmp_path_factory.mktemp("ck")
    save_checkpoint(folder, "cnn", config.to_dict(), FramewiseCNN(config))
    return load_checkpoint(folder)


def noise(seconds: float, seed: int) -> Audio:
    samples = np.random.default_rng(seed).normal(0, 0.2, int(16000 * seconds)).astype(np.float32)
    return Audio(samples, 16000, f"noise{seed}")


@pytest.mark.parametrize("batch_windows", [1, 3, 8])
def test_cross_file_batches_give_the_same_notes_as_one_file_at_a_time(sensitive_model, batch_windows):
    options = DecodeOptions(frame_threshold=0.52, min_duration_s=0.0)
    audios = [noise(s, i) for i, s in enumerate([3.0, 23.0, 0.01, 11.0, 7.5])]
    alone = [transcribe(sensitive_model, a, options) for a in audios]
    assert sum(len(t.notes) for t in alone) > 20
    batched = list(transcribe_stream(sensitive_model, [(i, a) for i, a in enumerate(audios)], options, batch_windows))
    assert [key for key, _ in batched] == [0, 1, 2, 3, 4]
    for (_, together), single in zip(batched, alone):
        assert together.notes == single.notes
        assert together.duration_s == single.duration_s and together.stats == single.stats


def test_load_errors_pass_through_and_the_rest_go_on(sensitive_model):
    error = AudioError("bad.wav: not audio")
    items = [("a", noise(2.0, 1)), ("bad", error), ("b", noise(12.0, 2)), ("wrong-rate", Audio(np.zeros(100, np.float32), 8000))]
    results = dict(transcribe_stream(sensitive_model, items))
    assert results["bad"] is error
    assert "8000 Hz" in str(results["wrong-rate"])
    assert results["a"].duration_s == 2.0 and results["b"].duration_s == 12.0


class BrokenStream:
    """An AudioStream stand-in whose data goes bad after ``good_s`` seconds."""

    def __init__(self, good_s: float):
        self.good_s, self.sample_rate, self.source = good_s, 16000, "broken.wav"

    def blocks(self):
        yield np.zeros(int(self.good_s * 16000), dtype=np.float32)
        raise AudioError("broken.wav: contains NaN or infinite samples")


def test_a_stream_that_fails_part_way_is_reported_and_the_rest_go_on(sensitive_model, monkeypatch):
    import amtcli.batching as batching

    monkeypatch.setattr(batching, "AudioStream", BrokenStream)
    items = [("a", noise(12.0, 1)), ("broken", BrokenStream(25.0)), ("b", noise(3.0, 2))]
    results = list(transcribe_stream(sensitive_model, items, batch_windows=3))
    assert [key for key, _ in results] == ["a", "broken", "b"] or [key for key, _ in results] == ["broken", "a", "b"]
    outcome = dict(results)
    assert isinstance(outcome["broken"], AudioError) and "NaN" in str(outcome["broken"])
    assert outcome["a"].duration_s == 12.0 and outcome["b"].duration_s == 3.0


def test_streamed_file_equals_loaded_file(sensitive_model, tmp_path):
    import soundfile as sf

    from amtcli.audio import AudioStream, load_audio

    samples = np.random.default_rng(3).normal(0, 0.2, 44100 * 31).astype(np.float32)
    sf.write(tmp_path / "x.wav", samples, 44100, subtype="FLOAT")
    options = DecodeOptions(frame_threshold=0.52, min_duration_s=0.0)
    whole = transcribe(sensitive_model, load_audio(tmp_path / "x.wav", 16000), options)
    ((_, streamed),) = list(transcribe_stream(sensitive_model, [(0, AudioStream(tmp_path / "x.wav", 16000))], options))
    assert streamed.notes == whole.notes and len(whole.notes) > 10
    assert streamed.duration_s == whole.duration_s and streamed.source == whole.source


def test_read_ahead_close_stops_its_thread_mid_file(tmp_path):
    """Closing a reader whose queue is full (the consumer stopped, as on Ctrl-C) ends its
    thread, so no decoder or resampler is left alive at exit."""
    import soundfile as sf

    from amtcli.audio import AudioStream
    from amtcli.batching import ReadAhead

    sf.write(tmp_path / "long.wav", np.zeros(44100 * 120, dtype=np.float32), 44100)   # many blocks at 44.1 kHz
    reader = ReadAhead(AudioStream(tmp_path / "long.wav", 16000), max_blocks=2)
    first = next(reader.blocks())
    assert first.size > 0 and reader._thread.is_alive()          # blocked on a full queue
    reader.close()
    assert not reader._thread.is_alive()
