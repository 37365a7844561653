"""Per-stem timbre: a random spectral envelope applied to one rendered part.

Real instruments differ from soundfont samples in their spectral envelope: body
resonances (formant-like peaks), brightness, and, for low reeds and bassoons, a
fundamental much weaker than the next partials. :func:`draw_timbre` draws such an
envelope for one stem and :func:`apply_timbre` applies it as a zero-phase filter (one
real FFT of the whole stem), before the stems are mixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TimbreStyle:
    """How often and how strongly each stem's spectral envelope is changed.

    Attributes:
        prob: probability that a stem gets a random envelope at all.
        gain_db: (low, high) stem level in dB before mixing (drawn for every stem).
        tilt_db: largest brightness tilt in dB per octave away from 1 kHz.
        peaks: (low, high) number of formant-like peaks or dips.
        peak_db: largest height of a peak (or depth of a dip) in dB.
        rolloff_prob: probability, for a stem whose median pitch is below ``low_pitch``,
            of a low-frequency roll-off that weakens its fundamentals (half that
            probability for higher stems).
        rolloff_db: (low, high) attenuation in dB well below the roll-off corner.
        low_pitch: MIDI pitch below which a stem counts as low.
    """

    prob: float = 0.0
    gain_db: tuple[float, float] = (-6.0, 6.0)
    tilt_db: float = 3.0
    peaks: tuple[int, int] = (1, 3)
    peak_db: float = 9.0
    rolloff_prob: float = 0.6
    rolloff_db: tuple[float, float] = (6.0, 18.0)
    low_pitch: int = 60

    def __post_init__(self) -> None:
        for name in ("gain_db", "peaks", "rolloff_db"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"timbre {name} must be a (low, high) range")
            object.__setattr__(self, name, (type(low)(low), type(high)(high)))
        if not (0.0 <= self.prob <= 1.0 and 0.0 <= self.rolloff_prob <= 1.0):
            raise ValueError("timbre prob and rolloff_prob must be in [0, 1]")
        if self.peaks[0] < 0 or self.tilt_db < 0 or self.peak_db < 0 or self.rolloff_db[0] < 0:
            raise ValueError("timbre peaks, tilt_db, peak_db and rolloff_db must not be negative")


@dataclass(frozen=True)
class StemTimbre:
    """One stem's envelope.

    Attributes:
        gain_db: overall level in dB.
        tilt_db: dB per octave above 1 kHz (negative: darker).
        peaks: (centre_hz, height_db, width_octaves) bell curves in log frequency.
        rolloff_hz: corner of the low-frequency roll-off (0: none).
        rolloff_db: attenuation in dB far below the corner (a second-order shelf).
    """

    gain_db: float = 0.0
    tilt_db: float = 0.0
    peaks: tuple[tuple[float, float, float], ...] = ()
    rolloff_hz: float = 0.0
    rolloff_db: float = 0.0

    def describe(self) -> str:
        """Short text for metadata.csv."""
        parts = [f"gain={self.gain_db:.1f}dB"]
        if self.tilt_db or self.peaks:
            parts.append(f"tilt={self.tilt_db:.1f}dB/oct")
            parts.append("peaks=" + "/".join(f"{hz:.0f}Hz{db:+.0f}dB" for hz, db, _ in self.peaks))
        if self.rolloff_hz:
            parts.append(f"rolloff={self.rolloff_hz:.0f}Hz-{self.rolloff_db:.0f}dB")
        return ",".join(parts)


def draw_timbre(style: TimbreStyle, median_pitch: float, rng: np.random.Generator) -> StemTimbre:
    """Draw one stem's envelope (only a gain, when ``style.prob`` says no envelope)."""
    gain = float(rng.uniform(*style.gain_db))
    if style.prob <= 0 or rng.random() >= style.prob:
        return StemTimbre(gain_db=gain)
    n_peaks = int(rng.integers(style.peaks[0], style.peaks[1] + 1))
    peaks = tuple(
        (float(2 ** rng.uniform(np.log2(250.0), np.log2(4000.0))), float(rng.uniform(-1, 1) * style.peak_db),
         float(rng.uniform(0.3, 1.2)))
        for _ in range(n_peaks)
    )
    tilt = float(rng.uniform(-1, 1) * style.tilt_db)
    chance = style.rolloff_prob if median_pitch < style.low_pitch else style.rolloff_prob / 2
    rolloff_hz = rolloff_db = 0.0
    if rng.random() < chance:
        fundamental_hz = 440.0 * 2 ** ((median_pitch - 69) / 12)
        rolloff_hz = float(fundamental_hz * rng.uniform(1.2, 2.5))
        rolloff_db = float(rng.uniform(*style.rolloff_db))
    return StemTimbre(gain_db=gain, tilt_db=tilt, peaks=peaks, rolloff_hz=rolloff_hz, rolloff_db=rolloff_db)


def envelope_db(timbre: StemTimbre, freqs_hz: np.ndarray) -> np.ndarray:
    """Gain in dB of ``timbre`` at each frequency (same shape as ``freqs_hz``)."""
    octaves = np.log2(np.maximum(freqs_hz, 1.0) / 1000.0)
    gain = timbre.gain_db + timbre.tilt_db * octaves
    for centre_hz, height_db, width in timbre.peaks:
        gain = gain + height_db * np.exp(-0.5 * ((octaves - np.log2(centre_hz / 1000.0)) / (width / 2)) ** 2)
    if timbre.rolloff_hz > 0:
        ratio = np.maximum(freqs_hz, 1e-3) / timbre.rolloff_hz
        gain = gain - timbre.rolloff_db / (1.0 + ratio ** 4)
    return gain


def apply_timbre(audio: np.ndarray, sample_rate: int, timbre: StemTimbre) -> np.ndarray:
    """Filter a mono stem (n_samples,) float32 with ``timbre`` (zero phase); same shape."""
    if not len(audio):
        return audio
    spectrum = np.fft.rfft(audio.astype(np.float64))
    freqs = np.fft.rfftfreq(len(audio), 1.0 / sample_rate)
    spectrum *= 10.0 ** (envelope_db(timbre, freqs) / 20.0)
    return np.fft.irfft(spectrum, n=len(audio)).astype(np.float32)
