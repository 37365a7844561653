"""In-process FluidSynth rendering of performed notes to mono float32 audio.

The output length is fixed before rendering: the last note-off plus a release tail, so
a bad source can never produce unbounded audio. Every channel receives all-notes-off
after its last note. Reverb, chorus, channel volumes and output level are randomized
per item by :func:`random_settings`; :func:`with_vibrato` adds pitch-wheel vibrato to the
sustained instruments (bowed strings, voices, winds), which soundfonts play at a flat pitch,
and :func:`with_slow_attacks` makes their notes swell in, as bowed and blown notes do.
"""

from __future__ import annotations

import ctypes
import math
import shutil
from dataclasses import asdict, dataclass, replace

import numpy as np

from amtcli.datasets.soundfonts import find_soundfont
from amtcli.errors import DataError

_CHUNK_FRAMES = 8192  #: Largest block rendered in one FluidSynth call (frames).
_FLUID_BLOCK = 64  #: FluidSynth computes audio in blocks of this many frames (FLUID_BUFSIZE).
_FLUSH_S = 0.5  #: Silence rendered and discarded after a reset, to empty effect buffers.
_CC_VOLUME, _CC_PAN, _CC_EXPRESSION, _CC_ALL_NOTES_OFF = 7, 10, 11, 123
_CC_SUSTAIN = 64
_NOTE_OFF, _NOTE_ON, _BEND, _EXPRESSION, _CONTROL = 0, 1, 2, 3, 4  #: Timeline event kinds, in their order at one sample.
_BEND_RANGE_CENTS = 200.0  #: FluidSynth's default pitch-wheel range (+-2 semitones).
_BEND_STEP_S = 0.01  #: Vibrato pitch-wheel update interval in seconds.
_VIBRATO_RAMP_S = 0.25  #: Seconds for the vibrato to reach full depth after its delay.

#: 0-based GM programs played with vibrato: bowed strings, string and voice ensembles,
#: brass, reeds and pipes (not keyboards, plucked strings, pizzicato, harp or timpani).
VIBRATO_PROGRAMS = frozenset([*range(40, 45), *range(48, 55), *range(56, 80)])


@dataclass(frozen=True)
class VibratoStyle:
    """How often and how much sustained instruments are played with vibrato.

    Attributes:
        prob: probability that a rendered item gets vibrato (0 disables it).
        cents: (low, high) peak pitch deviation in cents, drawn per item.
        rate_hz: (low, high) vibrato rate, drawn per item (each channel varies it by +-5 %).
        delay_s: (low, high) seconds after each note-on before the vibrato starts to grow.
    """

    prob: float = 0.0
    cents: tuple[float, float] = (8.0, 35.0)
    rate_hz: tuple[float, float] = (4.5, 6.5)
    delay_s: tuple[float, float] = (0.05, 0.35)

    def __post_init__(self) -> None:
        for name in ("cents", "rate_hz", "delay_s"):
            low, high = (float(v) for v in getattr(self, name))
            if low > high or low < 0:
                raise ValueError(f"vibrato {name} must be a (low, high) range with 0 <= low <= high")
            object.__setattr__(self, name, (low, high))
        if not (0.0 < self.rate_hz[0] and self.rate_hz[1] <= 20.0):
            raise ValueError("vibrato rate_hz must lie in (0, 20] Hz")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"vibrato prob must be in [0, 1], got {self.prob}")
        if self.cents[1] >= _BEND_RANGE_CENTS:
            raise ValueError(f"vibrato cents must stay below the {_BEND_RANGE_CENTS:.0f}-cent pitch-wheel range")


@dataclass(frozen=True)
class AttackStyle:
    """How often and how slowly sustained instruments swell into their notes.

    At each note-on of a channel playing a :data:`VIBRATO_PROGRAMS` program, the channel's
    expression controller (CC 11) drops to ``floor`` of full scale and rises linearly back
    to full over the attack time (cut short by the channel's next note-on). The labels
    keep the note-on time.

    Attributes:
        prob: probability that a rendered item gets slow attacks (0 disables them).
        attack_s: (low, high) attack time in seconds, drawn per item.
        floor: (low, high) starting expression as a fraction of full scale, drawn per item.
    """

    prob: float = 0.0
    attack_s: tuple[float, float] = (0.03, 0.15)
    floor: tuple[float, float] = (0.2, 0.5)

    def __post_init__(self) -> None:
        for name in ("attack_s", "floor"):
            low, high = (float(v) for v in getattr(self, name))
            if low > high or low < 0:
                raise ValueError(f"attack {name} must be a (low, high) range with 0 <= low <= high")
            object.__setattr__(self, name, (low, high))
        if self.attack_s[1] > 1.0 or self.floor[1] > 1.0:
            raise ValueError("attack attack_s must stay within 1 s and floor within [0, 1]")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"attack prob must be in [0, 1], got {self.prob}")


