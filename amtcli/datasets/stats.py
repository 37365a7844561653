"""Numbers that describe a MusicNet-layout dataset (ours or the real one).

Used by ``amtcli data stats`` and to write the dataset card ``DATASET.md``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amtcli.datasets.layout import musicnet_pairs, musicnet_splits
from amtcli.datasets.musicnet import read_musicnet_labels
from amtcli.errors import AmtError, AudioError, DataError
from amtcli.instruments import program_name
from amtcli.types import Note

_POLYPHONY_HOP_S = 0.05  #: Grid used to measure polyphony, in seconds.


@dataclass(frozen=True)
class SplitStats:
    """Numbers of one split.

    Attributes:
        items: number of (audio, labels) pairs.
        hours: total audio duration in hours.
        notes: number of labelled notes.
        instruments: notes per instrument name.
        pitches: (128,) notes per MIDI pitch.
        mean_polyphony: mean number of sounding notes over time where any note sounds.
        max_polyphony: largest number of notes sounding at once.
    """

    items: int
    hours: float
    notes: int
    instruments: dict[str, int]
    pitches: np.ndarray
    mean_polyphony: float
    max_polyphony: int


@dataclass(frozen=True)
class DatasetStats:
    """Per-split numbers of a dataset and their total (``splits['all']``); ``skipped``:
    one line per item left out because its audio or labels could not be read (only with
    ``dataset_stats(..., skip_bad=True)``)."""

    root: Path
    splits: dict[str, SplitStats] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    @property
    def total(self) -> SplitStats:
        return self.splits["all"]


def _audio_seconds(path: Path) -> float:
    import soundfile

    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise AudioError(f"{path}: cannot read audio ({exc})") from None
    return info.frames / info.samplerate


def _polyphony(notes: list[Note]) -> tuple[float, int, float]:
    """(sum of sounding-note counts, max count, number of busy frames) on a 50 ms grid."""
    if not notes:
        return 0.0, 0, 0.0
    end = max(n.offset_s for n in notes)
    counts = np.zeros(int(end / _POLYPHONY_HOP_S) + 2, dtype=np.int32)
    for note in notes:
        a = int(note.onset_s / _POLYPHONY_HOP_S)
        b = max(int(note.offset_s / _POLYPHONY_HOP_S), a + 1)
        counts[a:b] += 1
    busy = counts > 0
    return float(counts[busy].sum()), int(counts.max()), float(busy.sum())


def _split_stats(pairs: list[tuple[Path, Path]],
                 skipped: list[str] | None = None) -> tuple[SplitStats, tuple[float, float]]:
    seconds, n_notes, items = 0.0, 0, 0
    instruments: Counter[str] = Counter()
    pitches = np.zeros(128, dtype=np.int64)
    poly_sum, poly_max, busy = 0.0, 0, 0.0
    for audio, labels in pairs:
        try:
            duration = _audio_seconds(audio)
            if duration <= 0:
                raise AudioError(f"{audio}: contains no audio samples")
            notes = read_musicnet_labels(labels)
        except AmtError as exc:
            if skipped is None:
                raise
            skipped.append(str(exc))
            continue
        items += 1
        seconds += duration
        n_notes += len(notes)
        for note in notes:
            instruments[program_name(note.program) or "unknown"] += 1
            pitches[note.pitch] += 1
        s, m, b = _polyphony(notes)
        poly_sum, poly_max, busy = poly_sum + s, max(poly_max, m), busy + b
    stats = SplitStats(
        items=items, hours=seconds / 3600.0, notes=n_notes,
        instruments=dict(instruments.most_common()), pitches=pitches,
        mean_polyphony=poly_sum / busy if busy else 0.0, max_polyphony=poly_max,
    )
    return stats, (poly_sum, busy)


def dataset_stats(root: str | os.PathLike, skip_bad: bool = False) -> DatasetStats:
    """Hours, notes, instrument and pitch histograms and polyphony of every split.

    Raises DataError if ``root`` has no ``<split>_data``/``<split>_labels`` folders, and
    LabelError or AudioError naming a bad file, unless ``skip_bad``: then such items are
    left out and listed in ``skipped``.
    """
    root = Path(root)
    names = musicnet_splits(root)
    if not names:
        raise DataError(f"{root} has no <split>_data/ and <split>_labels/ folders (MusicNet layout)")
    splits: dict[str, SplitStats] = {}
    skipped: list[str] | None = [] if skip_bad else None
    poly_sum = busy = 0.0
    for name in names:
        splits[name], (s, b) = _split_stats(musicnet_pairs(root, name), skipped)
        poly_sum, busy = poly_sum + s, busy + b
    parts = list(splits.values())
    instruments: Counter[str] = Counter()
    for part in parts:
        instruments.update(part.instruments)
    splits["all"] = SplitStats(
        items=sum(p.items for p in parts), hours=sum(p.hours for p in parts),
        notes=sum(p.notes for p in parts), instruments=dict(instruments.most_common()),
        pitches=sum((p.pitches for p in parts), np.zeros(128, dtype=np.int64)),
        mean_polyphony=poly_sum / busy if busy else 0.0,
        max_polyphony=max((p.max_polyphony for p in parts), default=0),
    )
    return DatasetStats(root=root, splits=splits, skipped=tuple(skipped or ()))


def octave_histogram(pitches: np.ndarray) -> list[tuple[str, int]]:
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    rows = []
    for low in range(12, 120, 12):
        count = int(pitches[low : low + 12].sum())
        if count:
            rows.append((f"{names[0]}{low // 12 - 1}-{names[-1]}{low // 12 - 1} (MIDI {low}-{low + 11})", count))
    below = int(pitches[:12].sum()) + int(pitches[120:].sum())
    if below:
        rows.append(("outside C0-B8", below))
    return rows


def format_card(stats: DatasetStats) -> str:
    """Markdown tables of the numbers (the statistics part of ``DATASET.md``)."""
    lines = ["| split | items | hours | notes | mean polyphony | max polyphony |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in stats.splits.items():
        lines.append(
            f"| {name} | {s.items} | {s.hours:.2f} | {s.notes:,} | {s.mean_polyphony:.2f} | {s.max_polyphony} |"
        )
    total = stats.total
    lines += ["", "### Instruments (notes)", "", "| instrument | notes | share |", "|---|---:|---:|"]
    for name, count in total.instruments.items():
        lines.append(f"| {name} | {count:,} | {count / max(total.notes, 1):.1%} |")
    lines += ["", "### Pitches (notes per octave)", "", "| octave | notes | share |", "|---|---:|---:|"]
    for label, count in octave_histogram(total.pitches):
        lines.append(f"| {label} | {count:,} | {count / max(total.notes, 1):.1%} |")
    used = np.nonzero(total.pitches)[0]
    if len(used):
        lines += ["", f"Lowest pitch {int(used[0])}, highest {int(used[-1])} (MIDI numbers)."]
    return "\n".join(lines) + "\n"
