"""From a score in beats to a human-like performance in seconds.

Instruments are assigned to parts from an ensemble (each part moved by octaves into its
instrument's playable range), then the score is played with a drifting tempo, phrase
dynamics, timing and duration jitter and legato/staccato, and finally same-pitch
overlaps of one instrument are resolved so the labels obey :func:`validate_notes` and no
sample can sound forever. Pianos may be played with the sustain pedal
(:func:`pedal_segments`); their labels then follow the MAESTRO convention
(:func:`sustained_notes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amtcli.datasets.sources import Part, Score
from amtcli.instruments import PROGRAM_BY_NAME
from amtcli.types import Note

#: Playable range (lowest, highest sounding MIDI number) of every instrument we render.
PLAYABLE_RANGE: dict[int, tuple[int, int]] = {
    0: (21, 108),  # piano
    6: (29, 89),  # harpsichord
    24: (40, 83),  # nylon guitar
    27: (40, 86),  # clean electric guitar
    40: (55, 100),  # violin
    41: (48, 88),  # viola
    42: (36, 81),  # cello
    43: (28, 67),  # contrabass
    52: (40, 79),  # choir "aah"
    53: (40, 79),  # solo voice "ooh"
    56: (54, 84),  # trumpet
    60: (34, 77),  # horn
    65: (49, 81),  # alto saxophone
    66: (44, 76),  # tenor saxophone
    67: (36, 69),  # baritone saxophone
    68: (58, 91),  # oboe
    70: (34, 75),  # bassoon
    71: (50, 94),  # clarinet
    73: (60, 96),  # flute
}
KEYBOARDS = frozenset({0, 6, 24, 27})  #: Programs that may play several parts at once (keyboards, guitars).


def _ensemble(*names: str) -> tuple[int, ...]:
    return tuple(PROGRAM_BY_NAME[n] for n in names)


#: Ensembles like MusicNet's, as 0-based GM programs (keyboards take the leftover parts).
ENSEMBLES: dict[str, tuple[int, ...]] = {
    "piano": _ensemble("piano"),
    "harpsichord": _ensemble("harpsichord"),
    "string_quartet": _ensemble("violin", "violin", "viola", "cello"),
    "string_trio": _ensemble("violin", "viola", "cello"),
    "string_quintet": _ensemble("violin", "violin", "viola", "cello", "contrabass"),
    "piano_trio": _ensemble("violin", "cello", "piano"),
    "piano_quartet": _ensemble("violin", "viola", "cello", "piano"),
    "piano_quintet": _ensemble("violin", "violin", "viola", "cello", "piano"),
    "clarinet_trio": _ensemble("clarinet", "cello", "piano"),
    "horn_trio": _ensemble("violin", "horn", "piano"),
    "wind_quintet": _ensemble("flute", "oboe", "clarinet", "horn", "bassoon"),
    "wind_trio": _ensemble("oboe", "clarinet", "bassoon"),
    "clarinet_horn_bassoon": _ensemble("clarinet", "horn", "bassoon"),
    "clarinet_quintet": _ensemble("clarinet", "violin", "viola", "cello"),
    "flute_quartet": _ensemble("flute", "violin", "viola", "cello"),
    "oboe_quartet": _ensemble("oboe", "violin", "viola", "cello"),
    "sax_quartet": _ensemble("alto_sax", "alto_sax", "tenor_sax", "tenor_sax"),
    "mixed_quartet": _ensemble("flute", "clarinet", "viola", "bassoon"),
    "brass_winds": _ensemble("trumpet", "clarinet", "horn", "bassoon"),
    "wind_string_octet": _ensemble(
        "oboe", "clarinet", "violin", "viola", "horn", "bassoon", "cello", "contrabass"
    ),
    "violin_harpsichord": _ensemble("violin", "harpsichord"),
    "guitar": _ensemble("guitar"),
    "electric_guitar": _ensemble("electric_guitar"),
    "vocal_quartet": _ensemble("voice", "voice", "voice", "voice"),
    "choir": _ensemble("choir", "choir", "choir", "choir"),
    "low_reeds": _ensemble("alto_sax", "tenor_sax", "bassoon", "baritone_sax"),
    "accompanied_voice": _ensemble("voice", "piano"),
    "voice_guitar": _ensemble("voice", "guitar"),
    **{
        f"accompanied_{solo}": _ensemble(solo, "piano")
        for solo in (
            "violin", "viola", "cello", "flute", "oboe", "clarinet", "bassoon", "horn",
            "alto_sax", "tenor_sax", "trumpet",
        )
    },
    **{
        f"solo_{solo}": _ensemble(solo)
        for solo in ("violin", "cello", "flute", "clarinet", "oboe", "alto_sax", "bassoon", "tenor_sax", "voice")
    },
}


@dataclass(frozen=True)
class PerformanceStyle:
    """How freely a score is played.

    Attributes:
        tempo_drift: relative amplitude of slow tempo changes (0.05 = +-5 %).
        final_ritardando: relative slowing over the last bar (0.15 = 15 % slower).
        onset_jitter_s: standard deviation of per-note onset noise in seconds.
        chord_spread_s: standard deviation of the shared onset noise of a chord.
        duration_jitter: relative standard deviation of note durations.
        staccato_prob, legato_prob: share of phrases played staccato / legato.
        velocity_spread: standard deviation of per-note velocity noise.
        min_duration_s: shortest note kept (shorter ones are lengthened).
        pedal_prob: share of performances in which each piano channel uses the sustain
            pedal (CC 64), changed every 1, 2 or 4 beats (drawn per performance).
    """

    tempo_drift: float = 0.06
    final_ritardando: float = 0.15
    onset_jitter_s: float = 0.012
    chord_spread_s: float = 0.006
    duration_jitter: float = 0.06
    staccato_prob: float = 0.15
    legato_prob: float = 0.3
    velocity_spread: float = 6.0
    min_duration_s: float = 0.03
    pedal_prob: float = 0.0


#: Programs played with the sustain pedal when a performance uses it (acoustic pianos).
PEDAL_PROGRAMS = frozenset({0, 1})


@dataclass(frozen=True)
class Performance:
    """The notes to render and to write as labels; index i of every tuple is one note.

    Attributes:
        notes: notes in seconds with their program (sorted by onset, pitch).
        channels: MIDI channel of each note.
        beats: (start_beat, duration_beats, note_value) of each note, for the label CSV.
        programs: 0-based GM program of every channel used.
        instruments: program of each score part (after assignment).
        sustain: (channel, down_s, up_s) of every sustain-pedal press, sorted; the
            notes' offsets are key releases (what is rendered), not what sounds
            under the pedal (see :func:`sustained_notes`).
    """

    notes: tuple[Note, ...]
    channels: tuple[int, ...]
    beats: tuple[tuple[float, float, str], ...]
    programs: dict[int, int]
    instruments: tuple[int, ...]
    sustain: tuple[tuple[int, float, float], ...] = ()

    @property
    def end_s(self) -> float:
        return max((n.offset_s for n in self.notes), default=0.0)


def assign_instruments(parts: tuple[Part, ...], ensemble: tuple[int, ...]) -> list[int]:
    """Program of each part: melodic instruments high-to-low on parts high-to-low.

    Melodic instruments are spread evenly over the parts ordered by mean pitch (with more
    parts than instruments they are doubled; with fewer, outer voices win). A keyboard in
    the ensemble takes every part left over; an ensemble of one instrument takes all parts.
    """
    n = len(parts)
    if n == 0:
        return []
    keyboard = next((p for p in ensemble if p in KEYBOARDS), None)
    melodic = sorted(
        (p for p in ensemble if p not in KEYBOARDS), key=lambda p: -sum(PLAYABLE_RANGE[p])
    )
    order = sorted(range(n), key=lambda i: -parts[i].mean_pitch)
    programs = [keyboard if keyboard is not None else (melodic[0] if melodic else 0)] * n
    if not melodic or (len(ensemble) == 1 and keyboard is not None):
        return programs
    if keyboard is None:
        for rank, part_index in enumerate(order):
            pick = round(rank * (len(melodic) - 1) / max(n - 1, 1))
            programs[part_index] = melodic[pick]
        return programs
    m = min(len(melodic), n - 1) if n > 1 else 1
    spread = (len(melodic) - 1) / max(m - 1, 1)
    chosen = [melodic[round(j * spread)] for j in range(m)]
    if m == 1:
        low, high = PLAYABLE_RANGE[chosen[0]]
        centre = (low + high) / 2
        best = min(range(n), key=lambda i: (abs(parts[i].mean_pitch - centre), -parts[i].mean_pitch))
        programs[best] = chosen[0]
        return programs
    for j, program in enumerate(chosen):
        rank = round(j * (n - 1) / (m - 1))
        programs[order[rank]] = program
    return programs


def fit_range(pitches: np.ndarray, program: int) -> np.ndarray:
    """Move a part by whole octaves into the instrument's range; fold stray notes singly."""
    low, high = PLAYABLE_RANGE.get(program, (21, 108))
    pitches = np.asarray(pitches, dtype=np.int64)
    if not len(pitches):
        return pitches
    best_shift, best_out = 0, None
    for shift in (0, -12, 12, -24, 24, -36, 36):
        moved = pitches + shift
        out = int(np.sum((moved < low) | (moved > high)))
        if best_out is None or out < best_out:
            best_shift, best_out = shift, out
    moved = pitches + best_shift
    while np.any(moved < low):
        moved = np.where(moved < low, moved + 12, moved)
    while np.any(moved > high):
        moved = np.where(moved > high, moved - 12, moved)
    return np.clip(moved, low, high)


