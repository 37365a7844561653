"""Note-event tokens for the seq2seq family: codec and a stateful detokenizer.

Vocabulary (``VOCAB_SIZE`` ids)::

    NOTE_ON(p)     p - 21            0 .. 87
    NOTE_OFF(p)    88 + p - 21       88 .. 175
    TIME_SHIFT(k)  176 + k - 1       k = 1 .. 100 steps of TIME_STEP_S (10 ms), 1 s at most
    EOS 276, PAD 277, SOS 278

A window's sequence lists its events in time order; time starts at the window's
start and only moves forward through TIME_SHIFT tokens (several in a row for gaps
over 1 s). At one instant NOTE_OFFs come before NOTE_ONs, each group by pitch. A note
that sounds from before the window contributes only its NOTE_OFF (the model hears it
ring); one that outlasts the window contributes only its NOTE_ON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from amtcli.types import N_KEYS, PIANO_LOW, Note

TIME_STEP_S = 0.01
MAX_SHIFT_STEPS = 100
NOTE_ON_BASE = 0
NOTE_OFF_BASE = N_KEYS
SHIFT_BASE = 2 * N_KEYS
EOS = SHIFT_BASE + MAX_SHIFT_STEPS
PAD = EOS + 1
SOS = EOS + 2
VOCAB_SIZE = SOS + 1


def token_kind(token: int) -> str:
    """"on", "off", "shift", "eos", "pad", "sos" or "invalid"."""
    if 0 <= token < NOTE_OFF_BASE:
        return "on"
    if NOTE_OFF_BASE <= token < SHIFT_BASE:
        return "off"
    if SHIFT_BASE <= token < EOS:
        return "shift"
    return {EOS: "eos", PAD: "pad", SOS: "sos"}.get(token, "invalid")


def timed_tokens(tokens: list[int]):
    """Yield (step, kind, token) for each token: ``kind`` from :func:`token_kind`, ``step``
    the time in 10 ms steps from the window's start once the token is read (a TIME_SHIFT
    moves it)."""
    step = 0
    for token in tokens:
        token = int(token)
        kind = token_kind(token)
        if kind == "shift":
            step += token - SHIFT_BASE + 1
        yield step, kind, token


def with_time_shifts(events) -> list[int]:
    """(step, token) pairs in time order -> tokens with TIME_SHIFTs (at most 1 s each)
    moving time from 0 to each event's step."""
    tokens: list[int] = []
    now = 0
    for step, token in events:
        while step > now:
            shift = min(step - now, MAX_SHIFT_STEPS)
            tokens.append(SHIFT_BASE + shift - 1)
            now += shift
        tokens.append(token)
    return tokens


def encode_window(notes: list[Note], start_s: float, duration_s: float, snap_s: float = 0.0) -> list[int]:
    """Tokens (ending in EOS) for the events of ``notes`` inside [start_s, start_s + duration_s).

    Event times are rounded to the 10 ms grid relative to ``start_s``; notes outside the
    88 keys are ignored. With ``snap_s`` > 0 (training targets only), onsets that fall
    within ``snap_s`` of the first onset of their group move to it, and offsets likewise
    among offsets (:func:`snap_steps`), so a chord played with a few ms of spread is
    one instant and not a run of 10 ms shifts; an offset never moves to or before its
    own onset.
    """
    n_steps = int(round(duration_s / TIME_STEP_S))
    snap = int(round(snap_s / TIME_STEP_S))
    spans: list[tuple[int, int, int]] = []  # (on step, off step, key)
    for note in notes:
        key = note.pitch - PIANO_LOW
        if 0 <= key < N_KEYS:
            spans.append((int(round((note.onset_s - start_s) / TIME_STEP_S)),
                          int(round((note.offset_s - start_s) / TIME_STEP_S)), key))
    if snap > 0:
        ons = snap_steps([on for on, _, _ in spans], snap)
        offs = snap_steps([off for _, off, _ in spans], snap)
        spans = [(on, off if off > on else max(raw_off, on + 1), key)
                 for (_, raw_off, key), on, off in zip(spans, ons, offs)]
    events: list[tuple[int, int, int]] = []  # (step, 0 = off / 1 = on, token)
    for on, off, key in spans:
        if 0 <= on < n_steps:
            events.append((on, 1, NOTE_ON_BASE + key))
        if 0 <= off < n_steps and off > on:
            events.append((max(off, 0), 0, NOTE_OFF_BASE + key))
    return with_time_shifts((step, token) for step, _, token in sorted(events)) + [EOS]


