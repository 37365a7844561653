"""The seq2seq event codec and the stateful detokenizer, on hand-written token lists."""

from hypothesis import given, settings
from hypothesis import strategies as st

from amtcli.decoding.tokens import (EOS, NOTE_OFF_BASE, NOTE_ON_BASE, PAD, SHIFT_BASE, SOS, Detokenizer,
                                    encode_window)
from amtcli.types import Note


def on(pitch):
    return NOTE_ON_BASE + pitch - 21


def off(pitch):
    return NOTE_OFF_BASE + pitch - 21


def shift(steps):
    return SHIFT_BASE + steps - 1


def test_encode_orders_events_and_splits_long_shifts():
    notes = [Note(1.5, 3.0, 60), Note(1.5, 1.7, 64), Note(1.7, 1.9, 64), Note(0.0, 1.2, 72), Note(10.5, 13.0, 48)]
    assert encode_window(notes, 1.0, 10.0) == [
        shift(20), off(72),
        shift(30), on(60), on(64),
        shift(20), off(64), on(64),         # a re-attack: NOTE_OFF before NOTE_ON at one instant
        shift(20), off(64),
        shift(100), shift(10), off(60),     # 1.1 s: two shifts
        shift(100), shift(100), shift(100), shift(100), shift(100), shift(100), shift(100), shift(50), on(48),
        EOS,
    ]


def test_one_window_round_trip():
    tokens = [shift(10), on(60), shift(50), off(60), on(62), shift(5), EOS, on(70)]
    detok = Detokenizer()
    notes = detok.push(tokens, 0.0, 0.0, 10.0) + detok.finish(10.0)
    assert notes == [Note(0.1, 0.6, 60, 80), Note(0.6, 10.0, 62, 80)]
    assert detok.stats.invalid == 0 and detok.stats.tokens == 6   # nothing after EOS is read


def test_overlapping_windows_drop_foreign_events_and_carry_sounding_notes():
    """Windows of 10 s every 5 s: window 0 owns [0, 7.5), window 1 owns [7.5, 12.5), the
    last window owns [12.5, end)."""
    detok = Detokenizer()
    # Window 0 (0-10 s): C4 7.0-9.0 s starts here and rings past 7.5; E4 at 8.0 s belongs to window 1.
    w0 = [shift(100)] * 7 + [on(60), shift(100), on(64), shift(50), off(64), EOS]
    assert detok.push(w0, 0.0, 0.0, 7.5) == []
    # Window 1 (5-15 s): hears C4 from 7.0 (before its span: dropped), ends it at 9.0, plays E4 8.0-8.5.
    w1 = [shift(100), shift(100), on(60), shift(100), on(64), shift(50), off(64), shift(50), off(60),
          shift(100)] + [shift(100)] * 3 + [shift(60), on(67), EOS]
    notes = detok.push(w1, 5.0, 7.5, 12.5)
    assert notes == [Note(7.0, 9.0, 60, 80), Note(8.0, 8.5, 64, 80)]
    # Window 2 (10-20 s, the last): sees G4 at 13.6 s, ends it at 14.0, plus an orphan NOTE_OFF.
    w2 = [shift(100), shift(100), shift(100), shift(60), on(67), shift(40), off(67), off(50), EOS]
    notes = detok.push(w2, 10.0, 12.5, 20.0) + detok.finish(20.0)
    assert notes == [Note(13.6, 14.0, 67, 80)]
    assert detok.stats.invalid == 1                       # off(50): nothing was sounding
    assert detok.stats.dropped == 4                       # w0: on(64), off(64); w1: on(60), on(67)


def test_a_note_heard_again_at_the_boundary_is_not_doubled():
    detok = Detokenizer()
    detok.push([shift(100)] * 7 + [shift(49), on(60), EOS], 0.0, 0.0, 7.5)     # on at 7.49 s
    notes = detok.push([shift(100), shift(100), shift(51), on(60), shift(100), off(60), EOS], 5.0, 7.5, 12.5)
    assert notes == [Note(7.49, 8.51, 60, 80)]
    assert detok.stats.dropped == 1


def test_garbage_is_counted_never_raised():
    detok = Detokenizer()
    notes = detok.push([PAD, SOS, 99999, -3, off(60), shift(10), on(60)], 0.0, 0.0, 10.0) + detok.finish(1.0)
    assert notes == [Note(0.1, 1.0, 60, 80)]
    assert detok.stats.invalid == 5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 999), st.integers(1, 300), st.integers(21, 108)), max_size=30))
def test_encode_then_detokenize_recovers_non_overlapping_notes(raw):
    # Same-pitch notes must not overlap (one voice per key); keep the first of any clash.
    notes, busy = [], {}
    for start, length, pitch in sorted(raw):
        onset, offset = start / 100, min(start + length, 1000) / 100
        if offset > onset and busy.get(pitch, -1) < onset:
            notes.append(Note(onset, offset, pitch, 80))
            busy[pitch] = offset
    detok = Detokenizer(duplicate_tolerance_s=0.0)
    decoded = detok.push(encode_window(notes, 0.0, 10.0), 0.0, 0.0, 10.0) + detok.finish(10.0)
    assert sorted((round(n.onset_s, 2), round(n.offset_s, 2), n.pitch) for n in decoded) == \
        sorted((n.onset_s, n.offset_s, n.pitch) for n in notes)
    assert detok.stats.invalid == 0


def test_snapping_merges_a_spread_chord_and_its_spread_release_into_instants():
    from amtcli.decoding.tokens import SHIFT_BASE, snap_steps

    assert snap_steps([5, 3, 4, 9, 7], 2) == [3, 3, 3, 7, 7]
    notes = [Note(0.10, 0.50, 60), Note(0.11, 0.52, 64), Note(0.13, 0.53, 67), Note(0.30, 0.31, 72)]
    exact = encode_window(notes, 0.0, 1.0)
    snapped = encode_window(notes, 0.0, 1.0, snap_s=0.03)
    on, off = (lambda p: p - 21), (lambda p: 88 + p - 21)
    assert snapped == [SHIFT_BASE + 9, on(60), on(64), on(67), SHIFT_BASE + 19, on(72), SHIFT_BASE, off(72),
                       SHIFT_BASE + 18, off(60), off(64), off(67), EOS]
    assert len(exact) > len(snapped)
    # the release of 62 would snap onto 60's, at 62's own onset: it keeps its own time
    short = encode_window([Note(0.10, 0.50, 60), Note(0.50, 0.52, 62)], 0.0, 1.0, snap_s=0.03)
    assert short == [SHIFT_BASE + 9, on(60), SHIFT_BASE + 39, off(60), on(62), SHIFT_BASE + 1, off(62), EOS]