def _smooth_curve(rng: np.random.Generator, x: np.ndarray, periods: tuple[float, float]) -> np.ndarray:
    """Sum of three random slow sinusoids over ``x``, scaled to about [-1, 1]."""
    curve = np.zeros_like(x, dtype=np.float64)
    for _ in range(3):
        period = rng.uniform(*periods)
        curve += np.sin(2 * np.pi * x / period + rng.uniform(0, 2 * np.pi))
    return curve / 3.0


def beat_to_seconds(end_beats: float, bpm: float, style: PerformanceStyle, rng: np.random.Generator):
    """Return a function mapping beats to seconds under a drifting tempo around ``bpm``."""
    step = 1.0 / 16
    grid = np.arange(0.0, end_beats + 8.0, step)
    log_tempo = np.log(bpm) + style.tempo_drift * _smooth_curve(rng, grid, (8.0, 64.0))
    ritardando_start = max(end_beats - 4.0, 0.0)
    slowing = np.clip((grid - ritardando_start) / 4.0, 0.0, 1.0) * style.final_ritardando
    seconds_per_step = 60.0 / np.exp(log_tempo) * (1.0 + slowing) * step
    times = np.concatenate([[0.0], np.cumsum(seconds_per_step)])[:-1]
    return lambda beats: np.interp(beats, grid, times)


