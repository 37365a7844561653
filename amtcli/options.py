"""Options as frozen dataclasses, validated once on creation."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from amtcli.errors import ConfigError


@dataclass(frozen=True)
class FeatureSpec:
    """How a model turns audio into features.

    Attributes:
        sample_rate: audio rate in Hz the model expects; input is resampled to it.
        hop_samples: samples between frames (frame rate = sample_rate / hop_samples).
        kind: "logmel" (n_fft, n_mels, fmin_hz, fmax_hz used), "cqt", "hcqt" (a
            constant-Q filterbank per harmonic) or "hcqt_shifted" (one constant-Q
            spectrum, each harmonic channel a whole-bin shift of it: the same input at a
            fraction of the cost; see :mod:`amtcli.features`).
        n_fft: FFT size in samples for "logmel".
        n_bins: mel bands (logmel) or CQT bins (cqt/hcqt).
        fmin_hz, fmax_hz: frequency range in Hz.
        bins_per_octave: CQT resolution.
        harmonics: HCQT harmonics (channels); (1.0,) for a plain CQT.
    """

    sample_rate: int = 16000
    hop_samples: int = 320
    kind: str = "logmel"
    n_fft: int = 2048
    n_bins: int = 229
    fmin_hz: float = 30.0
    fmax_hz: float = 8000.0
    bins_per_octave: int = 36
    harmonics: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.hop_samples <= 0:
            raise ConfigError("sample_rate and hop_samples must be positive")
        if self.kind not in ("logmel", "cqt", "hcqt", "hcqt_shifted"):
            raise ConfigError(f"unknown feature kind {self.kind!r}; use logmel, cqt, hcqt or hcqt_shifted")
        if not 0 < self.fmin_hz < self.fmax_hz <= self.sample_rate / 2:
            raise ConfigError("need 0 < fmin_hz < fmax_hz <= sample_rate / 2")
        object.__setattr__(self, "harmonics", tuple(float(h) for h in self.harmonics))

    @property
    def frame_rate_hz(self) -> float:
        return self.sample_rate / self.hop_samples

    def to_dict(self) -> dict:
        out = asdict(self)
        out["harmonics"] = list(self.harmonics)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSpec":
        data = dict(data)
        if "harmonics" in data:
            data["harmonics"] = tuple(data["harmonics"])
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"bad feature spec: {exc}") from None


@dataclass(frozen=True)
class WindowSpec:
    """Windowing on the frame grid: windows and hops are whole numbers of frames.

    Attributes:
        hop_samples: samples per frame (from the FeatureSpec).
        window_frames: frames per window (10 s at 50 frames/s = 500).
        hop_frames: frames between window starts (5 s = 250).
    """

    hop_samples: int
    window_frames: int
    hop_frames: int

    def __post_init__(self) -> None:
        if self.hop_samples <= 0 or self.window_frames <= 0 or self.hop_frames <= 0:
            raise ConfigError("window sizes must be positive")
        if self.hop_frames > self.window_frames:
            raise ConfigError("window hop must not exceed the window length (gaps would be lost)")
        if (self.window_frames - self.hop_frames) % 2:
            raise ConfigError("window overlap must be an even number of frames (centre crop)")

    @classmethod
    def from_seconds(cls, features: FeatureSpec, window_s: float = 10.0, hop_s: float = 5.0) -> "WindowSpec":
        """Build from seconds; both must be whole numbers of frames for ``features``."""
        window_frames = window_s * features.frame_rate_hz
        hop_frames = hop_s * features.frame_rate_hz
        for name, value in (("window", window_frames), ("hop", hop_frames)):
            if abs(value - round(value)) > 1e-9:
                raise ConfigError(
                    f"{name} of {window_s if name == 'window' else hop_s} s is not a whole number "
                    f"of frames at {features.frame_rate_hz:g} frames/s"
                )
        return cls(features.hop_samples, int(round(window_frames)), int(round(hop_frames)))

    @property
    def window_samples(self) -> int:
        return self.window_frames * self.hop_samples

    @property
    def hop_window_samples(self) -> int:
        return self.hop_frames * self.hop_samples

    @property
    def margin_frames(self) -> int:
        """Frames dropped at each inner window edge when stitching."""
        return (self.window_frames - self.hop_frames) // 2


@dataclass(frozen=True)
class DecodeOptions:
    """Turning frame posteriors into notes.

    Attributes:
        onset_threshold: onset probability a peak must reach to start a note.
        frame_threshold: frame probability that keeps a note sounding.
        min_duration_s: notes shorter than this are dropped (frame-only decoding).
        gap_fill_s: gaps shorter than this inside a note are filled (frame-only decoding).
        reonset_threshold: for frame-only decoding, a rise in frame probability by this
            much within a held note splits it (re-attack); 0 disables.
        note_start: for models with an onset head, "onset" starts notes only at onsets
            (Onsets-and-Frames rule); "frame" starts them where the frame probability
            rises and uses the onset head only to re-attack a held note.
        onset_support: frame-start decoding of models with an onset head: a rise of the
            frame probability starts a note only if the key's onset probability reaches
            this value within :data:`~amtcli.decoding.frames.ONSET_SUPPORT_S` before or
            after it, or if the rise is sharp (a jump of ``reonset_threshold`` in one
            frame starts a note anyway). Frames that fade in with no attack, such as a
            partial of a held note, start nothing; 0: off.
        beam_width: CTC models: 1 decodes the best path (greedy), more runs a prefix
            beam search with that many prefixes; seq2seq models: 1 decodes greedily,
            more runs a beam search over tokens with that many beams per window.
        blank_offset: CTC models: subtracted from the blank's log-probability before
            decoding (> 0 emits more tokens; tuned on validation for length ratio ~1).
        token_grammar: seq2seq models: decode under
            :class:`~amtcli.families.seq2seq.TokenGrammar` (no echoed NOTE_ON within
            50 ms, no NOTE_OFF of a silent pitch the window already mentioned).
        confirm_threshold: seq2seq models: keep a NOTE_ON only if the encoder's
            frame-activity head gives its key at least this probability within 40 ms
            before to 60 ms after it (0 keeps every NOTE_ON).
        end_threshold: seq2seq models: end each note where that head's activity for its
            key falls below this, if before its NOTE_OFF (0: notes end at NOTE_OFF).
        onset_confirm_threshold: seq2seq models: keep a NOTE_ON only if the encoder's
            onset-activity head also gives its key at least this probability in that
            span (0: no onset test). That head's peaks are low (a median 0.32 at
            labelled onsets), so useful values are around 0.1-0.3.
        rise_threshold: seq2seq models: keep a NOTE_ON only if its key's frame activity
            in that span is at least this much above its lowest value from 200 ms to 40 ms
            before it, looking back no further than the key's last kept NOTE_ON (a new
            attack, not a key already sounding or a note broken into pieces; 0: no rise
            test).
        reattack_s: seq2seq models: a NOTE_ON less than this many seconds after its key's
            last kept NOTE_ON in the window is no new attack and is dropped (a slow attack
            that the decoder reads twice; 0: no such test).
        fusion_weight: seq2seq models: while decoding, add this weight x the rise of each
            key's frame activity at the decoder's current time (the rise test's measure,
            0-1, looking back no further than the key's latest NOTE_ON in the sequence,
            kept by the rules later or not) to the NOTE_ON logits, so the decoder prefers
            keys that start sounding there (shallow fusion with the frame detector; 0: off).
        fusion_before_s, fusion_after_s: the rise is measured from the key's highest
            activity within this many seconds before to this many after the current time
            (its lowest is looked for from 200 ms before up to that span).
    """

    onset_threshold: float = 0.5
    frame_threshold: float = 0.5
    min_duration_s: float = 0.05
    gap_fill_s: float = 0.04
    reonset_threshold: float = 0.0
    note_start: str = "onset"
    onset_support: float = 0.0
    beam_width: int = 1
    blank_offset: float = 0.0
    token_grammar: bool = True
    confirm_threshold: float = 0.0
    end_threshold: float = 0.0
    onset_confirm_threshold: float = 0.0
    rise_threshold: float = 0.0
    reattack_s: float = 0.0
    fusion_weight: float = 0.0
    fusion_before_s: float = 0.02
    fusion_after_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("confirm_threshold", "end_threshold", "onset_confirm_threshold", "rise_threshold",
                     "onset_support"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.beam_width < 1:
            raise ConfigError(f"beam_width must be at least 1, got {self.beam_width}")
        if not 0.0 <= self.reattack_s <= 0.5:
            raise ConfigError(f"reattack_s must be in [0, 0.5] seconds, got {self.reattack_s}")
        if not 0.0 <= self.fusion_weight <= 20.0:
            raise ConfigError(f"fusion_weight must be in [0, 20], got {self.fusion_weight}")
        for name in ("fusion_before_s", "fusion_after_s"):
            if not 0.0 <= getattr(self, name) <= 0.1:
                raise ConfigError(f"{name} must be in [0, 0.1] seconds, got {getattr(self, name)}")
        if self.fusion_weight > 0 and self.fusion_before_s + self.fusion_after_s < 0.02:
            raise ConfigError("fusion_before_s + fusion_after_s must be at least 0.02 s so that the fusion window "
                              f"spans a frame of activity, got {self.fusion_before_s + self.fusion_after_s:g}")
        if self.note_start not in ("onset", "frame"):
            raise ConfigError(f"note_start must be 'onset' or 'frame', got {self.note_start!r}")
        for name in ("onset_threshold", "frame_threshold"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value}")
        if self.min_duration_s < 0 or self.gap_fill_s < 0 or self.reonset_threshold < 0:
            raise ConfigError("durations and thresholds must not be negative")
