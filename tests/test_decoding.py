import numpy as np
import pytest

from amtcli.decoding.frames import FrameOnlyDecoder, JoinGrid, OnsetFrameDecoder, decode_posteriors
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


def test_join_grid_marks_where_windows_hand_over():
    grid = JoinGrid.for_windows(window_frames=500, hop_frames=250)     # 10 s windows, 5 s hop
    assert (grid.first, grid.period) == (375, 250)                      # 7.5 s, 12.5 s, ...
    assert np.flatnonzero(grid.mask(300, 400)).tolist() == [75, 325]    # frames 375 and 625
    assert JoinGrid.for_windows(500, 400).first == 450                  # 8 s hop: 9 s, 17 s, ...


@pytest.mark.parametrize("chunk", [None, 7])
def test_no_reattack_of_a_held_note_where_windows_hand_over(chunk):
    """A stitched onset channel can step up at a join (the next window reads a note it
    enters mid-way as an onset); that step must not split the held note. A rise one frame
    later, a new note at the join and a held note's re-attack elsewhere still count."""
    grid = JoinGrid(first=30, period=50)                                # joins at frames 30, 80
    frames, onsets = empty(), empty()
    frames[10:120, 39] = 0.9
    onsets[10, 39] = 0.9
    onsets[30:40, 39] = 0.9            # steps up at the join 30: no re-attack
    onsets[100, 39] = 0.9              # an onset off the joins: re-attack
    frames[80:90, 50] = 0.9            # a new note starting at the join 80
    onsets[80, 50] = 0.9
    for options in (DecodeOptions(), DecodeOptions(note_start="frame", onset_threshold=0.7)):
        decoder = (OnsetFrameDecoder if options.note_start == "onset" else FrameOnlyDecoder)(RATE, options, grid)
        notes = []
        step = chunk or 200
        for i in range(0, 200, step):
            notes += decoder.push(frames[i : i + step], onsets[i : i + step])
        notes += decoder.finish()
        assert spans(notes) == [(0.2, 2.0, 60), (1.6, 1.8, 71), (2.0, 2.4, 60)]
        without = (OnsetFrameDecoder if options.note_start == "onset" else FrameOnlyDecoder)(RATE, options)
        split = without.push(frames, onsets) + without.finish()
        assert (0.6, 2.0, 60) in spans(split)                           # without the grid: split at 0.6 s
    shifted = onsets.copy()
    shifted[30, 39] = 0.0              # the rise comes one frame after the join: a real re-attack
    decoder = OnsetFrameDecoder(RATE, DecodeOptions(), grid)
    assert (0.62, 2.0, 60) in spans(decoder.push(frames, shifted) + decoder.finish())


def test_frame_rise_at_a_join_does_not_split_a_held_note():
    grid = JoinGrid(first=30, period=50)
    frames = empty()
    frames[10:100, 39] = 0.5
    frames[30:100, 39] = 0.9           # a jump of 0.4 exactly at the join
    options = DecodeOptions(note_start="frame", reonset_threshold=0.3, min_duration_s=0.0)
    decoder = FrameOnlyDecoder(RATE, options, grid)
    assert spans(decoder.push(frames) + decoder.finish()) == [(0.2, 2.0, 60)]
    assert len(decode_frames(frames, options)) == 2
