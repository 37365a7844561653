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


def test_join_frames_are_where_a_later_window_s_kept_part_begins():
    from amtcli.options import FeatureSpec, WindowSpec
    from amtcli.windowing import join_frames, keep_range, window_count

    spec = WindowSpec.from_seconds(FeatureSpec(), 10.0, 5.0)            # 500 frames, hop 250
    assert join_frames(450, spec) == []                                 # one window: no join
    assert join_frames(700, spec) == [375]                              # two windows: 7.5 s
    assert join_frames(1100, spec) == [375, 625, 875]
    n = 1100
    assert join_frames(n, spec) == [i * spec.hop_frames + keep_range(i, window_count(n, spec), n, spec)[0]
                                    for i in range(1, window_count(n, spec))]
    assert join_frames(1100, WindowSpec.from_seconds(FeatureSpec(), 10.0, 10.0)) == [500, 1000]  # no overlap


def _decode(kind, options, frames, onsets, joins, cuts):
    decoder = kind(RATE, options)
    decoder.add_joins(joins)
    notes, edges = [], [0, *cuts, len(frames)]
    for a, b in zip(edges, edges[1:]):
        notes += decoder.push(frames[a:b], onsets[a:b])
    return spans(notes + decoder.finish())


@pytest.mark.parametrize("cuts", [[], [7, 14, 21], [30, 80], [29, 31, 79, 81]])
def test_no_reattack_of_a_held_note_where_windows_hand_over(cuts):
    """A stitched onset channel can step up at a join (the next window reads a note it
    enters mid-way as an onset); that step must not split the held note. A rise one frame
    later, a new note at the join and a held note's re-attack elsewhere still count, and
    cutting the posteriorgram anywhere (at the joins, as transcription does) changes nothing."""
    joins = [30, 80]
    frames, onsets = empty(), empty()
    frames[10:120, 39] = 0.9
    onsets[10, 39] = 0.9
    onsets[30:40, 39] = 0.9            # steps up at the join 30: no re-attack
    onsets[100, 39] = 0.9              # an onset off the joins: re-attack
    frames[80:90, 50] = 0.9            # a new note starting at the join 80
    onsets[80, 50] = 0.9
    for kind, options in ((OnsetFrameDecoder, DecodeOptions()),
                          (FrameOnlyDecoder, DecodeOptions(note_start="frame", onset_threshold=0.7))):
        assert _decode(kind, options, frames, onsets, joins, cuts) == [(0.2, 2.0, 60), (1.6, 1.8, 71), (2.0, 2.4, 60)]
        assert (0.6, 2.0, 60) in _decode(kind, options, frames, onsets, [], cuts)   # without joins: split at 0.6 s
    shifted = onsets.copy()
    shifted[30, 39] = 0.0              # the rise comes one frame after the join: a real re-attack
    assert (0.62, 2.0, 60) in _decode(OnsetFrameDecoder, DecodeOptions(), frames, shifted, joins, cuts)


@pytest.mark.parametrize("cuts", [[], [30], [13, 29, 30, 47]])
def test_join_rule_follows_the_decoder_state_not_the_chunking(cuts):
    """Frames sound without an open note (no onset yet) when an onset arrives at a join: it
    starts the note. A note inside a filled gap is not sounding: an onset at a join
    re-attacks it."""
    frames, onsets = empty(), empty()
    frames[29:60, 39] = 0.9
    onsets[30:32, 39] = 0.9
    assert _decode(OnsetFrameDecoder, DecodeOptions(), frames, onsets, [30], cuts) == [(0.6, 1.2, 60)]
    frames, onsets = empty(), empty()
    frames[10:28, 39] = 0.9            # falls at 28, back at 30 with an onset: inside the 0.1 s gap fill
    frames[30:60, 39] = 0.9
    onsets[10, 39] = onsets[30, 39] = 0.9
    options = DecodeOptions(note_start="frame", gap_fill_s=0.1, min_duration_s=0.0, onset_threshold=0.5)
    assert _decode(FrameOnlyDecoder, options, frames, onsets, [30], cuts) == [(0.2, 0.56, 60), (0.6, 1.2, 60)]


