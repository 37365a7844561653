"""Symbolic sources for the synthetic corpus: the music21 corpus, MIDI folders, generated etudes.

Every source becomes a :class:`Score`: parts of notes in beats (quarter notes), before any
performance. music21 files are parsed once, in worker processes under a per-file time
limit, and cached as ``.npz`` files; a file that fails or times out is recorded in the
cache too, reported, and skipped.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import multiprocessing
import os
import re
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from amtcli.atomic import atomic_path
from amtcli.errors import DataError

CACHE_VERSION = 1  #: Bump when the conversion changes, so old caches are ignored.
_PREFERRED_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mid", ".midi", ".mei")


@dataclass(frozen=True)
class Part:
    """One voice or instrument of a score.

    Attributes:
        name: part name from the source ("" if none).
        program: 0-based GM program named by the source, or None.
        notes: (n, 4) float64 array of onset_beats, duration_beats, pitch, velocity;
            velocity 0 means "not given" (the performance chooses it). A beat is a quarter note.
    """

    name: str
    program: int | None
    notes: np.ndarray

    @property
    def mean_pitch(self) -> float:
        return float(self.notes[:, 2].mean()) if len(self.notes) else 60.0


@dataclass(frozen=True)
class Score:
    """A work before performance.

    Attributes:
        work_id: stable identifier (e.g. ``music21:bach/bwv253.mxl``).
        group: works sharing a group (movements of one piece) always land in the same split.
        title, composer: for metadata.csv ("" if unknown).
        parts: the voices, each with its notes in beats.
        bpm: quarter notes per minute given by the source, or None.
    """

    work_id: str
    group: str
    title: str
    composer: str
    parts: tuple[Part, ...]
    bpm: float | None = None

    @property
    def n_notes(self) -> int:
        return sum(len(p.notes) for p in self.parts)

    @property
    def end_beats(self) -> float:
        ends = [float((p.notes[:, 0] + p.notes[:, 1]).max()) for p in self.parts if len(p.notes)]
        return max(ends, default=0.0)


# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$AMTCLI_CACHE/music21``, else ``$XDG_CACHE_HOME/amtcli/music21`` (``~/.cache``)."""
    root = os.environ.get("AMTCLI_CACHE")
    if root:
        return Path(root) / "music21"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "amtcli" / "music21"


