"""Training examples: recordings held in memory, random frame-aligned crops."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amtcli.audio import load_audio
from amtcli.datasets.augment import AugmentConfig, augment, shift_notes
from amtcli.errors import DataError
from amtcli.options import FeatureSpec
from amtcli.references import load_notes
from amtcli.training.targets import frame_targets
from amtcli.types import Note


@dataclass(frozen=True)
class Recording:
    """One labelled recording: mono audio at the model rate and its notes."""

    name: str
    samples: np.ndarray
    notes: tuple[Note, ...]


def split_pairs(dataset: Path, split: str) -> list[tuple[Path, Path]]:
    """(audio, labels) pairs of a MusicNet-layout split, sorted by id."""
    from amtcli.datasets.layout import musicnet_pairs

    pairs = musicnet_pairs(dataset, split)
    if not pairs:
        raise DataError(f"{dataset}: split {split!r} has no audio/label pairs")
    return pairs


def load_recordings(pairs: list[tuple[Path, Path]], features: FeatureSpec, max_s: float | None = None) -> list[Recording]:
    """Load each pair (audio resampled to the model rate), optionally cut to ``max_s`` seconds."""
    recordings = []
    for audio_path, label_path in pairs:
        samples = load_audio(audio_path, features.sample_rate).samples
        notes = load_notes(label_path)
        if max_s is not None:
            samples = samples[: int(max_s * features.sample_rate)]
            end = len(samples) / features.sample_rate
            notes = [n for n in notes if n.onset_s < end]
        recordings.append(Recording(audio_path.stem, samples, tuple(notes)))
    return recordings


class CropSampler:
    """Draws random crops of ``crop_frames`` frames, starting on the frame grid.

    Recordings are chosen with probability proportional to their length. With
    ``augment_config``, each crop is augmented and pitch-shifted crops get their
    labels shifted to match. ``reattack_gap_frames`` is passed to
    :func:`~amtcli.training.targets.frame_targets`; ``note_targets(notes, start_s,
    duration_s) -> {name: array}`` adds targets made from the crop's notes.
    """

    def __init__(self, recordings: list[Recording], features: FeatureSpec, crop_frames: int,
                 rng: np.random.Generator, augment_config: AugmentConfig | None = None,
                 reattack_gap_frames: int = 0, note_targets=None):
        self.recordings = recordings
        self.features = features
        self.crop_frames = crop_frames
        self.rng = rng
        self.augment_config = augment_config
        self.reattack_gap_frames = reattack_gap_frames
        self.note_targets = note_targets
        lengths = np.array([len(r.samples) for r in recordings], dtype=float)
        self.weights = lengths / lengths.sum()

    def batch(self, size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Audio (size, crop_frames * hop) float32 and targets, each (size, crop_frames, 88)."""
        hop = self.features.hop_samples
        n_samples = self.crop_frames * hop
        audio = np.zeros((size, n_samples), dtype=np.float32)
        targets: dict[str, list[np.ndarray]] = {}
        for i in range(size):
            rec = self.recordings[self.rng.choice(len(self.recordings), p=self.weights)]
            max_start = max(0, (len(rec.samples) - n_samples) // hop)
            start_frame = int(self.rng.integers(0, max_start + 1))
            clip = rec.samples[start_frame * hop : start_frame * hop + n_samples]
            notes = list(rec.notes)
            if self.augment_config is not None:
                clip, shift = augment(clip, self.features.sample_rate, self.augment_config, self.rng)
                if shift:
                    notes = shift_notes(notes, shift)
            audio[i, : len(clip)] = clip[:n_samples]
            start_s = start_frame / self.features.frame_rate_hz
            targets_now = frame_targets(notes, start_s, self.crop_frames, self.features.frame_rate_hz,
                                        self.reattack_gap_frames)
            if self.note_targets is not None:
                targets_now.update(self.note_targets(notes, start_s, self.crop_frames / self.features.frame_rate_hz))
            for key, value in targets_now.items():
                targets.setdefault(key, []).append(value)
        return audio, {key: np.stack(value) for key, value in targets.items()}