def note_value(duration_beats: float) -> str:
    """MusicNet-style note value name of a duration in quarter notes ("" if unusual)."""
    names = {
        4.0: "Whole", 3.0: "Dotted Half", 2.0: "Half", 1.5: "Dotted Quarter", 1.0: "Quarter",
        0.75: "Dotted Eighth", 0.5: "Eighth", 0.375: "Dotted Sixteenth", 0.25: "Sixteenth",
        0.125: "Thirty Second", 0.0625: "Sixty Fourth",
    }
    return names.get(round(duration_beats * 16) / 16, "")


def crop_score(score: Score, start_beats: float, length_beats: float) -> Score:
    """Notes with onsets in [start, start + length), shifted to start at 0 and cut at the end."""
    stop = start_beats + length_beats
    parts = []
    for part in score.parts:
        notes = part.notes
        keep = (notes[:, 0] >= start_beats) & (notes[:, 0] < stop)
        cropped = notes[keep].copy()
        cropped[:, 1] = np.minimum(cropped[:, 0] + cropped[:, 1], stop) - cropped[:, 0]
        cropped[:, 0] -= start_beats
        parts.append(Part(part.name, part.program, cropped))
    return Score(score.work_id, score.group, score.title, score.composer, tuple(parts), score.bpm)


def perform(
    score: Score,
    programs: list[int],
    bpm: float,
    style: PerformanceStyle,
    rng: np.random.Generator,
    lead_in_s: float = 0.3,
) -> Performance:
    """Play ``score`` with one program per part at around ``bpm`` quarter notes per minute."""
    to_seconds = beat_to_seconds(score.end_beats, bpm, style, rng)
    level = rng.uniform(50, 95)
    swing = rng.uniform(8, 25)
    dynamics_phase = _smooth_curve(rng, np.arange(0.0, score.end_beats + 8.0, 0.25), (8.0, 40.0))
    channel_of: dict[tuple[int, int], int] = {}
    free_channels = [c for c in range(16) if c != 9]
    rows: list[tuple[float, float, int, int, int, float, float]] = []
    chord_offsets: dict[float, float] = {}
    for index, (part, program) in enumerate(zip(score.parts, programs)):
        if not len(part.notes):
            continue
        key = (index, program)
        if free_channels:
            channel_of[key] = free_channels.pop(0)
        else:
            shared = [c for (_, p), c in channel_of.items() if p == program]
            if not shared:
                continue
            channel_of[key] = shared[0]
        channel = channel_of[key]
        notes = part.notes
        pitches = fit_range(notes[:, 2], program)
        onset_b, dur_b = notes[:, 0], notes[:, 1]
        phrase = np.floor(onset_b / 16.0).astype(int)
        n_phrases = int(phrase.max()) + 1 if len(phrase) else 1
        articulation = rng.choice(
            3, size=n_phrases, p=[style.staccato_prob, 1 - style.staccato_prob - style.legato_prob, style.legato_prob]
        )
        part_offset = rng.normal(0, 5) + (4.0 if index == 0 else 0.0)
        for k in range(len(notes)):
            start_b, length_b = float(onset_b[k]), float(dur_b[k])
            if start_b not in chord_offsets:
                chord_offsets[start_b] = rng.normal(0, style.chord_spread_s)
            onset = float(to_seconds(start_b)) + chord_offsets[start_b] + rng.normal(0, style.onset_jitter_s)
            nominal_end = float(to_seconds(start_b + length_b))
            kind = articulation[phrase[k]]
            if kind == 0 and length_b <= 1.0:
                factor = rng.uniform(0.35, 0.6)
            elif kind == 2:
                factor = rng.uniform(0.98, 1.04)
            else:
                factor = rng.uniform(0.82, 0.95)
            factor *= 1.0 + rng.normal(0, style.duration_jitter)
            duration = max((nominal_end - float(to_seconds(start_b))) * factor, style.min_duration_s)
            given = notes[k, 3]
            if given > 0:
                velocity = given + rng.normal(0, style.velocity_spread / 2)
            else:
                accent = 5.0 if abs(start_b - round(start_b)) < 1e-6 else 0.0
                phase = dynamics_phase[min(int(start_b * 4), len(dynamics_phase) - 1)]
                velocity = level + swing * phase + part_offset + accent + rng.normal(0, style.velocity_spread)
            rows.append(
                (onset + lead_in_s, duration, int(pitches[k]), int(np.clip(round(velocity), 1, 127)),
                 channel, start_b, length_b)
            )
    rows = [(max(r[0], 0.0),) + r[1:] for r in rows]
    merged = resolve_overlaps(rows, {c: p for (_, p), c in channel_of.items()})
    merged.sort(key=lambda r: (r[0], r[2], r[4]))
    sustain: list[tuple[int, float, float]] = []
    if style.pedal_prob > 0 and rng.random() < style.pedal_prob:
        every = float(rng.choice([1.0, 2.0, 4.0]))
        change_s = to_seconds(np.arange(every, score.end_beats + every, every)) + lead_in_s
        for (_, program), channel in sorted(channel_of.items(), key=lambda kv: kv[1]):
            if program in PEDAL_PROGRAMS:
                onsets = [r[0] for r in merged if r[4] == channel]
                sustain += [(channel, down, up) for down, up in pedal_segments(onsets, change_s, rng)]
    notes_out = tuple(
        Note(onset_s=r[0], offset_s=r[0] + r[1], pitch=r[2], velocity=r[3], program=_program(channel_of, r[4]))
        for r in merged
    )
    return Performance(
        notes=notes_out,
        channels=tuple(r[4] for r in merged),
        beats=tuple((r[5], r[6], note_value(r[6])) for r in merged),
        programs={c: p for (_, p), c in channel_of.items()},
        instruments=tuple(programs),
        sustain=tuple(sorted(sustain, key=lambda s: (s[1], s[0]))),
    )