def test_frame_rise_at_a_join_does_not_split_a_held_note():
    frames = empty()
    frames[10:100, 39] = 0.5
    frames[30:100, 39] = 0.9           # a jump of 0.4 exactly at the join
    options = DecodeOptions(note_start="frame", reonset_threshold=0.3, min_duration_s=0.0)
    decoder = FrameOnlyDecoder(RATE, options)
    decoder.add_joins([30])
    assert spans(decoder.push(frames) + decoder.finish()) == [(0.2, 2.0, 60)]
    assert len(decode_frames(frames, options)) == 2


def _decode_with_onsets(frames, onsets, options, cuts=()):
    return _decode(FrameOnlyDecoder, options, frames, onsets, [], cuts)


def test_onset_support_drops_frame_runs_that_rise_with_no_attack():
    frames, onsets = empty(), empty()
    frames[10:40, 39] = 0.9            # key 60: its onset probability peaks at 0.2, two frames after the rise
    onsets[12, 39] = 0.2
    frames[10:40, 51] = 0.9            # key 72 (a partial of 60): onset probability 0.05 at most
    onsets[10, 51] = 0.05
    frames[100:130, 39] = 0.9          # key 60 again: the onset comes 4 frames (80 ms) after the rise
    onsets[104, 39] = 0.3
    options = DecodeOptions(note_start="frame", onset_threshold=0.5, min_duration_s=0.0)
    assert _decode_with_onsets(frames, onsets, options) == [(0.2, 0.8, 60), (0.2, 0.8, 72), (2.0, 2.6, 60)]
    supported = DecodeOptions(note_start="frame", onset_threshold=0.5, min_duration_s=0.0, onset_support=0.1)
    assert _decode_with_onsets(frames, onsets, supported) == [(0.2, 0.8, 60)]
    # A run begun without support still starts a note at a later onset peak above onset_threshold.
    onsets[115, 51] = 0.9
    frames[100:130, 51] = 0.9
    assert (2.3, 2.6, 72) in _decode_with_onsets(frames, onsets, supported)


@pytest.mark.parametrize("cuts", [[1], [2, 3, 4], [9, 10, 11, 100, 101], list(range(5, 400, 7))])
def test_onset_support_gives_the_same_notes_however_the_input_is_chunked(cuts):
    rng = np.random.default_rng(3)
    frames = (rng.random((400, 88)) > 0.6).astype(np.float32)
    onsets = rng.random((400, 88)).astype(np.float32) ** 4
    options = DecodeOptions(note_start="frame", gap_fill_s=0.04, min_duration_s=0.06, onset_support=0.3)
    whole = _decode_with_onsets(frames, onsets, options)
    assert whole != _decode_with_onsets(frames, onsets, DecodeOptions(note_start="frame", gap_fill_s=0.04,
                                                                       min_duration_s=0.06))
    assert _decode_with_onsets(frames, onsets, options, cuts) == whole


def test_onset_support_looks_at_the_last_frames_of_a_file():
    frames, onsets = empty(50), empty(50)
    frames[47:50, 39] = 0.9
    onsets[49, 39] = 0.3               # two frames after the rise, the file's last frame
    options = DecodeOptions(note_start="frame", min_duration_s=0.0, onset_support=0.2)
    assert _decode_with_onsets(frames, onsets, options) == [(0.94, 1.0, 60)]


def test_a_sharp_frame_rise_starts_a_note_without_onset_support():
    frames, onsets = empty(), empty()
    frames[10:40, 39] = 0.9            # jumps from 0 to 0.9 in one frame, no onset at all
    frames[60:65, 41] = [0.3, 0.45, 0.6, 0.75, 0.9]
    frames[65:90, 41] = 0.9            # fades in by 0.15 a frame, no onset
    plain = DecodeOptions(note_start="frame", min_duration_s=0.0, frame_threshold=0.4)
    assert _decode_with_onsets(frames, onsets, plain) == [(0.2, 0.8, 60), (1.22, 1.8, 62)]
    supported = DecodeOptions(note_start="frame", min_duration_s=0.0, frame_threshold=0.4, onset_support=0.1)
    assert _decode_with_onsets(frames, onsets, supported) == []
    sharp = DecodeOptions(note_start="frame", min_duration_s=0.0, frame_threshold=0.4, onset_support=0.1,
                          reonset_threshold=0.2)
    assert _decode_with_onsets(frames, onsets, sharp) == [(0.2, 0.8, 60)]