@dataclass(frozen=True)
class RenderSettings:
    """How one item is rendered.

    Attributes:
        soundfont: path of the .sf2/.sf3 file.
        sample_rate: output rate in Hz.
        tail_s: seconds rendered after the last note-off (release and reverb).
        peak: output peak amplitude after normalisation, in (0, 1].
        reverb_room, reverb_damping, reverb_width, reverb_level: FluidSynth reverb.
        chorus_level, chorus_depth_ms, chorus_speed_hz: FluidSynth chorus (nr = 3).
        channel_volumes: CC7 value per channel (index = MIDI channel).
        channel_pans: CC10 value per channel.
        vibrato_cents: peak vibrato depth in cents on channels playing a
            :data:`VIBRATO_PROGRAMS` program (0: no vibrato).
        vibrato_hz: vibrato rate in Hz.
        vibrato_delay_s: seconds after each note-on before the vibrato starts to grow.
        attack_s: seconds over which sustained instruments swell into each note
            (:class:`AttackStyle`; 0: no swell).
        attack_floor: expression at the note-on, as a fraction of full scale.
    """

    soundfont: str
    sample_rate: int = 16000
    tail_s: float = 1.0
    peak: float = 0.7
    reverb_room: float = 0.4
    reverb_damping: float = 0.3
    reverb_width: float = 0.8
    reverb_level: float = 0.4
    chorus_level: float = 0.0
    chorus_depth_ms: float = 4.0
    chorus_speed_hz: float = 0.3
    channel_volumes: tuple[int, ...] = ()
    channel_pans: tuple[int, ...] = ()
    vibrato_cents: float = 0.0
    vibrato_hz: float = 5.5
    vibrato_delay_s: float = 0.2
    attack_s: float = 0.0
    attack_floor: float = 1.0

    def describe(self) -> str:
        """Compact ``key=value`` text for metadata.csv (soundfont and per-channel mix omitted;
        the vibrato and attack fields only when they are used)."""
        parts = []
        for key, value in asdict(self).items():
            if key in ("soundfont", "channel_volumes", "channel_pans"):
                continue
            if key.startswith("vibrato_") and not self.vibrato_cents:
                continue
            if key.startswith("attack_") and not self.attack_s:
                continue
            parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
        return ";".join(parts)


def random_settings(
    soundfont: str, sample_rate: int, tail_s: float, n_channels: int, rng: np.random.Generator
) -> RenderSettings:
    """Draw reverb, chorus, mix and level for one item (dry rooms to large halls)."""
    room = float(rng.uniform(0.1, 0.9))
    return RenderSettings(
        soundfont=soundfont,
        sample_rate=sample_rate,
        tail_s=tail_s,
        peak=float(10 ** (rng.uniform(-14.0, -1.0) / 20.0)),
        reverb_room=room,
        reverb_damping=float(rng.uniform(0.1, 0.8)),
        reverb_width=float(rng.uniform(0.3, 1.0)),
        reverb_level=float(rng.uniform(0.05, 0.7)) if rng.random() < 0.9 else 0.0,
        chorus_level=float(rng.uniform(0.0, 1.5)) if rng.random() < 0.4 else 0.0,
        chorus_depth_ms=float(rng.uniform(1.0, 8.0)),
        chorus_speed_hz=float(rng.uniform(0.1, 1.0)),
        channel_volumes=tuple(int(v) for v in rng.integers(85, 128, size=n_channels)),
        channel_pans=tuple(int(v) for v in rng.integers(24, 105, size=n_channels)),
    )