def pedal_segments(onsets_s: list[float], change_s: np.ndarray, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Sustain-pedal presses of one piano channel, changed as pianists do ("legato
    pedalling"): at each change point (seconds) the pedal is lifted 0-40 ms after the
    first key struck there and pressed again 60-160 ms after it, so the new harmony
    starts clean and the old one does not ring into it.

    Args:
        onsets_s: the channel's note onsets in seconds.
        change_s: the times of the bar or beat lines where the harmony may change.

    Returns:
        (down_s, up_s) pairs, sorted, non-overlapping, each at least 50 ms long.
    """
    onsets = np.sort(np.asarray(onsets_s, dtype=float))
    if not len(onsets):
        return []
    strikes = []
    for change in change_s:
        near = onsets[(onsets >= change - 0.08) & (onsets < change + 0.25)]
        if len(near):
            strikes.append(float(near[0]))
    points = sorted(set([float(onsets[0])] + strikes))
    segments = []
    for index, strike in enumerate(points):
        down = strike + float(rng.uniform(0.06, 0.16))
        if index + 1 < len(points):
            up = points[index + 1] + float(rng.uniform(0.0, 0.04))
        else:
            up = float(onsets[-1]) + float(rng.uniform(0.5, 1.5))
        if up - down >= 0.05:
            segments.append((down, up))
    return segments


def sustained_notes(notes: tuple[Note, ...], channels: tuple[int, ...],
                    sustain: tuple[tuple[int, float, float], ...]) -> list[Note]:
    """Labels under the sustain pedal, in the MAESTRO convention: a note whose key is
    released while its channel's pedal is down sounds until the pedal is lifted, or
    until the same key of the same instrument is struck again, whichever comes first.

    Returns a note list aligned with ``notes`` (same order and onsets).
    """
    from dataclasses import replace

    if not sustain:
        return list(notes)
    presses: dict[int, list[tuple[float, float]]] = {}
    for channel, down, up in sustain:
        presses.setdefault(channel, []).append((down, up))
    next_strike: dict[int, float] = {}
    by_key: dict[tuple[int | None, int], list[int]] = {}
    for index, note in enumerate(notes):
        by_key.setdefault((note.program, note.pitch), []).append(index)
    for indices in by_key.values():
        ordered = sorted(indices, key=lambda i: notes[i].onset_s)
        for here, following in zip(ordered, ordered[1:]):
            next_strike[here] = notes[following].onset_s
    out = []
    for index, (note, channel) in enumerate(zip(notes, channels)):
        end = note.offset_s
        for down, up in presses.get(channel, ()):
            if down <= note.offset_s < up:
                end = up
                break
        end = min(end, next_strike.get(index, end))
        out.append(replace(note, offset_s=max(end, note.offset_s)) if end > note.offset_s else note)
    return out


def _program(channel_of: dict[tuple[int, int], int], channel: int) -> int:
    return next(p for (_, p), c in channel_of.items() if c == channel)


def resolve_overlaps(rows: list[tuple], program_of_channel: dict[int, int], gap_s: float = 0.01,
                     unison_s: float = 0.03, min_s: float = 0.02) -> list[tuple]:
    """Remove same-pitch overlaps of one instrument (program), across all its channels.

    ``rows`` are (onset_s, duration_s, pitch, velocity, channel, ...). Notes of the same
    program and pitch starting within ``unison_s`` are merged into one (longest duration,
    loudest velocity); otherwise an earlier note is cut ``gap_s`` before the next onset,
    and dropped into the next one if that leaves less than ``min_s``.
    """
    by_key: dict[tuple[int, int], list[tuple]] = {}
    for row in sorted(rows, key=lambda r: (r[0], -r[1])):
        by_key.setdefault((program_of_channel[row[4]], row[2]), []).append(row)
    out: list[tuple] = []
    for group in by_key.values():
        kept: list[list] = []
        for row in group:
            row = list(row)
            if kept:
                previous = kept[-1]
                prev_end = previous[0] + previous[1]
                if row[0] - previous[0] < unison_s:
                    if row[0] + row[1] > prev_end:
                        previous[5:] = row[5:]
                    previous[1] = max(prev_end, row[0] + row[1]) - previous[0]
                    previous[3] = max(previous[3], row[3])
                    continue
                if row[0] < prev_end + gap_s:
                    new_length = row[0] - gap_s - previous[0]
                    if new_length < min_s:
                        row[1] = row[0] + row[1] - previous[0]
                        row[0] = previous[0]
                        row[3] = max(previous[3], row[3])
                        kept.pop()
                    else:
                        previous[1] = new_length
            kept.append(row)
        out.extend(tuple(r) for r in kept)
    return out
