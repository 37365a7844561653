"""Training-time audio augmentation (mild by default).

Works on mono float32 audio at any rate with a seeded ``numpy.random.Generator``. A pitch
shift changes the notes too: :func:`augment` returns the shift in semitones and
:func:`shift_notes` moves the labels to match. Heavy augmentation made a published CTC
model collapse to blanks, so every default here is small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amtcli.types import Note


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation.

    Attributes:
        gain_db: (low, high) gain in dB, always applied.
        noise_prob: probability of additive white noise.
        noise_snr_db: (low, high) signal-to-noise ratio of that noise in dB.
        eq_prob: probability of a spectral tilt.
        eq_tilt_db: largest tilt in dB between 0 Hz and the Nyquist frequency (+-).
        eq_curve_prob: probability of a random smooth EQ curve (body resonances,
            microphone colour): independent gains at ``eq_curve_points`` log-spaced
            frequencies from 50 Hz to the Nyquist frequency, interpolated in log frequency.
        eq_curve_db: largest gain of one control point in dB (+-).
        eq_curve_points: number of control points of that curve.
        reverb_prob: probability of a synthetic room (exponentially decaying noise).
        reverb_rt60_s: (low, high) reverberation time in seconds.
        reverb_wet: (low, high) wet/dry mix of the room.
        pitch_prob: probability of a pitch shift.
        max_pitch_semitones: largest shift, in whole semitones (+-).
    """

    gain_db: tuple[float, float] = (-6.0, 3.0)
    noise_prob: float = 0.3
    noise_snr_db: tuple[float, float] = (25.0, 45.0)
    eq_prob: float = 0.3
    eq_tilt_db: float = 6.0
    eq_curve_prob: float = 0.0
    eq_curve_db: float = 6.0
    eq_curve_points: int = 6
    reverb_prob: float = 0.2
    reverb_rt60_s: tuple[float, float] = (0.2, 0.8)
    reverb_wet: tuple[float, float] = (0.05, 0.3)
    pitch_prob: float = 0.0
    max_pitch_semitones: int = 1

    def __post_init__(self) -> None:
        for name in ("gain_db", "noise_snr_db", "reverb_rt60_s", "reverb_wet"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("noise_prob", "eq_prob", "eq_curve_prob", "reverb_prob", "pitch_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.max_pitch_semitones < 0 or self.eq_tilt_db < 0 or self.eq_curve_db < 0:
            raise ValueError("max_pitch_semitones, eq_tilt_db and eq_curve_db must be >= 0")
        for name in ("eq_curve_points", "max_pitch_semitones"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a whole number, got {getattr(self, name)!r}")
        if self.eq_curve_points < 2:
            raise ValueError(f"eq_curve_points must be at least 2, got {self.eq_curve_points}")
        for name in ("gain_db", "noise_snr_db", "reverb_rt60_s", "reverb_wet"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} range is reversed: {low} > {high}")


NO_AUGMENTATION = AugmentConfig(
    gain_db=(0.0, 0.0), noise_prob=0.0, eq_prob=0.0, eq_curve_prob=0.0, reverb_prob=0.0, pitch_prob=0.0
)


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db`` decibels."""
    return audio * np.float32(10 ** (gain_db / 20.0))


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white noise at ``snr_db`` below the signal's RMS (no-op on silence)."""
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) if audio.size else 0.0
    if rms == 0.0:
        return audio
    noise = rng.standard_normal(audio.shape).astype(np.float32)
    return audio + noise * np.float32(rms * 10 ** (-snr_db / 20.0))


def eq_tilt(audio: np.ndarray, tilt_db: float) -> np.ndarray:
    """Tilt the spectrum linearly in dB: 0 dB at 0 Hz to ``tilt_db`` at Nyquist."""
    spectrum = np.fft.rfft(audio)
    gains = 10 ** (np.linspace(0.0, tilt_db, len(spectrum)) / 20.0)
    return np.fft.irfft(spectrum * gains, n=len(audio)).astype(np.float32)


def eq_curve(audio: np.ndarray, sample_rate: int, gains_db: np.ndarray, low_hz: float = 50.0) -> np.ndarray:
    """Filter by a smooth EQ curve: ``gains_db[i]`` (dB) at log-spaced frequencies from
    ``low_hz`` to the Nyquist frequency, linear in log frequency between them and held
    flat below ``low_hz``. Output keeps the input's length."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), d=1.0 / sample_rate)
    points = np.geomspace(low_hz, sample_rate / 2.0, len(gains_db))
    curve_db = np.interp(np.log(np.maximum(freqs, low_hz)), np.log(points), gains_db)
    return np.fft.irfft(spectrum * 10 ** (curve_db / 20.0), n=len(audio)).astype(np.float32)


def room_reverb(
    audio: np.ndarray, sample_rate: int, rt60_s: float, wet: float, rng: np.random.Generator
) -> np.ndarray:
    """Convolve with exponentially decaying noise (a synthetic room); output keeps its length."""
    from scipy.signal import fftconvolve

    n = max(int(rt60_s * sample_rate), 1)
    t = np.arange(n) / sample_rate
    impulse = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    impulse /= np.sqrt(np.sum(impulse**2)) or 1.0
    reverberant = fftconvolve(audio, impulse)[: len(audio)]
    return ((1.0 - wet) * audio + wet * reverberant).astype(np.float32)


def pitch_shift(audio: np.ndarray, sample_rate: int, semitones: int) -> np.ndarray:
    """Shift pitch by whole semitones keeping the duration (librosa phase vocoder)."""
    if semitones == 0:
        return audio
    import librosa

    shifted = librosa.effects.pitch_shift(audio, sr=sample_rate, n_steps=semitones, res_type="soxr_hq")
    return shifted[: len(audio)].astype(np.float32)


def augment(
    audio: np.ndarray, sample_rate: int, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Apply a random augmentation. Returns (audio of the same length, pitch shift in semitones).

    Order: pitch shift, EQ tilt, EQ curve, room, gain, noise. The result is clipped to [-1, 1].
    """
    out = np.asarray(audio, dtype=np.float32)
    semitones = 0
    if config.max_pitch_semitones and rng.random() < config.pitch_prob:
        choices = [s for s in range(-config.max_pitch_semitones, config.max_pitch_semitones + 1) if s]
        semitones = int(rng.choice(choices))
        out = pitch_shift(out, sample_rate, semitones)
    if rng.random() < config.eq_prob:
        out = eq_tilt(out, float(rng.uniform(-config.eq_tilt_db, config.eq_tilt_db)))
    if config.eq_curve_prob and rng.random() < config.eq_curve_prob:
        gains = rng.uniform(-config.eq_curve_db, config.eq_curve_db, config.eq_curve_points)
        out = eq_curve(out, sample_rate, gains)
    if rng.random() < config.reverb_prob:
        out = room_reverb(
            out, sample_rate, float(rng.uniform(*config.reverb_rt60_s)), float(rng.uniform(*config.reverb_wet)), rng
        )
    out = apply_gain(out, float(rng.uniform(*config.gain_db)))
    if rng.random() < config.noise_prob:
        out = add_noise(out, float(rng.uniform(*config.noise_snr_db)), rng)
    return np.clip(out, -1.0, 1.0).astype(np.float32), semitones


def shift_notes(notes: list[Note], semitones: int, low: int = 21, high: int = 108) -> list[Note]:
    """Move notes by ``semitones``; notes that leave [low, high] are dropped."""
    out = []
    for note in notes:
        pitch = note.pitch + semitones
        if low <= pitch <= high:
            out.append(
                Note(note.onset_s, note.offset_s, pitch, note.velocity, note.program, note.confidence)
            )
    return out
