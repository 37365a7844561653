"""Shared fixtures: tiny synthetic datasets and random-initialised checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from amtcli.datasets.musicnet import write_musicnet_labels
from amtcli.types import Note, midi_to_hz

torch.set_num_threads(1)

RATE = 16000


def harmonic_tone(pitch: int, seconds: float, rate: int = RATE) -> np.ndarray:
    """A decaying harmonic tone (3 partials) of ``pitch``, float32 (n,)."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = float(midi_to_hz(pitch))
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
    return (0.2 * wave * np.exp(-2.0 * t)).astype(np.float32)


def render_notes(notes: list[Note], seconds: float, rate: int = RATE) -> np.ndarray:
    """Sum of harmonic tones for ``notes``, float32 (seconds * rate,)."""
    audio = np.zeros(int(seconds * rate), dtype=np.float32)
    for note in notes:
        start = int(note.onset_s * rate)
        tone = harmonic_tone(note.pitch, note.duration_s, rate)[: len(audio) - start]
        audio[start : start + len(tone)] += tone
    return audio


def random_notes(rng: np.random.Generator, seconds: float) -> list[Note]:
    """A simple melody of non-overlapping notes (MIDI 48..83) filling ``seconds``."""
    notes, t = [], 0.1
    while t < seconds - 0.5:
        length = float(rng.uniform(0.2, 0.5))
        notes.append(Note(round(t, 3), round(t + length, 3), int(rng.integers(48, 84)), program=0))
        t += length + 0.05
    return notes


def make_dataset(root: Path, files_per_split: int = 2, seconds: float = 6.0, seed: int = 0) -> Path:
    """A MusicNet-layout dataset of harmonic-tone melodies: <split>_data/*.flac + <split>_labels/*.csv."""
    rng = np.random.default_rng(seed)
    for split in ("train", "validation", "test"):
        (root / f"{split}_data").mkdir(parents=True, exist_ok=True)
        for i in range(files_per_split):
            notes = random_notes(rng, seconds)
            sf.write(root / f"{split}_data" / f"{split}{i}.flac", render_notes(notes, seconds), RATE)
            write_musicnet_labels(root / f"{split}_labels" / f"{split}{i}.csv", notes)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny_dataset"))


@pytest.fixture(scope="session")
def random_onf_checkpoint(tmp_path_factory) -> Path:
    """A random-initialised, small onf checkpoint folder."""
    from amtcli.checkpoint import save_checkpoint
    from amtcli.families.onsets_frames import OnsetsFrames, OnsetsFramesConfig

    torch.manual_seed(0)
    config = OnsetsFramesConfig(conv_channels=4, model_dim=32, lstm_units=8)
    folder = tmp_path_factory.mktemp("onf_random")
    save_checkpoint(folder, "onf", config.to_dict(), OnsetsFrames(config))
    return folder