def snap_steps(steps: list[int], snap: int) -> list[int]:
    """Each step moved to the first step of its group (same order as given): in time
    order, a step at most ``snap`` after the group's first step joins that group."""
    snapped = list(steps)
    anchor = None
    for index in sorted(range(len(steps)), key=steps.__getitem__):
        if anchor is None or steps[index] - anchor > snap:
            anchor = steps[index]
        snapped[index] = anchor
    return snapped


def _position_floor(seconds: float, positions_per_s: float) -> int:
    """Index of the activity position at or before ``seconds`` (float noise tolerated)."""
    return int(math.floor(seconds * positions_per_s + 1e-6))


def _position_ceil(seconds: float, positions_per_s: float) -> int:
    """Index of the first activity position at or after ``seconds`` (float noise tolerated)."""
    return int(math.ceil(seconds * positions_per_s - 1e-6))


def confirm_note_ons(tokens: list[int], activity, threshold: float, positions_per_s: float,
                     before_s: float = 0.04, after_s: float = 0.06, onsets=None,
                     onset_threshold: float = 0.0, rise: float = 0.0,
                     rise_back_s: float = 0.2, reattack_s: float = 0.0) -> tuple[list[int], int]:
    """Drop the NOTE_ONs that the frame activity (and the onset activity) do not confirm.

    Args:
        tokens: one window's token ids (time starts at the window's start).
        activity: (n_positions, 88) array, probability that each key sounds at each
            position of the window (``positions_per_s`` per second), or None when
            ``threshold`` is 0.
        threshold: a NOTE_ON(p) at time t is kept if key p reaches ``threshold`` at a
            position within [t - before_s, t + after_s]; 0 skips this test.
        onsets: (n_positions, 88) array like ``activity``, probability that a note of
            each key starts at each position; with ``onset_threshold`` > 0 a NOTE_ON(p)
            must also reach ``onset_threshold`` there within the same span.
        rise: with ``rise`` > 0, a NOTE_ON(p) is kept only if key p's activity in that
            span exceeds its lowest value over [t - rise_back_s, t - before_s) by at least
            ``rise`` (the key was quieter just before: a new attack, not a note already
            sounding). That look back starts no earlier than key p's last kept NOTE_ON in
            the window, so a note the decoder breaks into pieces keeps only its first
            (a NOTE_ON within ``before_s`` of the last kept one is no new attack); with no
            position before and no earlier attack, the lowest value counts as 0.
            ``activity`` is needed.
        reattack_s: with ``reattack_s`` > 0, a NOTE_ON less than that many seconds after
            its key's last kept NOTE_ON is no new attack (a slow attack read twice). All
            tests off keeps every NOTE_ON.

    Returns:
        (tokens without the unconfirmed NOTE_ONs, number of NOTE_ONs dropped). The
        NOTE_OFF that would have ended a dropped note goes too, unless it may end another
        note of that key: one kept in this window and still sounding (the dropped NOTE_ON
        was a re-attack of it), or one carried in from the previous window (the key was
        not mentioned earlier in the window). A NOTE_ON dropped by the rise test alone
        (the key is heard, but without a new attack) after the decoder ended that key's
        last kept note continues that note instead: the NOTE_OFF that ended it is
        removed, and the dropped note's NOTE_OFF ends it (a note the decoder breaks into
        pieces comes out whole, not as its first sliver). No time limit applies: failing
        the rise test means the key was heard without a dip since the kept attack or over
        the 200 ms before. Time shifts and other tokens stay.
    """
    if threshold <= 0 and onset_threshold <= 0 and rise <= 0 and reattack_s <= 0:
        return list(tokens), 0
    checks = [(heard, bar) for heard, bar in ((activity, threshold), (onsets, onset_threshold)) if bar > 0]
    reads = activity if activity is not None else checks[0][0] if checks else None   # None: reattack_s alone
    n_positions = reads.shape[0] if reads is not None else 0
    kept: list[int] = []
    unconfirmed: set[int] = set()     # keys whose NOTE_OFF would end a dropped note only
    sounding: set[int] = set()        # keys turned on by a kept NOTE_ON and not yet off
    mentioned: set[int] = set()       # keys with a NOTE_ON or NOTE_OFF earlier in the window
    attacked: dict[int, int] = {}     # key -> position of its last kept NOTE_ON
    ended: dict[int, int] = {}        # key -> index in `kept` of the NOTE_OFF that ended its last kept note
    dropped = 0
    for step, kind, token in timed_tokens(tokens):
        if kind == "on":
            key = token - NOTE_ON_BASE
            time_s = step * TIME_STEP_S
            lo = max(0, _position_ceil(time_s - before_s, positions_per_s))
            hi = min(n_positions, _position_floor(time_s + after_s, positions_per_s) + 1)
            heard_there = reads is None or (lo < hi and all(float(heard[lo:hi, key].max()) >= bar
                                                            for heard, bar in checks))
            confirmed = heard_there
            if confirmed and reattack_s > 0 and key in attacked:
                confirmed = _position_floor(time_s, positions_per_s) - attacked[key] >= reattack_s * positions_per_s
            if confirmed and rise > 0:
                back = max(0, _position_ceil(time_s - rise_back_s, positions_per_s), attacked.get(key, 0))
                before = activity[back:min(lo, n_positions), key]
                if before.size:
                    confirmed = float(activity[lo:hi, key].max()) - float(before.min()) >= rise
                else:                       # at the window's start: a new attack if the key is heard
                    confirmed = key not in attacked and float(activity[lo:hi, key].max()) >= rise
            if not confirmed:
                dropped += 1
                if heard_there and key in ended:     # the kept note goes on: undo the NOTE_OFF that ended it
                    kept[ended.pop(key)] = None
                    sounding.add(key)
                elif key in mentioned and key not in sounding:
                    unconfirmed.add(key)
                mentioned.add(key)
                continue
            unconfirmed.discard(key)
            ended.pop(key, None)
            sounding.add(key)
            mentioned.add(key)
            attacked[key] = _position_ceil(time_s, positions_per_s)
        elif kind == "off":
            key = token - NOTE_OFF_BASE
            mentioned.add(key)
            if key in unconfirmed:
                unconfirmed.discard(key)
                continue
            if key in sounding and key in attacked:
                ended[key] = len(kept)
            sounding.discard(key)
        kept.append(token)
    return [token for token in kept if token is not None], dropped