def with_vibrato(settings: RenderSettings, style: VibratoStyle, rng: np.random.Generator) -> RenderSettings:
    """``settings`` with vibrato drawn from ``style`` (unchanged, and no random draw, when
    ``style.prob`` is 0)."""
    if style.prob <= 0.0 or rng.random() >= style.prob:
        return settings
    return replace(
        settings,
        vibrato_cents=float(rng.uniform(*style.cents)),
        vibrato_hz=float(rng.uniform(*style.rate_hz)),
        vibrato_delay_s=float(rng.uniform(*style.delay_s)),
    )


def with_slow_attacks(settings: RenderSettings, style: AttackStyle, rng: np.random.Generator) -> RenderSettings:
    """``settings`` with slow attacks drawn from ``style`` (unchanged, and no random draw,
    when ``style.prob`` is 0)."""
    if style.prob <= 0.0 or rng.random() >= style.prob:
        return settings
    return replace(settings, attack_s=float(rng.uniform(*style.attack_s)),
                   attack_floor=float(rng.uniform(*style.floor)))


def attack_swells(
    events: list[tuple[float, float, int, int, int]], programs: dict[int, int], settings: RenderSettings,
) -> list[tuple[int, int, int]]:
    """Expression (CC 11) events that make sustained instruments swell into their notes.

    Each channel whose program is in :data:`VIBRATO_PROGRAMS` drops to
    ``settings.attack_floor`` x 127 at each of its note-ons and rises linearly to 127 over
    ``settings.attack_s`` (10 ms steps), or until its next note-on.

    Returns:
        (sample, channel, value) sorted by sample; value in 0..127.
    """
    if settings.attack_s <= 0:
        return []
    rate = settings.sample_rate
    step = max(int(round(_BEND_STEP_S * rate)), 1)
    length = max(int(round(settings.attack_s * rate)), 1)
    floor = float(np.clip(settings.attack_floor, 0.0, 1.0))
    out = []
    for channel in sorted(programs):
        if programs[channel] not in VIBRATO_PROGRAMS:
            continue
        onsets = sorted({int(round(on * rate)) for on, _, c, *_ in events if c == channel})
        for index, start in enumerate(onsets):
            following = onsets[index + 1] if index + 1 < len(onsets) else None
            stop = start + length if following is None else min(start + length, following)
            for sample in range(start, stop, step):
                value = int(round(127 * (floor + (1.0 - floor) * (sample - start) / length)))
                out.append((sample, channel, min(value, 127)))
            if stop != following:            # a swell cut short hands over to the next one
                out.append((stop, channel, 127))
    return sorted(out)


def vibrato_bends(
    events: list[tuple[float, float, int, int, int]], programs: dict[int, int], settings: RenderSettings,
) -> list[tuple[int, int, int]]:
    """Pitch-wheel events that play vibrato on the sustained instruments.

    Each channel whose program is in :data:`VIBRATO_PROGRAMS` gets a sine of
    ``settings.vibrato_hz`` (+-5 % per channel, a phase of its own) whose depth grows from
    0 to ``settings.vibrato_cents`` over 0.25 s, starting ``vibrato_delay_s`` after each of
    its note-ons; the wheel returns to the centre after the channel's last note-off.

    Returns:
        (sample, channel, bend) sorted by sample; bend is signed (-8192..8191, 0 = centre).
    """
    if settings.vibrato_cents <= 0:
        return []
    rate = settings.sample_rate
    step = max(int(round(_BEND_STEP_S * rate)), 1)
    out = []
    for channel in sorted(programs):
        if programs[channel] not in VIBRATO_PROGRAMS:
            continue
        notes = sorted((on, off) for on, off, c, *_ in events if c == channel)
        if not notes:
            continue
        # a deterministic per-channel rate and phase, so the same settings render the same audio
        wobble = np.sin(1.7 * channel + 0.3)
        hz = settings.vibrato_hz * (1.0 + 0.05 * wobble)
        phase = 2.0 * np.pi * ((0.37 * channel) % 1.0)
        onsets = np.array([on for on, _ in notes])
        start, stop = int(round(notes[0][0] * rate)), int(round(max(off for _, off in notes) * rate))
        # a wheel update every step, and one at each note-on so that no note starts bent
        onset_samples = np.round(onsets * rate).astype(int)
        samples = np.union1d(np.arange(start, stop, step), onset_samples[onset_samples < stop])
        t = samples / rate
        since_on = t - onsets[np.maximum(np.searchsorted(onsets, t, side="right") - 1, 0)]
        depth = settings.vibrato_cents * np.clip((since_on - settings.vibrato_delay_s) / _VIBRATO_RAMP_S, 0.0, 1.0)
        cents = depth * np.sin(2.0 * np.pi * hz * t + phase)
        bends = np.clip(np.round(cents / _BEND_RANGE_CENTS * 8192.0), -8192, 8191).astype(int)
        previous = 0
        for sample, bend in zip(samples.tolist(), bends.tolist()):
            if bend != previous:
                out.append((sample, channel, bend))
                previous = bend
        if previous != 0:
            out.append((stop, channel, 0))
    return sorted(out)