def save_scores(path: Path, scores: list[Score], error: str = "") -> None:
    """Write scores (or a failure message) to one ``.npz`` cache file, atomically."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict = {"version": CACHE_VERSION, "error": error, "scores": []}
    for i, score in enumerate(scores):
        parts = []
        for j, part in enumerate(score.parts):
            arrays[f"s{i}p{j}"] = np.asarray(part.notes, dtype=np.float64).reshape(-1, 4)
            parts.append({"name": part.name, "program": part.program})
        meta["scores"].append(
            {
                "work_id": score.work_id,
                "group": score.group,
                "title": score.title,
                "composer": score.composer,
                "bpm": score.bpm,
                "parts": parts,
            }
        )
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with atomic_path(path, overwrite=True) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def load_scores(path: Path) -> tuple[list[Score], str] | None:
    """Read a cache file: (scores, error message). None if missing, stale or unreadable."""
    try:
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode("utf-8"))
            if meta.get("version") != CACHE_VERSION:
                return None
            scores = []
            for i, entry in enumerate(meta["scores"]):
                parts = tuple(
                    Part(p["name"], p["program"], np.array(data[f"s{i}p{j}"]))
                    for j, p in enumerate(entry["parts"])
                )
                scores.append(
                    Score(
                        entry["work_id"], entry["group"], entry["title"], entry["composer"],
                        parts, entry["bpm"],
                    )
                )
            return scores, meta.get("error", "")
    except (OSError, ValueError, KeyError):
        return None


# ----------------------------------------------------------------------------- music21


def music21_corpus_root() -> Path:
    """Folder of the corpus shipped inside the installed music21 package."""
    try:
        from music21 import common
    except ImportError:
        raise DataError("music21 is not installed; pip install music21") from None
    return Path(common.getCorpusFilePath())


def find_music21_paths(patterns: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    """Corpus paths (relative, '/'-separated) matching any glob pattern, sorted.

    When a work exists in several formats (``x.krn`` and ``x.mxl``), MusicXML is kept.
    """
    root = music21_corpus_root()
    patterns, exclude = list(patterns), list(exclude)
    by_stem: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in _PREFERRED_SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        if not any(fnmatch.fnmatchcase(rel, p) for p in patterns):
            continue
        if any(fnmatch.fnmatchcase(rel, p) for p in exclude):
            continue
        stem = rel.rsplit(".", 1)[0]
        current = by_stem.get(stem)
        rank = _PREFERRED_SUFFIXES.index(path.suffix.lower())
        if current is None or rank < _PREFERRED_SUFFIXES.index("." + current.rsplit(".", 1)[1].lower()):
            by_stem[stem] = rel
    return sorted(by_stem.values())


def music21_group(rel_path: str) -> str:
    """Split group of a corpus path: the folder for multi-movement works, else the file."""
    folder, _, name = rel_path.rpartition("/")
    if re.match(r"movement\d", name):
        return f"music21:{folder}"
    return f"music21:{rel_path.rsplit('.', 1)[0]}"


def _part_notes(part) -> np.ndarray:
    """(n, 4) notes of one music21 part in beats, ties merged, grace notes dropped."""
    rows: list[list[float]] = []
    open_ties: dict[int, int] = {}
    for element in part.flatten().notes:
        duration = float(element.quarterLength)
        if duration <= 0:
            continue
        onset = float(element.offset)
        pitches = getattr(element, "pitches", ())
        tie = getattr(element, "tie", None)
        for pitch in pitches:
            midi = int(round(pitch.ps))
            if not 0 <= midi <= 127:
                continue
            note_tie = getattr(pitch, "tie", None) or tie
            kind = note_tie.type if note_tie is not None else None
            index = open_ties.get(midi)
            if kind in ("stop", "continue") and index is not None:
                rows[index][1] = onset + duration - rows[index][0]
                if kind == "stop":
                    del open_ties[midi]
                continue
            rows.append([onset, duration, float(midi), 0.0])
            if kind in ("start", "continue"):
                open_ties[midi] = len(rows) - 1
            else:
                open_ties.pop(midi, None)
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def _score_from_music21(stream, work_id: str, group: str) -> Score:
    from music21 import tempo

    metadata = getattr(stream, "metadata", None)
    title = (getattr(metadata, "title", None) or getattr(metadata, "movementName", None) or "") if metadata else ""
    composer = (getattr(metadata, "composer", None) or "") if metadata else ""
    voices = list(stream.parts) or [stream]
    parts = []
    for voice in voices:
        notes = _part_notes(voice)
        if not len(notes):
            continue
        instrument = voice.getInstrument(returnDefault=False) if hasattr(voice, "getInstrument") else None
        program = getattr(instrument, "midiProgram", None)
        parts.append(Part(str(getattr(voice, "partName", "") or ""), program, notes))
    bpm = None
    for mark in stream.recurse().getElementsByClass(tempo.MetronomeMark):
        if mark.number:
            bpm = float(mark.getQuarterBPM() or mark.number)
            break
    return Score(work_id, group, str(title), str(composer), tuple(parts), bpm)


class _Timeout(Exception):
    pass


def _raise_timeout(signum, frame):
    raise _Timeout()


def convert_music21_file(rel_path: str, cache_dir: str, time_limit_s: float) -> tuple[str, int, str]:
    """Parse one corpus file into the cache (worker function). Returns (path, n_works, error)."""
    target = cache_path(Path(cache_dir), rel_path)
    cached = load_scores(target)
    if cached is not None:
        return rel_path, len(cached[0]), cached[1]
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_REAL, time_limit_s)
    error = ""
    scores: list[Score] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from music21 import corpus, stream

            parsed = corpus.parse(rel_path)
            group = music21_group(rel_path)
            if isinstance(parsed, stream.Opus):
                for k, item in enumerate(parsed.scores):
                    scores.append(_score_from_music21(item, f"music21:{rel_path}#{k}", f"{group}#{k}"))
            else:
                scores.append(_score_from_music21(parsed, f"music21:{rel_path}", group))
            scores = [s for s in scores if s.n_notes > 0]
            if not scores:
                error = "no notes"
    except _Timeout:
        error = f"parsing took longer than {time_limit_s:g} s"
        scores = []
    except Exception as exc:  # music21 raises many unrelated types on bad files
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        scores = []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    save_scores(target, scores, error)
    return rel_path, len(scores), error


def cache_path(cache_dir: Path, rel_path: str) -> Path:
    """Cache file of one corpus path."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", rel_path)
    return cache_dir / f"{safe}.v{CACHE_VERSION}.npz"


def convert_music21_files(
    rel_paths: list[str],
    cache_dir: Path,
    time_limit_s: float,
    jobs: int,
    on_result: Callable[[str, int, str], None] | None = None,
) -> None:
    """Make sure every path is in the cache, parsing missing ones in ``jobs`` processes."""
    missing = [p for p in rel_paths if load_scores(cache_path(cache_dir, p)) is None]
    if not missing:
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    args = [(p, str(cache_dir), time_limit_s) for p in missing]
    if jobs <= 1:
        results = (convert_music21_file(*a) for a in args)
        for result in results:
            if on_result:
                on_result(*result)
        return
    with multiprocessing.get_context("fork").Pool(jobs, maxtasksperchild=50) as pool:
        for result in pool.imap_unordered(_convert_star, args):
            if on_result:
                on_result(*result)


def _convert_star(args: tuple[str, str, float]) -> tuple[str, int, str]:
    return convert_music21_file(*args)


def load_music21_cached(cache_dir: Path, rel_path: str) -> list[Score]:
    """Scores of one converted corpus path ([] if it failed or was never converted)."""
    cached = load_scores(cache_path(cache_dir, rel_path))
    return cached[0] if cached is not None else []


# ----------------------------------------------------------------------------- MIDI