def end_notes_by_activity(tokens: list[int], activity, threshold: float, positions_per_s: float,
                          min_duration_s: float = 0.05) -> list[int]:
    """End notes where the frame activity says they stop, if that is before their NOTE_OFF.

    Args:
        tokens: one window's token ids (time starts at the window's start).
        activity: (n_positions, 88) array, probability that each key sounds at each
            position of the window (``positions_per_s`` per second).
        threshold: each NOTE_ON(p) at time t is ended by a NOTE_OFF(p) at the first
            position from ``t + min_duration_s`` on where key p falls below
            ``threshold``, unless the tokens end or re-attack it before; its own
            NOTE_OFF, now late, is removed. A key already at ``threshold`` at the window's
            start (a note carried in from the previous window) is ended the same way
            before its first event in the window (the detokenizer counts that NOTE_OFF as
            invalid if no note of the key is open). A note whose key stays above
            ``threshold`` to the window's end keeps its tokens. 0 changes nothing.

    Returns:
        The tokens unchanged when no note ends earlier; otherwise the rewritten events in
        time order (at one instant the added NOTE_OFFs first, then the others in their
        order) with TIME_SHIFTs between them, without EOS or trailing TIME_SHIFTs. Invalid
        tokens keep their time.
    """
    if threshold <= 0:
        return list(tokens)
    events: list[tuple[int, int, int]] = []   # (step, order: 0 off, 1 on, 2 other; token)
    for step, kind, token in timed_tokens(tokens):
        if kind == "eos":
            break
        if kind != "shift":
            events.append((step, {"off": 0, "on": 1}.get(kind, 2), token))
    n_positions = activity.shape[0]
    following: list[int | None] = [None] * len(events)   # the next event of the same key
    first_of_key: dict[int, int] = {}
    for index in range(len(events) - 1, -1, -1):
        _, order, token = events[index]
        if order < 2:
            key = token - (NOTE_ON_BASE if order == 1 else NOTE_OFF_BASE)
            following[index] = first_of_key.get(key)
            first_of_key[key] = index
    removed: set[int] = set()
    added: list[tuple[int, int, int]] = []

    def end_note(key: int, on_step: int, first: int, later: int | None) -> None:
        stop = n_positions if later is None else min(
            n_positions, _position_ceil(events[later][0] * TIME_STEP_S, positions_per_s))
        if first >= stop:
            return
        below = activity[first:stop, key] < threshold
        offset = int(below.argmax())
        if not below[offset]:
            return
        end_step = max(on_step + 1, int(round((first + offset) / positions_per_s / TIME_STEP_S)))
        if later is not None and end_step >= events[later][0]:
            return
        added.append((end_step, key))
        if later is not None and events[later][1] == 0:
            removed.add(later)

    for key in range(activity.shape[1]):          # notes carried in from the previous window
        if activity[0, key] >= threshold:
            end_note(key, -1, 0, first_of_key.get(key))
    for index, (on_step, order, token) in enumerate(events):
        if order == 1:
            first = _position_ceil(on_step * TIME_STEP_S + min_duration_s, positions_per_s)
            end_note(token - NOTE_ON_BASE, on_step, first, following[index])
    if not added:
        return list(tokens)
    timeline = sorted([(step, 0, 0, NOTE_OFF_BASE + key) for step, key in added]
                      + [(step, 1, index, token) for index, (step, _, token) in enumerate(events)
                         if index not in removed])
    return with_time_shifts((step, token) for step, _, _, token in timeline)