def import_fluidsynth():
    """Import pyfluidsynth, or raise DataError saying what to install."""
    try:
        import fluidsynth
    except ImportError as exc:
        raise DataError(
            "FluidSynth is not available "
            f"({exc}); install the library with: apt-get install libfluidsynth3 "
            "(Debian package 'fluidsynth' pulls it in) and pip install pyfluidsynth"
        ) from None
    if not hasattr(fluidsynth, "Synth"):
        raise DataError(
            "the 'fluidsynth' module found is not pyfluidsynth; pip install pyfluidsynth"
        )
    return fluidsynth


def fluidsynth_cli() -> str | None:
    """Path of the FluidSynth command-line program, or None (only informative)."""
    return shutil.which("fluidsynth")


@dataclass
class _LoadedSoundfont:
    """A synthesizer with one soundfont loaded; ``frames``: frames it has rendered so far."""

    synth: object
    sfid: int
    frames: int = 0


class Renderer:
    """Renders note lists through soundfonts, keeping each one loaded between calls (one
    synthesizer per soundfont and rate, so items that alternate between soundfonts, as
    per-part stems do, load each file once).

    Not thread-safe; use one instance per worker process.
    """

    def __init__(self) -> None:
        self._fluidsynth = import_fluidsynth()
        self._synths: dict[tuple[str, int], _LoadedSoundfont] = {}
        self._current: _LoadedSoundfont | None = None

    def _synth_for(self, soundfont: str, sample_rate: int):
        key = (str(find_soundfont(soundfont)), int(sample_rate))
        if key not in self._synths:
            synth = self._fluidsynth.Synth(
                gain=0.2,
                samplerate=float(sample_rate),
                **{"synth.polyphony": 1024, "synth.cpu-cores": 1, "synth.reverb.active": 1},
            )
            sfid = synth.sfload(key[0])
            if sfid < 0:
                synth.delete()
                raise DataError(f"FluidSynth could not load soundfont {key[0]}")
            self._synths[key] = _LoadedSoundfont(synth, sfid)
        self._current = self._synths[key]
        return self._current.synth

    def close(self) -> None:
        """Release every loaded synthesizer and soundfont."""
        for loaded in self._synths.values():
            loaded.synth.delete()
        self._synths, self._current = {}, None

    def render(
        self,
        events: list[tuple[float, float, int, int, int]],
        programs: dict[int, int],
        settings: RenderSettings,
        presets: dict[int, int] | None = None,
        controls: list[tuple[float, int, int, int]] = (),
        n_samples: int | None = None,
        normalise: bool = True,
    ) -> np.ndarray:
        """Render notes to mono float32 audio.

        Args:
            events: (onset_s, offset_s, channel, pitch, velocity) per note; no two notes of
                the same channel and pitch may overlap (resolve them first).
            programs: 0-based GM program per MIDI channel used (never channel 9); decides
                vibrato and slow attacks.
            settings: soundfont, rate, effects and mix.
            presets: soundfont preset (bank 0) to select per channel, when it is not the
                GM program (a single-instrument soundfont holds its sound at preset 0).
            controls: (time_s, channel, controller, value) control changes, e.g. the
                sustain pedal (CC 64: 127 down, 0 up).
            n_samples: output length; default ceil((last offset + tail_s) * rate).
            normalise: peak-normalise to ``settings.peak``; otherwise keep the synth's level.

        Returns:
            (n_samples,) float32, peak-normalised to ``settings.peak`` when asked
            (silence stays silence).
        """
        rate = settings.sample_rate
        synth = self._synth_for(settings.soundfont, rate)
        self._reset(synth, settings, programs, presets)
        end_s = max((offset for _, offset, *_ in events), default=0.0)
        n_total = n_samples if n_samples is not None else int(math.ceil((end_s + settings.tail_s) * rate))
        timeline = []
        for time_s, channel, controller, value in controls:
            timeline.append((int(round(time_s * rate)), _CONTROL, channel, controller, value))
        for onset, offset, channel, pitch, velocity in events:
            timeline.append((int(round(onset * rate)), _NOTE_ON, channel, pitch, velocity))
            timeline.append((int(round(offset * rate)), _NOTE_OFF, channel, pitch, 0))
        for sample, channel, bend in vibrato_bends(events, programs, settings):
            timeline.append((sample, _BEND, channel, bend, 0))
        for sample, channel, value in attack_swells(events, programs, settings):
            timeline.append((sample, _EXPRESSION, channel, value, 0))
        timeline.sort()
        out = np.zeros((2, n_total), dtype=np.float32)
        position = 0
        for sample, kind, channel, value, velocity in timeline:
            sample = min(sample, n_total)
            position = self._write(synth, out, position, sample)
            if kind == _NOTE_ON:
                synth.noteon(channel, value, velocity)
            elif kind == _NOTE_OFF:
                synth.noteoff(channel, value)
            elif kind == _BEND:
                synth.pitch_bend(channel, value)
            elif kind == _EXPRESSION:
                synth.cc(channel, _CC_EXPRESSION, value)
            else:
                synth.cc(channel, value, velocity)
        for channel in programs:
            synth.cc(channel, _CC_SUSTAIN, 0)
            synth.cc(channel, _CC_ALL_NOTES_OFF, 0)
        self._write(synth, out, position, n_total)
        mono = out.mean(axis=0)
        peak = float(np.max(np.abs(mono))) if mono.size else 0.0
        if peak > 0 and normalise:
            mono *= settings.peak / peak
        return mono.astype(np.float32, copy=False)

    def _reset(self, synth, settings: RenderSettings, programs: dict[int, int],
               presets: dict[int, int] | None = None) -> None:
        synth.system_reset()
        synth.set_reverb(
            settings.reverb_room, settings.reverb_damping, settings.reverb_width, settings.reverb_level
        )
        synth.set_chorus(3, settings.chorus_level, settings.chorus_speed_hz, settings.chorus_depth_ms, 0)
        # FluidSynth starts notes at its next 64-frame block: end the flush on a block
        # boundary so every item's notes fall on the same block grid, whatever was rendered
        # before it (otherwise the same item renders differently in another worker).
        n_flush = int(_FLUSH_S * settings.sample_rate)
        n_flush += -(self._current.frames + n_flush) % _FLUID_BLOCK
        flush = np.zeros((2, n_flush), dtype=np.float32)
        self._write(synth, flush, 0, flush.shape[1])
        for channel, program in programs.items():
            if channel == 9:
                raise ValueError("channel 9 is the percussion channel")
            synth.program_select(channel, self._current.sfid, 0, (presets or {}).get(channel, program))
            if channel < len(settings.channel_volumes):
                synth.cc(channel, _CC_VOLUME, settings.channel_volumes[channel])
            if channel < len(settings.channel_pans):
                synth.cc(channel, _CC_PAN, settings.channel_pans[channel])

    def _write(self, synth, out: np.ndarray, start: int, stop: int) -> int:
        """Render frames [start, stop) into ``out`` (2, n); return ``stop``."""
        write_float = getattr(getattr(self._fluidsynth, "_fl", None), "fluid_synth_write_float", None)
        position = start
        while position < stop:
            n = min(_CHUNK_FRAMES, stop - position)
            if write_float is not None:
                left = np.zeros(n, dtype=np.float32)
                right = np.zeros(n, dtype=np.float32)
                write_float(
                    ctypes.c_void_p(synth.synth),
                    ctypes.c_int(n),
                    left.ctypes.data_as(ctypes.c_void_p),
                    ctypes.c_int(0),
                    ctypes.c_int(1),
                    right.ctypes.data_as(ctypes.c_void_p),
                    ctypes.c_int(0),
                    ctypes.c_int(1),
                )
                out[0, position : position + n] = left
                out[1, position : position + n] = right
            else:
                samples = np.asarray(synth.get_samples(n), dtype=np.float32).reshape(-1, 2) / 32768.0
                out[:, position : position + n] = samples.T
            position += n
            self._current.frames += n
        return stop