def find_midi_files(folder: Path) -> list[Path]:
    """``*.mid``/``*.midi`` files under ``folder``, sorted. DataError if it is not a folder."""
    if not folder.is_dir():
        raise DataError(f"MIDI source folder {folder} does not exist")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi") and p.is_file())


def load_midi_score(path: Path, root: Path) -> Score:
    """A MIDI file as a score: one part per non-drum track, beats = seconds (bpm 60).

    Raises DataError if the file cannot be read or has no pitched notes.
    """
    import pretty_midi

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # pretty_midi/mido raise many types on corrupt files
        raise DataError(f"{path}: cannot read MIDI file ({type(exc).__name__}: {exc})") from None
    parts = []
    for instrument in midi.instruments:
        if instrument.is_drum or not instrument.notes:
            continue
        rows = [[n.start, n.end - n.start, n.pitch, n.velocity] for n in instrument.notes if n.end > n.start]
        if rows:
            notes = np.array(sorted(rows), dtype=np.float64)
            parts.append(Part(instrument.name or "", int(instrument.program), notes))
    if not parts:
        raise DataError(f"{path}: no pitched notes")
    rel = path.relative_to(root).as_posix()
    return Score(f"midi:{rel}", f"midi:{rel}", path.stem, "", tuple(parts), 60.0)


# ----------------------------------------------------------------------------- generated


def stable_seed(*keys: object) -> int:
    """A 63-bit seed from any values, identical across runs and machines."""
    digest = hashlib.sha256("\x1f".join(map(str, keys)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generate_score(work_id: str, seed: int, length_beats: float = 120.0) -> Score:
    """A generated etude at 120 bpm that covers what scores rarely do.

    Segments alternate between: sweeps over the whole 88-key range, dense chords (up to
    10 notes), fast repeated notes, very short (1/16 beat) and very long (up to 12 beats)
    notes, and random counterpoint in 2-4 lines; velocities span 10..127. The first part
    is keyboard-like (wide range), the others are single lines for ensembles.
    """
    rng = np.random.default_rng(seed)
    lines: list[list[list[float]]] = [[] for _ in range(4)]
    beat = 0.0
    while beat < length_beats:
        kind = rng.choice(["sweep", "chords", "repeats", "short_long", "counterpoint"])
        length = float(rng.choice([4.0, 8.0, 12.0]))
        loud = float(rng.uniform(10, 127))
        if kind == "sweep":
            step = float(rng.choice([0.125, 0.25, 0.5]))
            lo, hi = sorted(rng.integers(21, 109, size=2))
            hi = max(hi, lo + 12)
            pitches = np.arange(lo, min(hi, 108) + 1, int(rng.integers(1, 5)))
            if rng.random() < 0.5:
                pitches = pitches[::-1]
            for k, pitch in enumerate(pitches[: int(length / step)]):
                vel = np.clip(loud + rng.normal(0, 10), 10, 127)
                lines[0].append([beat + k * step, step * float(rng.uniform(0.5, 1.2)), pitch, vel])
        elif kind == "chords":
            t = beat
            while t < beat + length:
                dur = float(rng.choice([0.25, 0.5, 1.0, 2.0, 4.0]))
                size = int(rng.integers(3, 11))
                root = int(rng.integers(21, 96))
                pitches = np.unique(np.clip(root + np.cumsum(rng.integers(1, 8, size=size)), 21, 108))
                for pitch in pitches:
                    lines[0].append([t, dur * float(rng.uniform(0.6, 1.0)), pitch, np.clip(loud + rng.normal(0, 12), 10, 127)])
                t += dur
        elif kind == "repeats":
            pitch = int(rng.integers(21, 109))
            step = float(rng.choice([0.125, 0.1875, 0.25]))
            for k in range(int(length / step)):
                lines[0].append([beat + k * step, step * float(rng.uniform(0.4, 0.8)), pitch, rng.uniform(10, 127)])
        elif kind == "short_long":
            t = beat
            while t < beat + length:
                dur = float(rng.choice([0.0625, 0.125, 6.0, 12.0], p=[0.35, 0.35, 0.2, 0.1]))
                pitch = int(rng.integers(21, 109))
                lines[0].append([t, dur, pitch, rng.uniform(10, 127)])
                t += dur if dur < 1 else float(rng.choice([0.5, 1.0, 2.0]))
        else:
            n_lines = int(rng.integers(2, 5))
            centres = np.sort(rng.integers(40, 90, size=n_lines))[::-1]
            for line in range(n_lines):
                t, pitch = beat, int(centres[line])
                while t < beat + length:
                    dur = float(rng.choice([0.25, 0.5, 1.0, 1.5, 2.0, 3.0]))
                    pitch = int(np.clip(pitch + rng.integers(-5, 6), 28, 100))
                    vel = np.clip(loud + rng.normal(0, 8), 10, 127)
                    lines[line].append([t, min(dur, beat + length - t), pitch, vel])
                    t += dur
        beat += length + float(rng.choice([0.0, 0.5, 1.0]))
    parts = tuple(
        Part("", None, np.array(sorted(rows), dtype=np.float64).reshape(-1, 4))
        for rows in lines
        if rows
    )
    return Score(work_id, work_id, "generated etude", "amtcli", parts, 120.0)
