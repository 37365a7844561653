"""Find (audio, labels) pairs in the dataset layouts we read.

- MusicNet layout: ``<split>_data/ID.(flac|wav)`` with ``<split>_labels/ID.csv`` (our
  synthetic corpus uses it too).
- MAESTRO layout: audio + MIDI pairs listed in ``maestro-v*.csv`` or ``.json`` with a
  ``split`` column (train / validation / test).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from amtcli.errors import DataError

AUDIO_SUFFIXES = (".flac", ".wav")  #: Audio formats of the MusicNet layout, in order of preference.
MUSICNET_SPLITS = ("train", "validation", "test")


def musicnet_splits(root: str | os.PathLike) -> list[str]:
    """Split names present under ``root`` (any ``X_data`` with a matching ``X_labels``)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    found = [
        p.name[: -len("_data")]
        for p in root.iterdir()
        if p.is_dir() and p.name.endswith("_data") and (root / (p.name[: -len("_data")] + "_labels")).is_dir()
    ]
    known = [s for s in MUSICNET_SPLITS if s in found]
    return known + sorted(s for s in found if s not in MUSICNET_SPLITS)


def musicnet_pairs(root: str | os.PathLike, split: str) -> list[tuple[Path, Path]]:
    """(audio path, label path) of every item of one split, sorted by id.

    Items with audio but no labels (or labels but no audio) are left out; temporary files
    of an interrupted run (names starting with '.') are ignored. Raises DataError if the
    split's folders are missing.
    """
    root = Path(root)
    data_dir, label_dir = root / f"{split}_data", root / f"{split}_labels"
    if not data_dir.is_dir() or not label_dir.is_dir():
        raise DataError(f"{root} has no {split}_data/ and {split}_labels/ folders "
                        "(the splits of a MusicNet-layout dataset are train, validation and test)")
    audio: dict[str, Path] = {}
    for path in sorted(data_dir.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        current = audio.get(path.stem)
        if current is None or AUDIO_SUFFIXES.index(path.suffix.lower()) < AUDIO_SUFFIXES.index(current.suffix.lower()):
            audio[path.stem] = path
    pairs = []
    for stem in sorted(audio):
        labels = label_dir / f"{stem}.csv"
        if labels.is_file():
            pairs.append((audio[stem], labels))
    return pairs


def musicnet_left_out(root: str | os.PathLike, split: str,
                      pairs: list[tuple[Path, Path]] | None = None) -> list[str]:
    """One line per file of a split that :func:`musicnet_pairs` leaves out: audio without
    labels, labels without audio, and a second audio file of one id (the one not used).
    ``pairs``: that function's result, when the caller has it."""
    root = Path(root)
    data_dir, label_dir = root / f"{split}_data", root / f"{split}_labels"
    used = {audio for audio, _ in (musicnet_pairs(root, split) if pairs is None else pairs)}
    used_stems = {audio.stem for audio in used}
    lines = []
    for path in sorted(data_dir.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in AUDIO_SUFFIXES or path in used:
            continue
        if path.stem in used_stems:
            chosen = next(audio for audio in used if audio.stem == path.stem)
            lines.append(f"{path}: not scored, {chosen.name} has the same id")
        else:
            lines.append(f"{path}: no labels ({label_dir / (path.stem + '.csv')})")
    for path in sorted(label_dir.glob("*.csv")):
        if not path.name.startswith(".") and path.stem not in used_stems:
            lines.append(f"{path}: no audio in {data_dir}")
    return lines


def find_maestro_metadata(root: str | os.PathLike) -> Path:
    """The newest ``maestro-v*.csv`` / ``.json`` in ``root``. Raises DataError if none."""
    root = Path(root)
    candidates = sorted(root.glob("maestro-v*.csv")) + sorted(root.glob("maestro-v*.json"))
    if not candidates:
        raise DataError(f"{root} has no maestro-v*.csv or maestro-v*.json metadata file")
    return sorted(candidates, key=lambda p: (p.stem, p.suffix != ".csv"))[-1]


def _maestro_rows(meta: Path) -> list[dict[str, str]]:
    try:
        if meta.suffix == ".csv":
            with open(meta, newline="", encoding="utf-8") as handle:
                return list(csv.DictReader(handle))
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise DataError(f"cannot read {meta}: {exc}") from None
    if isinstance(data, list):
        return [{k: str(v) for k, v in row.items()} for row in data]
    if isinstance(data, dict) and "split" in data:
        # Column-oriented JSON (v2/v3): {"split": {"0": "train", ...}, "audio_filename": {...}}
        keys = list(data["split"].keys())
        return [{column: str(values.get(k, "")) for column, values in data.items()} for k in keys]
    raise DataError(f"{meta}: unrecognised MAESTRO metadata layout")


def maestro_pairs(root: str | os.PathLike, split: str) -> list[tuple[Path, Path]]:
    """(audio path, MIDI path) of every performance of one MAESTRO split, as listed.

    Rows whose files are missing are left out. Raises DataError if the metadata is
    missing or lacks the ``split``, ``audio_filename`` or ``midi_filename`` columns.
    """
    root = Path(root)
    meta = find_maestro_metadata(root)
    rows = _maestro_rows(meta)
    needed = {"split", "audio_filename", "midi_filename"}
    if rows and not needed <= set(rows[0]):
        raise DataError(f"{meta}: needs columns {', '.join(sorted(needed))}")
    pairs = []
    for row in rows:
        if row["split"] != split:
            continue
        audio, midi = root / row["audio_filename"], root / row["midi_filename"]
        if audio.is_file() and midi.is_file():
            pairs.append((audio, midi))
    return sorted(pairs)
