import numpy as np
import pytest

from amtcli.errors import ConfigError
from amtcli.options import FeatureSpec, WindowSpec
from amtcli.windowing import (
    iter_windows,
    keep_range,
    stitch,
    stitch_stream,
    total_frames,
    window_count,
    window_start_frames,
)

SPEC = WindowSpec.from_seconds(FeatureSpec(sample_rate=16000, hop_samples=320), 10.0, 5.0)


def test_spec_is_whole_frames():
    assert (SPEC.window_frames, SPEC.hop_frames, SPEC.margin_frames) == (500, 250, 125)
    assert SPEC.window_samples == 160000


def test_non_integer_hop_is_rejected():
    with pytest.raises(ConfigError, match="whole number of frames"):
        WindowSpec.from_seconds(FeatureSpec(sample_rate=16000, hop_samples=512), 10.0, 5.0)


@pytest.mark.parametrize(
    "n_frames, expected",
    [(1, 1), (500, 1), (501, 2), (750, 2), (751, 3), (1000, 3), (1001, 4)],
)
def test_window_count(n_frames, expected):
    assert window_count(n_frames, SPEC) == expected
    starts = window_start_frames(n_frames, SPEC)
    assert starts[-1] + SPEC.window_frames >= n_frames
    assert len(starts) == expected


def test_last_partial_window_is_zero_padded_not_skipped():
    samples = np.ones(int(12.3 * 16000), dtype=np.float32)
    windows = list(iter_windows(samples, SPEC))
    assert len(windows) == window_count(total_frames(len(samples), SPEC), SPEC) == 2
    assert all(w.shape == (160000,) for w in windows)
    tail = windows[-1]
    covered = len(samples) - 5 * 16000
    assert tail[:covered].min() == 1.0 and np.all(tail[covered:] == 0.0)


def test_keep_ranges_tile_the_recording_exactly():
    n_frames = 1234
    n = window_count(n_frames, SPEC)
    position = 0
    for i in range(n):
        lo, hi = keep_range(i, n, n_frames, SPEC)
        assert i * SPEC.hop_frames + lo == position
        position = i * SPEC.hop_frames + hi
    assert position == n_frames


@pytest.mark.parametrize("n_frames", [1, 137, 500, 501, 999, 2500, 2501])
def test_stitch_recovers_global_frame_index(n_frames):
    # Each window reports the global frame index of each of its frames: stitching
    # must give exactly 0..n_frames-1 (no drift, nothing lost or doubled).
    n = window_count(n_frames, SPEC)
    outputs = [np.arange(i * SPEC.hop_frames, i * SPEC.hop_frames + SPEC.window_frames)[:, None] for i in range(n)]
    stitched = stitch(outputs, n_frames, SPEC)
    assert stitched.shape == (n_frames, 1)
    np.testing.assert_array_equal(stitched[:, 0], np.arange(n_frames))


def test_constant_input_stitched_back_unchanged():
    n_frames = 1700
    n = window_count(n_frames, SPEC)
    outputs = [np.full((SPEC.window_frames, 88), 0.25, dtype=np.float32) for _ in range(n)]
    stitched = stitch(outputs, n_frames, SPEC)
    assert stitched.shape == (n_frames, 88)
    assert np.all(stitched == 0.25)


def test_wrong_number_of_outputs_is_an_error():
    with pytest.raises(ValueError):
        stitch([np.zeros((500, 1))], 1000, SPEC)


def test_one_hour_is_processed_as_a_stream():
    n_frames = 3600 * 50
    n = window_count(n_frames, SPEC)
    alive = {"count": 0, "max": 0}

    class Tracked(np.ndarray):
        def __del__(self):
            alive["count"] -= 1

    def outputs():
        for i in range(n):
            array = np.full((SPEC.window_frames, 88), i, dtype=np.float32).view(Tracked)
            alive["count"] += 1
            alive["max"] = max(alive["max"], alive["count"])
            yield array

    total = 0
    last_value = -1.0
    for chunk in stitch_stream(outputs(), n_frames, SPEC):
        total += chunk.shape[0]
        assert chunk[0, 0] >= last_value
        last_value = float(chunk[0, 0])
        del chunk
    assert total == n_frames
    assert alive["max"] <= 3


@pytest.mark.parametrize("n", [1, 100, 159999, 160000, 160001, 240000, 16000 * 23, 16000 * 61 + 7])
@pytest.mark.parametrize("block", [1000, 37777, 10**7])
def test_stream_windows_equal_whole_file_windows(n, block):
    from amtcli.windowing import stream_windows

    spec = WindowSpec(320, 500, 250)
    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    expected = list(iter_windows(x, spec))
    got = list(stream_windows((x[i : i + block] for i in range(0, n, block)), spec))
    assert len(got) == len(expected) == window_count(total_frames(n, spec), spec)
    assert all(np.array_equal(a, w) for a, (w, _, _) in zip(expected, got))
    assert [i for _, i, _ in got] == list(range(len(got)))
    assert got[-1][2] == total_frames(n, spec) and all(nf is None for _, _, nf in got[:-1])