@dataclass
class DetokenizerStats:
    """Counts kept in the transcription's stats; decoding never raises on bad tokens.

    Attributes:
        invalid: tokens that make no sense where they are (NOTE_OFF of a silent pitch,
            PAD / SOS / unknown ids, anything after EOS is not counted).
        dropped: well-formed events outside the window's own time range (another
            window owns them) or a NOTE_ON repeating a carried note within 50 ms.
    """

    invalid: int = 0
    dropped: int = 0
    tokens: int = 0

    def as_dict(self) -> dict[str, float]:
        return {"invalid_tokens": float(self.invalid), "dropped_tokens": float(self.dropped),
                "n_tokens": float(self.tokens)}


@dataclass
class Detokenizer:
    """Token windows -> notes in seconds, across overlapping windows.

    Call :meth:`push` for each window in order with its start time and the span
    [own_start_s, own_end_s) it is responsible for (the same centre crop the frame
    stitcher keeps); events outside that span are dropped because a neighbouring
    window reports them. Notes still sounding at the end of a window are carried into
    the next, which ends them with its NOTE_OFF. :meth:`finish` closes what is left.
    """

    default_velocity: int = 80
    duplicate_tolerance_s: float = 0.05
    stats: DetokenizerStats = field(default_factory=DetokenizerStats)
    _open: dict[int, tuple[float, int]] = field(default_factory=dict)
    _notes: list[Note] = field(default_factory=list)

    def push(self, tokens: list[int], start_s: float, own_start_s: float, own_end_s: float,
             velocities: list[int] | None = None) -> list[Note]:
        """Consume one window's tokens; return the notes that ended in it."""
        for index, (step, kind, token) in enumerate(timed_tokens(tokens)):
            if kind == "eos":
                break
            self.stats.tokens += 1
            if kind == "shift":
                continue
            if kind not in ("on", "off"):
                self.stats.invalid += 1
                continue
            time_s = start_s + step * TIME_STEP_S
            if not own_start_s <= time_s < own_end_s:
                self.stats.dropped += 1
                continue
            pitch = PIANO_LOW + (token - (NOTE_ON_BASE if kind == "on" else NOTE_OFF_BASE))
            if kind == "on":
                velocity = velocities[index] if velocities is not None else self.default_velocity
                if pitch in self._open:
                    onset, _ = self._open[pitch]
                    if time_s - onset < self.duplicate_tolerance_s:
                        self.stats.dropped += 1
                        continue
                    self._close(pitch, time_s)
                self._open[pitch] = (time_s, velocity)
            elif pitch in self._open:
                self._close(pitch, time_s)
            else:
                self.stats.invalid += 1
        return self.take()

    def _close(self, pitch: int, end_s: float) -> None:
        onset, velocity = self._open.pop(pitch)
        if end_s > onset:
            self._notes.append(Note(onset, end_s, pitch, velocity))

    def finish(self, end_s: float) -> list[Note]:
        """Close every note still sounding at ``end_s`` (the recording's end)."""
        for pitch in list(self._open):
            self._close(pitch, max(end_s, self._open[pitch][0] + TIME_STEP_S))
        return self.take()

    def take(self) -> list[Note]:
        notes, self._notes = sorted(self._notes), []
        return notes
