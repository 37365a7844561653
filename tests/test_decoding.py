import numpy as np
import pytest

from amtcli.decoding.frames import FrameOnlyDecoder, OnsetFrameDecoder, decode_posteriors
from amtcli.options import DecodeOptions
from amtcli.types import FramePosteriors

RATE = 50.0  # frames per second: frame k is at k * 0.02 s


def empty(n=200):
    return np.zeros((n, 88), dtype=np.float32)


def spans(notes):
    return sorted((round(n.onset_s, 3), round(n.offset_s, 3), n.pitch) for n in notes)


def decode_onf(frames, onsets, velocity=None, options=DecodeOptions(), chunk=None):
    decoder = OnsetFrameDecoder(RATE, options)
    notes = []
    step = chunk or len(frames)
    for i in range(0, len(frames), step):
        v = None if velocity is None else velocity[i : i + step]
        notes += decoder.push(frames[i : i + step], onsets[i : i + step], v)
    return notes + decoder.finish()


def decode_frames(frames, options=DecodeOptions(), chunk=None):
    decoder = FrameOnlyDecoder(RATE, options)
    notes = []
    step = chunk or len(frames)
    for i in range(0, len(frames), step):
        notes += decoder.push(frames[i : i + step])
    return notes + decoder.finish()


def test_onset_starts_note_and_frames_sustain_it():
    frames, onsets = empty(), empty()
    frames[10:40, 39] = 0.9  # MIDI 60
    onsets[10:12, 39] = 0.8
    velocity = empty()
    velocity[10, 39] = 100 / 127
    notes = decode_onf(frames, onsets, velocity)
    assert spans(notes) == [(0.2, 0.8, 60)]
    assert notes[0].velocity == 100


def test_frames_without_onset_make_no_note():
    frames, onsets = empty(), empty()
    frames[10:40, 50] = 0.9
    assert decode_onf(frames, onsets) == []


def test_new_onset_during_held_note_reattacks():
    frames, onsets = empty(), empty()
    frames[10:60, 39] = 0.9
    onsets[10, 39] = 0.9
    onsets[30, 39] = 0.9
    assert spans(decode_onf(frames, onsets)) == [(0.2, 0.6, 60), (0.6, 1.2, 60)]


def test_note_running_to_the_end_is_flushed():
    frames, onsets = empty(100), empty(100)
    frames[90:, 0] = 0.9
    onsets[90, 0] = 0.9
    assert spans(decode_onf(frames, onsets)) == [(1.8, 2.0, 21)]


@pytest.mark.parametrize("chunk", [1, 7, 33, 250])
def test_onf_chunked_equals_whole(chunk):
    rng = np.random.default_rng(0)
    frames = (rng.random((300, 88)) > 0.7).astype(np.float32)
    onsets = (rng.random((300, 88)) > 0.9).astype(np.float32)
    assert spans(decode_onf(frames, onsets, chunk=chunk)) == spans(decode_onf(frames, onsets))


def test_frame_only_threshold_gap_fill_and_min_duration():
    frames = empty()
    frames[10:20, 40] = 0.9
    frames[22:30, 40] = 0.9  # 2-frame (40 ms) gap: filled with gap_fill_s=0.04
    frames[50:60, 40] = 0.9  # 20-frame gap: separate note
    frames[80:82, 41] = 0.9  # 40 ms: shorter than min_duration_s=0.05, dropped
    frames[100:110, 42] = 0.4  # below threshold
    notes = decode_frames(frames, DecodeOptions(gap_fill_s=0.04, min_duration_s=0.05))
    assert spans(notes) == [(0.2, 0.6, 61), (1.0, 1.2, 61)]


def test_frame_only_without_gap_fill_splits():
    frames = empty()
    frames[10:20, 40] = 0.9
    frames[22:30, 40] = 0.9
    notes = decode_frames(frames, DecodeOptions(gap_fill_s=0.0, min_duration_s=0.0))
    assert spans(notes) == [(0.2, 0.4, 61), (0.44, 0.6, 61)]


def test_frame_only_reonset_splits_on_sharp_rise():
    frames = empty()
    frames[10:40, 40] = 0.6
    frames[25:40, 40] = 0.95
    off = decode_frames(frames, DecodeOptions(reonset_threshold=0.0))
    on = decode_frames(frames, DecodeOptions(reonset_threshold=0.3))
    assert spans(off) == [(0.2, 0.8, 61)]
    assert spans(on) == [(0.2, 0.5, 61), (0.5, 0.8, 61)]


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_frame_only_chunked_equals_whole(chunk):
    rng = np.random.default_rng(1)
    frames = (rng.random((400, 88)) > 0.6).astype(np.float32)
    options = DecodeOptions(gap_fill_s=0.06, min_duration_s=0.1)
    assert spans(decode_frames(frames, options, chunk)) == spans(decode_frames(frames, options))


def test_decode_posteriors_dispatches_on_onsets():
    frames, onsets = empty(), empty()
    frames[10:40, 39] = 0.9
    with_onsets = FramePosteriors(frames=frames, frame_rate_hz=RATE, onsets=onsets)
    assert decode_posteriors(with_onsets) == []
    assert spans(decode_posteriors(FramePosteriors(frames=frames, frame_rate_hz=RATE))) == [(0.2, 0.8, 60)]


def test_silence_gives_no_notes():
    assert decode_frames(empty()) == []
    assert decode_onf(empty(), empty()) == []


def test_frame_start_mode_uses_onsets_only_to_reattack():
    frames, onsets, velocity = empty(), empty(), empty()
    frames[10:60, 39] = 0.9  # one long active run, no onset at its start
    onsets[30, 39] = 0.9  # a re-attack in the middle
    velocity[10, 39] = 64 / 127
    velocity[30, 39] = 100 / 127
    decoder = FrameOnlyDecoder(RATE, DecodeOptions(note_start="frame", min_duration_s=0.0))
    notes = decoder.push(frames, onsets, velocity) + decoder.finish()
    assert spans(notes) == [(0.2, 0.6, 60), (0.6, 1.2, 60)]
    assert [n.velocity for n in sorted(notes)] == [64, 100]
    assert decode_onf(frames, onsets) and spans(decode_onf(frames, onsets)) == [(0.6, 1.2, 60)]
