"""The synthetic corpus factory behind ``amtcli data synth``.

A recipe (TOML) lists sources with a share of the total hours, a tempo range, the
ensembles to draw from and how often a work may be rendered. Planning is deterministic
for a given recipe, hour budget and seed: works are drawn per source in a seeded order
until the source's share is filled, split train/validation/test by work group, and each
render gets its own seed derived from the run seed and its id. Items are rendered in
worker processes; audio and labels are written atomically (labels last), so a re-run
skips finished items and a killed run resumes.

Output layout (MusicNet): ``<split>_data/ID.flac``, ``<split>_labels/ID.csv``,
``metadata.csv``, ``DATASET.md``, ``recipe.toml`` and ``.items/ID.json`` (per-item
metadata used to rebuild ``metadata.csv``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import re
import time
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np

from amtcli.atomic import atomic_path
from amtcli.datasets import sources as src
from amtcli.datasets.musicnet import write_musicnet_labels
from amtcli.datasets.performance import ENSEMBLES, KEYBOARDS, PerformanceStyle, assign_instruments, crop_score, perform
from amtcli.datasets.recipe_files import DEFAULT_RECIPE, bundled_recipes, resolve_recipe  # noqa: F401
from amtcli.datasets.render import (AttackStyle, Renderer, RenderSettings, VibratoStyle, random_settings,
                                    with_slow_attacks, with_vibrato)
from amtcli.datasets.soundfonts import SampleFont, find_soundfont, pick_sample_font
from amtcli.datasets.timbre import StemTimbre, TimbreStyle, apply_timbre, draw_timbre
from amtcli.errors import AmtError, ConfigError, DataError
from amtcli.instruments import program_name


SPLITS = ("train", "validation", "test", "piano_test")
SOURCE_KINDS = ("music21", "midi", "generated")
METADATA_COLUMNS = (
    "id", "split", "source_work", "title", "composer", "ensemble", "instruments",
    "soundfont", "render_settings", "bpm", "duration_s", "n_notes", "seed",
    "parts", "pedal_presses", "stems",
)

Log = Callable[[str], None]


# ----------------------------------------------------------------------------- recipe


@dataclass(frozen=True)
class SourceSpec:
    """One ``[[sources]]`` table of a recipe (see ``recipes/default.toml``).

    Attributes:
        name: short name, used as the id prefix.
        kind: "music21" (corpus glob patterns), "midi" (a folder) or "generated".
        share: relative share of the total hours.
        include, exclude: corpus glob patterns (music21).
        folder: MIDI folder (midi); ``keep_programs`` keeps the files' own instruments.
        bpm: (low, high) quarter notes per minute, or None to use the source's tempo.
        max_renders: how many times one work may be rendered to fill the share.
        max_seconds: longer works are rendered as a random excerpt of about this length.
        length_beats: length of each generated etude in beats (generated).
        ensembles: (ensemble name, weight) pairs to draw from.
    """

    name: str
    kind: str
    share: float
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    folder: str = ""
    keep_programs: bool = False
    bpm: tuple[float, float] | None = None
    max_renders: int = 1
    max_seconds: float = 180.0
    length_beats: float = 120.0
    ensembles: tuple[tuple[str, float], ...] = (("piano", 1.0),)


@dataclass(frozen=True)
class StemStyle:
    """``[stems]``: render each part on its own, then mix (see :func:`render_stems`).

    Attributes:
        enabled: render per part (otherwise one FluidSynth pass for all parts); the
            sample soundfonts and the per-stem timbre need it.
        solo_share: share of the items of multi-part, non-keyboard ensembles that keep
            one part only (a single line), drawn per item (with or without ``enabled``).
        duet_share: share of those items that keep two parts (works of 3+ parts).
        sample_font_prob: chance that a train or validation part whose instrument and
            range fit one of the recipe's ``[[sample_soundfonts]]`` is played by one.
        timbre: the random spectral envelope of each train / validation stem
            (``[stems.timbre]``; test splits get only the gain).
    """

    enabled: bool = False
    solo_share: float = 0.0
    duet_share: float = 0.0
    sample_font_prob: float = 0.0
    timbre: TimbreStyle = TimbreStyle()

    def __post_init__(self) -> None:
        if not (0 <= self.solo_share and 0 <= self.duet_share and self.solo_share + self.duet_share <= 1):
            raise ValueError("[stems] solo_share and duet_share must be >= 0 and sum to at most 1")
        if not 0 <= self.sample_font_prob <= 1:
            raise ValueError("[stems] sample_font_prob must be in [0, 1]")


@dataclass(frozen=True)
class PianoTestSpec:
    """``[piano_test]``: a second test split of solo piano in held-out piano soundfonts.

    Every test-split work of the named sources is rendered once more, by a solo piano
    (the recipe's pedal style included) in one of ``soundfonts``, as split
    ``piano_test`` with ids ending in ``-piano``.
    """

    soundfonts: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    """A whole recipe; every field is validated by :func:`load_recipe`.

    Attributes:
        hours: total hours to render (before the final release tails).
        sample_rate: audio rate in Hz.
        tail_s: seconds rendered after the last note-off.
        validation_fraction, test_fraction: share of work groups per source.
        parse_time_limit_s: per-file limit for parsing music21 files.
        train_soundfonts: used for train and validation.
        test_soundfonts: used for test only (held out).
        style: performance settings.
        sources: the sources.
        vibrato: vibrato of the sustained instruments (``[vibrato]``), applied to the
            train and validation renders only: the held-out test split stays as the
            same recipe without vibrato renders it, so scores stay comparable.
        attack: slow attacks of the sustained instruments (``[attack]``), train and
            validation renders only, like vibrato.
        stems: per-part rendering, single lines and per-stem timbre (``[stems]``).
        sample_fonts: real-sample soundfonts of single instruments (``[[sample_soundfonts]]``).
        piano_test: the held-out piano test split (``[piano_test]``), or None.
        search_path: folders searched for bare soundfont names (``[soundfonts]
            search_path``, relative to the recipe), before ``AMTCLI_SOUNDFONT_PATH``.
    """

    hours: float
    sample_rate: int
    tail_s: float
    validation_fraction: float
    test_fraction: float
    parse_time_limit_s: float
    train_soundfonts: tuple[str, ...]
    test_soundfonts: tuple[str, ...]
    style: PerformanceStyle
    sources: tuple[SourceSpec, ...]
    vibrato: VibratoStyle = VibratoStyle()
    attack: AttackStyle = AttackStyle()
    text: str = field(default="", repr=False)
    stems: StemStyle = StemStyle()
    sample_fonts: tuple[SampleFont, ...] = ()
    piano_test: PianoTestSpec | None = None
    search_path: tuple[str, ...] = ()

    def soundfont_file(self, name: str) -> Path:
        """The file a soundfont name of this recipe stands for (DataError if missing)."""
        return find_soundfont(name, self.search_path)


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Read and validate a recipe: a TOML file, the name of a bundled recipe, or the
    packaged default when ``path`` is None.

    Raises ConfigError naming the file and the bad field.
    """
    path = resolve_recipe(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        names = ", ".join(bundled_recipes())
        raise ConfigError(f"cannot read recipe {path}: {exc.strerror or exc} (bundled recipes: {names})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"recipe {path} is not valid TOML: {exc}") from None
    try:
        data, bases = _merge_base(data, path, depth=0)
        for base_path, base_text in bases:  # the dataset's recipe.toml then records the bases too
            commented = "\n".join(f"# {line}" if line else "#" for line in base_text.splitlines())
            text += f"\n# ---- base recipe {base_path.name}, as read when rendering ----\n{commented}\n"
        return _parse_recipe(data, text, path.parent)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"recipe {path}: {exc}") from None


def _merge_base(data: dict, path: Path, depth: int) -> tuple[dict, list[tuple[Path, str]]]:
    """Resolve ``base = "NAME_OR_FILE"``: the base recipe's tables, with this recipe's keys
    replacing the base's key by key inside each table (arrays such as ``[[sources]]`` and
    soundfont lists are replaced whole). A relative base file is looked up next to this
    recipe first, then as a bundled name; relative source folders are read from this
    recipe's folder. Returns the merged data and the (path, text) of every base read."""
    if "base" not in data:
        return data, []
    if depth >= 4:
        raise ValueError("recipe bases nest more than 4 deep (a cycle?)")
    name = Path(str(data["base"]))
    local = name if name.is_absolute() else path.parent / name
    base_path = local if local.is_file() else resolve_recipe(name)
    try:
        base_text = base_path.read_text(encoding="utf-8")
        base = tomllib.loads(base_text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read base recipe {data['base']!r} ({exc})") from None
    merged, bases = _merge_base(base, base_path, depth + 1)
    merged = dict(merged)
    for key, value in data.items():
        if key == "base":
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged, [(base_path, base_text), *bases]


def _parse_recipe(data: dict, text: str, base: Path) -> Recipe:
    dataset = data.get("dataset", {})
    fonts = data.get("soundfonts", {})
    style_fields = {f.name for f in fields(PerformanceStyle)}
    unknown = set(data.get("performance", {})) - style_fields
    if unknown:
        raise ValueError(f"unknown [performance] keys: {', '.join(sorted(unknown))}")
    style = PerformanceStyle(**{k: float(v) for k, v in data.get("performance", {}).items()})
    unknown = set(data.get("vibrato", {})) - {f.name for f in fields(VibratoStyle)}
    if unknown:
        raise ValueError(f"unknown [vibrato] keys: {', '.join(sorted(unknown))}")
    vibrato = VibratoStyle(**data.get("vibrato", {}))
    unknown = set(data.get("attack", {})) - {f.name for f in fields(AttackStyle)}
    if unknown:
        raise ValueError(f"unknown [attack] keys: {', '.join(sorted(unknown))}")
    attack = AttackStyle(**data.get("attack", {}))
    stems = _parse_stems(data.get("stems", {}))
    sample_fonts = tuple(_parse_sample_font(entry) for entry in data.get("sample_soundfonts", []))
    piano_test = _parse_piano_test(data["piano_test"]) if "piano_test" in data else None
    search_path = tuple(str((base / folder).resolve()) for folder in fonts.get("search_path", []))
    sources = tuple(_parse_source(entry, base) for entry in data.get("sources", []))
    if not sources:
        raise ValueError("no [[sources]]")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError("source names must be unique")
    recipe = Recipe(
        hours=float(dataset.get("hours", 8.0)),
        sample_rate=int(dataset.get("sample_rate", 16000)),
        tail_s=float(dataset.get("tail_s", 1.0)),
        validation_fraction=float(dataset.get("validation_fraction", 0.05)),
        test_fraction=float(dataset.get("test_fraction", 0.05)),
        parse_time_limit_s=float(dataset.get("parse_time_limit_s", 60.0)),
        train_soundfonts=tuple(str(f) for f in fonts["train"]),
        test_soundfonts=tuple(str(f) for f in fonts["test"]),
        style=style,
        sources=sources,
        vibrato=vibrato,
        attack=attack,
        text=text,
        stems=stems,
        sample_fonts=sample_fonts,
        piano_test=piano_test,
        search_path=search_path,
    )
    if piano_test is not None and set(piano_test.sources) - set(names):
        raise ValueError(f"[piano_test] sources not in [[sources]]: {', '.join(sorted(set(piano_test.sources) - set(names)))}")
    if recipe.hours <= 0 or not 8000 <= recipe.sample_rate <= 96000 or recipe.tail_s < 0:
        raise ValueError("need hours > 0, 8000 <= sample_rate <= 96000 and tail_s >= 0")
    if not 0 <= recipe.validation_fraction + recipe.test_fraction < 1:
        raise ValueError("validation_fraction + test_fraction must be in [0, 1)")
    if not recipe.train_soundfonts or not recipe.test_soundfonts:
        raise ValueError("[soundfonts] needs non-empty 'train' and 'test' lists")
    return recipe


def _parse_stems(table: dict) -> StemStyle:
    known = {f.name for f in fields(StemStyle)}
    unknown = set(table) - known
    if unknown:
        raise ValueError(f"unknown [stems] keys: {', '.join(sorted(unknown))}")
    timbre_table = table.get("timbre", {})
    unknown = set(timbre_table) - {f.name for f in fields(TimbreStyle)}
    if unknown:
        raise ValueError(f"unknown [stems.timbre] keys: {', '.join(sorted(unknown))}")
    return StemStyle(**{**table, "timbre": TimbreStyle(**timbre_table)})


def _parse_sample_font(entry: dict) -> SampleFont:
    unknown = set(entry) - {f.name for f in fields(SampleFont)}
    if unknown:
        raise ValueError(f"unknown [[sample_soundfonts]] keys: {', '.join(sorted(unknown))}")
    return SampleFont(**{**entry, "programs": tuple(entry["programs"]), "keys": tuple(entry.get("keys", (0, 127)))})


def _parse_piano_test(table: dict) -> PianoTestSpec:
    unknown = set(table) - {"soundfonts", "sources"}
    if unknown:
        raise ValueError(f"unknown [piano_test] keys: {', '.join(sorted(unknown))}")
    if not table.get("soundfonts") or not table.get("sources"):
        raise ValueError("[piano_test] needs non-empty 'soundfonts' and 'sources' lists")
    return PianoTestSpec(tuple(str(f) for f in table["soundfonts"]), tuple(str(s) for s in table["sources"]))


def _parse_source(entry: dict, base: Path) -> SourceSpec:
    kind = entry["kind"]
    if kind not in SOURCE_KINDS:
        raise ValueError(f"source kind {kind!r} is not one of {', '.join(SOURCE_KINDS)}")
    ensembles = tuple((str(k), float(v)) for k, v in entry.get("ensembles", {"piano": 1.0}).items())
    for name, weight in ensembles:
        if name not in ENSEMBLES:
            raise ValueError(f"unknown ensemble {name!r}; known: {', '.join(sorted(ENSEMBLES))}")
        if weight < 0:
            raise ValueError(f"ensemble weight of {name} is negative")
    bpm = entry.get("bpm")
    folder = entry.get("folder", "")
    spec = SourceSpec(
        name=str(entry["name"]),
        kind=kind,
        share=float(entry.get("share", 1.0)),
        include=tuple(entry.get("include", ())),
        exclude=tuple(entry.get("exclude", ())),
        folder=str((base / folder).resolve()) if folder else "",
        keep_programs=bool(entry.get("keep_programs", False)),
        bpm=(float(bpm[0]), float(bpm[1])) if bpm else None,
        max_renders=int(entry.get("max_renders", 1)),
        max_seconds=float(entry.get("max_seconds", 180.0)),
        length_beats=float(entry.get("length_beats", 120.0)),
        ensembles=ensembles,
    )
    if not re.fullmatch(r"[A-Za-z0-9_]+", spec.name):
        raise ValueError(f"source name {spec.name!r} may only use letters, digits and _")
    if spec.share <= 0 or spec.max_renders < 1 or spec.max_seconds <= 0:
        raise ValueError(f"source {spec.name}: need share > 0, max_renders >= 1, max_seconds > 0")
    if kind == "midi" and not spec.folder:
        raise ValueError(f"source {spec.name}: kind 'midi' needs a folder")
    if kind == "music21" and not spec.include:
        raise ValueError(f"source {spec.name}: kind 'music21' needs include patterns")
    return spec


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class PlanItem:
    """One audio file to render (all choices except the performance noise are made here).

    Attributes:
        item_id: file stem, ``<source>-<work slug>-<render index>``.
        split: "train", "validation" or "test".
        source: source name; kind: source kind.
        ref: corpus path, MIDI path, or the generator seed of a generated etude.
        root: MIDI folder of the source ("" otherwise).
        work_id, group, title, composer: of the work.
        ensemble: ensemble name ("source" when the MIDI file's programs are kept).
        soundfont: soundfont path.
        bpm: base tempo in quarter notes per minute.
        crop_start_beats, crop_length_beats: excerpt; length 0 means the whole work.
        seed: seed of this item's performance and mix.
        estimated_s: planned duration in seconds.
        parts: indices of the score parts rendered (empty: all of them).
    """

    item_id: str
    split: str
    source: str
    kind: str
    ref: str
    root: str
    work_id: str
    group: str
    title: str
    composer: str
    ensemble: str
    soundfont: str
    bpm: float
    crop_start_beats: float
    crop_length_beats: float
    seed: int
    estimated_s: float
    length_beats: float = 120.0
    parts: tuple[int, ...] = ()


@dataclass
class _Work:
    score: src.Score
    ref: str


def slug(text: str, limit: int = 60) -> str:
    """File-name-safe version of a work id."""
    text = re.sub(r"^[a-z0-9]+:", "", text)
    text = re.sub(r"\.(mxl|xml|musicxml|krn|abc|mid|midi|mei)$", "", text, flags=re.I)
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")[:limit] or "work"


def _natural_bpm(score: src.Score, spec: SourceSpec) -> float:
    if spec.bpm is not None:
        return (spec.bpm[0] + spec.bpm[1]) / 2
    return score.bpm or 100.0


def _estimate_s(score: src.Score, spec: SourceSpec) -> float:
    return min(score.end_beats * 60.0 / _natural_bpm(score, spec), spec.max_seconds)


def _candidates(spec: SourceSpec, seed: int) -> list[str]:
    if spec.kind == "music21":
        refs = src.find_music21_paths(spec.include, spec.exclude)
    elif spec.kind == "midi":
        refs = [str(p) for p in src.find_midi_files(Path(spec.folder))]
    else:
        return []
    rng = np.random.default_rng(src.stable_seed(seed, "order", spec.name))
    return [refs[i] for i in rng.permutation(len(refs))]


def _collect_works(
    spec: SourceSpec, recipe: Recipe, share_s: float, seed: int, jobs: int, cache_dir: Path,
    log: Log, failures: list[tuple[str, str]], progress: Callable[[int], None],
) -> list[_Work]:
    """Works of one source, drawn in seeded order until their duration fills ``share_s``."""
    works: list[_Work] = []
    total = 0.0
    if spec.kind == "generated":
        k = 0
        while total < share_s:
            work_id = f"generated:{spec.name}/{k:05d}"
            work_seed = src.stable_seed(seed, work_id)
            works.append(_Work(src.generate_score(work_id, work_seed, spec.length_beats), str(work_seed)))
            score = works[-1].score
            total += _estimate_s(score, spec)
            k += 1
        return works
    refs = _candidates(spec, seed)
    if not refs:
        log(f"[yellow]warning:[/] source {spec.name} matched no files")
    chunk = max(8, 4 * jobs)
    for start in range(0, len(refs), chunk):
        if total >= share_s:
            break
        batch = refs[start : start + chunk]
        if spec.kind == "music21":
            def report(path: str, n_works: int, error: str) -> None:
                progress(1)
                if error:
                    failures.append((path, error))
                    log(f"[yellow]skipped[/] music21 {path}: {error}")

            src.convert_music21_files(batch, cache_dir, recipe.parse_time_limit_s, jobs, report)
            loaded = [(s, ref) for ref in batch for s in src.load_music21_cached(cache_dir, ref)]
        else:
            loaded = []
            for ref in batch:
                try:
                    loaded.append((src.load_midi_score(Path(ref), Path(spec.folder)), ref))
                except DataError as exc:
                    failures.append((ref, str(exc)))
                    log(f"[yellow]skipped[/] {exc}")
        for score, ref in loaded:
            if total >= share_s:
                break
            works.append(_Work(score, ref))
            total += _estimate_s(score, spec)
    return works


def _split_groups(groups: list[str], recipe: Recipe) -> dict[str, str]:
    """Split of every group: ranked by a stable hash, the first ones go to test, then validation."""
    ranked = sorted(set(groups), key=lambda g: src.stable_seed("split", g))
    n = len(ranked)
    n_test = round(recipe.test_fraction * n)
    n_val = round(recipe.validation_fraction * n)
    if n >= 4:
        n_test = max(n_test, 1 if recipe.test_fraction > 0 else 0)
        n_val = max(n_val, 1 if recipe.validation_fraction > 0 else 0)
    split = {}
    for i, group in enumerate(ranked):
        split[group] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
    return split


def _choose_ensemble(spec: SourceSpec, n_parts: int, rng: np.random.Generator) -> str:
    options = [(n, w) for n, w in spec.ensembles if w > 0 and not (n.startswith("solo_") and n_parts > 2)]
    if not options:
        options = [(n, w) for n, w in spec.ensembles if w > 0] or [("piano", 1.0)]
    weights = np.array([w for _, w in options], dtype=float)
    return options[int(rng.choice(len(options), p=weights / weights.sum()))][0]


def _make_item(work: _Work, render: int, split: str, spec: SourceSpec, recipe: Recipe, seed: int) -> PlanItem:
    score = work.score
    item_id = f"{spec.name}-{slug(score.work_id)}-{render}"
    rng = np.random.default_rng(src.stable_seed(seed, "plan", item_id))
    if spec.bpm is not None:
        bpm = float(rng.uniform(*spec.bpm))
    else:
        bpm = float((score.bpm or 100.0) * rng.uniform(0.92, 1.08))
    fonts = recipe.test_soundfonts if split == "test" else recipe.train_soundfonts
    soundfont = fonts[int(rng.integers(len(fonts)))]
    ensemble = "source" if spec.keep_programs else _choose_ensemble(spec, len(score.parts), rng)
    end = score.end_beats
    crop_start, crop_length = 0.0, 0.0
    if end * 60.0 / bpm > spec.max_seconds:
        crop_length = float(math.floor(spec.max_seconds * bpm / 60.0))
        crop_start = float(2 * int(rng.integers(0, int((end - crop_length) // 2) + 1)))
    length = crop_length or end
    lines = recipe.stems.solo_share + recipe.stems.duet_share > 0
    parts = _draw_parts(score, ensemble, crop_start, length, recipe.stems, rng) if lines else ()
    return PlanItem(
        item_id=item_id, split=split, source=spec.name, kind=spec.kind, ref=work.ref,
        root=spec.folder, work_id=score.work_id, group=score.group, title=score.title,
        composer=score.composer, ensemble=ensemble, soundfont=soundfont, bpm=bpm,
        crop_start_beats=crop_start, crop_length_beats=crop_length,
        seed=src.stable_seed(seed, "item", item_id), estimated_s=length * 60.0 / bpm,
        length_beats=spec.length_beats, parts=parts,
    )


def _draw_parts(score: src.Score, ensemble: str, start_beats: float, length_beats: float, style: StemStyle,
                rng: np.random.Generator) -> tuple[int, ...]:
    """The parts an item keeps: one (a single line) or two of a multi-part ensemble
    without keyboard, as ``style`` shares say; empty (all parts) otherwise."""
    programs = ENSEMBLES.get(ensemble, ())
    playing = [i for i, part in enumerate(score.parts)
               if np.any((part.notes[:, 0] >= start_beats) & (part.notes[:, 0] < start_beats + length_beats))]
    draw = rng.random()   # drawn for every item, so the rest of the plan does not depend on the guard below
    if len(playing) < 2 or not programs or any(p in KEYBOARDS for p in programs):
        return ()
    if draw < style.solo_share:
        return (int(rng.choice(playing)),)
    if draw < style.solo_share + style.duet_share and len(playing) >= 3:
        return tuple(sorted(int(i) for i in rng.choice(playing, size=2, replace=False)))
    return ()


def _piano_test_item(item: PlanItem, spec: PianoTestSpec, seed: int) -> PlanItem:
    """The held-out solo-piano render of a test-split item (whole score, all parts)."""
    item_id = f"{item.item_id}-piano"
    rng = np.random.default_rng(src.stable_seed(seed, "piano_test", item_id))
    return replace(item, item_id=item_id, split="piano_test", ensemble="piano",
                   soundfont=spec.soundfonts[int(rng.integers(len(spec.soundfonts)))], parts=(),
                   seed=src.stable_seed(seed, "item", item_id))


def plan_items(
    recipe: Recipe, seed: int, jobs: int = 1, cache_dir: Path | None = None,
    log: Log = lambda message: None, progress: Callable[[int], None] = lambda n: None,
) -> tuple[list[PlanItem], list[tuple[str, str]]]:
    """Plan every item of a recipe. Returns (items, skipped sources as (path, reason))."""
    cache_dir = cache_dir or src.default_cache_dir()
    total_share = sum(s.share for s in recipe.sources)
    items: list[PlanItem] = []
    failures: list[tuple[str, str]] = []
    for spec in recipe.sources:
        share_s = recipe.hours * 3600.0 * spec.share / total_share
        works = _collect_works(spec, recipe, share_s, seed, jobs, cache_dir, log, failures, progress)
        splits = _split_groups([w.score.group for w in works], recipe)
        planned = 0.0
        for render in range(spec.max_renders):
            for work in works:
                if planned >= share_s:
                    break
                item = _make_item(work, render, splits[work.score.group], spec, recipe, seed)
                items.append(item)
                planned += item.estimated_s
                if (render == 0 and item.split == "test" and recipe.piano_test is not None
                        and spec.name in recipe.piano_test.sources):
                    items.append(_piano_test_item(item, recipe.piano_test, seed))
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.item_id not in seen:
            seen.add(item.item_id)
            unique.append(item)
    return unique, failures


# ----------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Job:
    item: PlanItem
    out_dir: str
    sample_rate: int
    tail_s: float
    style: PerformanceStyle
    cache_dir: str
    vibrato: VibratoStyle = VibratoStyle()
    attack: AttackStyle = AttackStyle()
    stems: StemStyle = StemStyle()
    sample_fonts: tuple[SampleFont, ...] = ()
    search_path: tuple[str, ...] = ()


_RENDERER: Renderer | None = None


def item_paths(out_dir: Path, item_id: str, split: str) -> tuple[Path, Path, Path]:
    """(audio, labels, per-item metadata JSON) paths of one item."""
    return (
        out_dir / f"{split}_data" / f"{item_id}.flac",
        out_dir / f"{split}_labels" / f"{item_id}.csv",
        out_dir / ".items" / f"{item_id}.json",
    )


def load_item_score(item: PlanItem, cache_dir: Path) -> src.Score:
    """The (uncropped) score of a planned item. Raises DataError if it is gone."""
    if item.kind == "generated":
        return src.generate_score(item.work_id, int(item.ref), item.length_beats)
    if item.kind == "midi":
        return src.load_midi_score(Path(item.ref), Path(item.root))
    for score in src.load_music21_cached(cache_dir, item.ref):
        if score.work_id == item.work_id:
            return score
    raise DataError(f"{item.ref}: not in the music21 cache {cache_dir}")


def render_item(job: _Job) -> dict:
    """Render one item (worker function): audio, then metadata JSON, then labels.

    Returns its metadata row (without duration formatting).
    """
    global _RENDERER
    import soundfile

    from amtcli.datasets.performance import sustained_notes

    item = job.item
    out_dir = Path(job.out_dir)
    audio_path, label_path, meta_path = item_paths(out_dir, item.item_id, item.split)
    score = load_item_score(item, Path(job.cache_dir))
    if item.crop_length_beats > 0:
        score = crop_score(score, item.crop_start_beats, item.crop_length_beats)
    rng = np.random.default_rng(item.seed)
    if item.ensemble == "source":
        programs = [p.program if p.program is not None else 0 for p in score.parts]
    else:
        programs = assign_instruments(score.parts, ENSEMBLES[item.ensemble])
    if item.parts:
        score = replace(score, parts=tuple(score.parts[i] for i in item.parts))
        programs = [programs[i] for i in item.parts]
    performance = perform(score, programs, item.bpm, job.style, rng)
    if not performance.notes:
        raise DataError(f"{item.item_id}: no notes to render")
    soundfont = str(find_soundfont(item.soundfont, job.search_path))
    settings = random_settings(soundfont, job.sample_rate, job.tail_s, 16, rng)
    if item.split in ("train", "validation"):
        settings = with_vibrato(settings, job.vibrato, rng)
        settings = with_slow_attacks(settings, job.attack, rng)
    events = [
        (n.onset_s, n.offset_s, c, n.pitch, n.velocity)
        for n, c in zip(performance.notes, performance.channels)
    ]
    controls = [control for channel, down, up in performance.sustain
                for control in ((down, channel, 64, 127), (up, channel, 64, 0))]
    if _RENDERER is None:
        _RENDERER = Renderer()
    fonts_used, stems_text = [Path(item.soundfont).name], ""
    if job.stems.enabled:
        audio, stems = render_stems(_RENDERER, events, performance.programs, settings, controls, job, item.split, rng)
        fonts_used += sorted({Path(font).name for _, font, _ in stems} - set(fonts_used))
        stems_text = "|".join(f"{channel}:{Path(font).name}:{timbre.describe()}" for channel, font, timbre in stems)
    else:
        audio = _RENDERER.render(events, performance.programs, settings, controls=controls)
    with atomic_path(audio_path, overwrite=True) as tmp:
        soundfile.write(tmp, audio, job.sample_rate, format="FLAC", subtype="PCM_16")
    row = {
        "id": item.item_id,
        "split": item.split,
        "source_work": item.work_id,
        "title": item.title,
        "composer": item.composer,
        "ensemble": item.ensemble,
        "instruments": ";".join(program_name(p) for p in performance.instruments),
        "soundfont": "+".join(fonts_used),
        "render_settings": settings.describe(),
        "bpm": f"{item.bpm:.1f}",
        "duration_s": f"{len(audio) / job.sample_rate:.3f}",
        "n_notes": str(len(performance.notes)),
        "seed": str(item.seed),
        "parts": ";".join(str(i) for i in item.parts) or "all",
        "pedal_presses": str(len(performance.sustain)),
        "stems": stems_text,
    }
    with atomic_path(meta_path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(row), encoding="utf-8")
    labels = sustained_notes(performance.notes, performance.channels, performance.sustain)
    write_musicnet_labels(label_path, labels, list(performance.beats), overwrite=True)
    return row


def render_stems(
    renderer: Renderer, events: list[tuple[float, float, int, int, int]], programs: dict[int, int],
    settings: RenderSettings, controls: list[tuple[float, int, int, int]], job: _Job, split: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[tuple[int, str, StemTimbre]]]:
    """Render each channel on its own and mix the stems.

    Each stem is rendered through the item's soundfont or, in train and validation
    items, with ``job.stems.sample_font_prob``, a real-sample soundfont that fits its
    instrument and range; brought to a common RMS level; given a random gain and, in
    train and validation items, a random spectral envelope (:mod:`amtcli.datasets.timbre`);
    then summed and peak-normalised to ``settings.peak``.

    Returns:
        (audio (n_samples,) float32, [(first channel, soundfont path, timbre)] per stem).
    """
    rate = settings.sample_rate
    end_s = max(offset for _, offset, *_ in events)
    n_samples = int(np.ceil((end_s + settings.tail_s) * rate))
    mix = np.zeros(n_samples, dtype=np.float64)
    stems = []
    trained = split in ("train", "validation")
    groups: dict[int, list[int]] = {}   # one stem per melodic channel, one per keyboard / guitar
    for channel in sorted(programs):
        key = -1 - programs[channel] if programs[channel] in KEYBOARDS else channel
        groups.setdefault(key, []).append(channel)
    for channels in groups.values():
        own = [e for e in events if e[2] in channels]
        if not own:
            continue
        program = programs[channels[0]]
        pitches = np.array([e[3] for e in own])
        font, presets = settings.soundfont, None
        if trained and job.sample_fonts and rng.random() < job.stems.sample_font_prob:
            sample = pick_sample_font(job.sample_fonts, program, pitches, rng)
            if sample is not None:
                font, presets = str(find_soundfont(sample.file, job.search_path)), {c: sample.preset for c in channels}
        stem = renderer.render(own, {c: programs[c] for c in channels}, replace(settings, soundfont=font),
                               presets=presets, controls=[c for c in controls if c[1] in channels],
                               n_samples=n_samples, normalise=False).astype(np.float64)
        loud = np.abs(stem) > 1e-4
        rms = float(np.sqrt(np.mean(stem[loud] ** 2))) if loud.any() else 0.0
        if rms <= 0:
            continue
        style = job.stems.timbre if trained else replace(job.stems.timbre, prob=0.0)
        timbre = draw_timbre(style, float(np.median(pitches)), rng)
        mix += apply_timbre((stem / rms).astype(np.float32), rate, timbre)
        stems.append((channels[0], font, timbre))
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    if peak > 0:
        mix *= settings.peak / peak
    return mix.astype(np.float32), stems


def _render_safely(job: _Job) -> tuple[str, dict | None, str]:
    try:
        return job.item.item_id, render_item(job), ""
    except AmtError as exc:
        return job.item.item_id, None, str(exc)
    except Exception as exc:  # one bad item must not stop the batch; it is reported
        return job.item.item_id, None, f"{type(exc).__name__}: {exc}"


def is_done(out_dir: Path, item: PlanItem) -> bool:
    """True when the item's labels (written last) and its audio and metadata exist."""
    return all(p.exists() for p in item_paths(out_dir, item.item_id, item.split))


# ----------------------------------------------------------------------------- outputs


def write_metadata(out_dir: Path, items: list[PlanItem]) -> int:
    """Write ``metadata.csv`` for every finished item; returns the number of rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METADATA_COLUMNS, lineterminator="\n")
    writer.writeheader()
    n = 0
    for item in sorted(items, key=lambda i: (SPLITS.index(i.split), i.item_id)):
        meta_path = item_paths(out_dir, item.item_id, item.split)[2]
        if not is_done(out_dir, item):
            continue
        row = json.loads(meta_path.read_text(encoding="utf-8"))
        writer.writerow({k: row.get(k, "") for k in METADATA_COLUMNS})
        n += 1
    with atomic_path(out_dir / "metadata.csv", overwrite=True) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return n


def check_recipe_files(recipe: Recipe) -> None:
    """Fail early (DataError naming the package) if FluidSynth or a soundfont is missing."""
    from amtcli.datasets.render import import_fluidsynth

    import_fluidsynth()
    fonts = recipe.train_soundfonts + recipe.test_soundfonts + tuple(f.file for f in recipe.sample_fonts)
    fonts += recipe.piano_test.soundfonts if recipe.piano_test is not None else ()
    for font in fonts:
        recipe.soundfont_file(font)


@dataclass
class SynthReport:
    """What one ``synthesize`` run did.

    Attributes:
        planned: items in the plan; rendered: rendered now; skipped: already there.
        failed: (item id, reason) of items that could not be rendered.
        skipped_sources: (source path, reason) of sources that could not be read.
        elapsed_s: wall-clock seconds of the whole run.
    """

    planned: int = 0
    rendered: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped_sources: list[tuple[str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0


def render_plan(
    items: list[PlanItem], out_dir: Path, recipe: Recipe, jobs: int, cache_dir: Path,
    report: SynthReport, log: Log, progress: Callable[[int], None],
) -> None:
    """Render every unfinished item in ``jobs`` processes, grouped by soundfont."""
    todo = [i for i in items if not is_done(out_dir, i)]
    report.skipped = len(items) - len(todo)
    progress(report.skipped)
    todo.sort(key=lambda i: (i.soundfont, i.item_id))
    job_list = [
        _Job(i, str(out_dir), recipe.sample_rate, recipe.tail_s, recipe.style, str(cache_dir), recipe.vibrato,
             recipe.attack, recipe.stems, recipe.sample_fonts, recipe.search_path) for i in todo
    ]

    def handle(result: tuple[str, dict | None, str]) -> None:
        item_id, row, error = result
        progress(1)
        if row is None:
            report.failed.append((item_id, error))
            log(f"[red]failed[/] {item_id}: {error}")
        else:
            report.rendered += 1

    if jobs <= 1 or len(job_list) <= 1:
        for job in job_list:
            handle(_render_safely(job))
        return
    with multiprocessing.get_context("fork").Pool(jobs, maxtasksperchild=200) as pool:
        for result in pool.imap_unordered(_render_safely, job_list):
            handle(result)


def recipe_with_hours(recipe: Recipe, hours: float | None) -> Recipe:
    """The recipe with its total hours replaced (ConfigError unless hours > 0)."""
    if hours is None:
        return recipe
    if not hours > 0:
        raise ConfigError(f"--hours must be positive, got {hours}")
    return Recipe(**{**{f.name: getattr(recipe, f.name) for f in fields(Recipe)}, "hours": float(hours)})


def write_card(out_dir: Path, recipe: Recipe, seed: int, report: SynthReport) -> None:
    """Write ``DATASET.md``: how the corpus was made and its numbers."""
    from amtcli.datasets.stats import dataset_stats, format_card

    stats = dataset_stats(out_dir)
    total = stats.total
    mix = _recordings_table(out_dir)
    sources = "\n".join(
        f"| {s.name} | {s.kind} | {s.share:g} | {', '.join(s.include) or s.folder or '-'} | "
        f"{', '.join(n for n, w in s.ensembles if w > 0)} |"
        for s in recipe.sources
    )
    text = f"""# Synthetic transcription corpus

Rendered by `amtcli data synth` (seed {seed}) from symbolic music with FluidSynth.
{total.hours:.2f} hours, {total.notes:,} notes in {total.items} recordings; audio is mono
16-bit FLAC at {recipe.sample_rate} Hz, labels are MusicNet CSVs (sample indices at
44.1 kHz, 1-based GM programs) listing exactly the notes rendered.

- Splits are by work (movements of one piece stay together).
- Train and validation soundfonts: {', '.join(Path(f).name for f in recipe.train_soundfonts)}.
- Test soundfont (held out, never used for train/validation): {', '.join(Path(f).name for f in recipe.test_soundfonts)}.
- Performance: drifting tempo (+-{recipe.style.tempo_drift:.0%}), phrase dynamics, onset jitter
  ({recipe.style.onset_jitter_s * 1000:.0f} ms), duration jitter, legato/staccato phrases; reverb,
  chorus, channel volumes and level randomized per recording.{_vibrato_line(recipe.vibrato)}{_attack_line(recipe.attack)}{_v3_lines(recipe)}
- Sources skipped because they could not be read: {len(report.skipped_sources)}.
- Recordings that failed to render: {len(report.failed)}.

## Sources

| source | kind | share | files | ensembles |
|---|---|---:|---|---|
{sources}

## Numbers

{format_card(stats)}
### Recordings by source and by ensemble (all splits)

{mix}
See `metadata.csv` for each recording's work, ensemble, instruments, soundfont, render
settings, duration and seed, and `recipe.toml` for the recipe used.
"""
    with atomic_path(out_dir / "DATASET.md", overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _v3_lines(recipe: Recipe) -> str:
    """Card bullets for part subsets, stems, sample soundfonts, pedal and the piano test split."""
    lines = []
    stems = recipe.stems
    if stems.solo_share or stems.duet_share:
        lines.append(f"Single lines and duets: {stems.solo_share:.0%} of the items of multi-part ensembles "
                     f"without keyboard keep one part, {stems.duet_share:.0%} keep two (table below).")
    if stems.enabled:
        lines.append("Stems: every part (every keyboard or guitar) is rendered on its own, brought to a common "
                     f"level and mixed with a random gain; {stems.timbre.prob:.0%} of the train / validation "
                     "stems get a random spectral envelope (formant-like peaks, brightness, and mostly on "
                     "low parts a roll-off that weakens the fundamental).")
    if recipe.sample_fonts:
        names = ", ".join(sorted({Path(f.file).name for f in recipe.sample_fonts}))
        lines.append(f"Real recorded instruments: with probability {stems.sample_font_prob:.0%} a train / "
                     f"validation part whose instrument and range fit one is played by a single-instrument "
                     f"soundfont built from real samples ({names}); where each comes from and its "
                     "license: docs/training.md in the amtcli repository.")
    if recipe.style.pedal_prob > 0:
        lines.append(f"Sustain pedal: pianos use it in {recipe.style.pedal_prob:.0%} of the performances "
                     "(changed after each new harmony, every 1, 2 or 4 beats); labels follow the MAESTRO "
                     "convention: a note released under the pedal lasts until the pedal is lifted or the "
                     "key is struck again.")
    if recipe.piano_test is not None:
        lines.append(f"Split `piano_test`: every test work of {', '.join(recipe.piano_test.sources)} once more "
                     f"as solo piano in the held-out {', '.join(Path(f).name for f in recipe.piano_test.soundfonts)} "
                     "(for salamander-grand-piano.sf3: the Salamander Grand Piano V3 samples by Alexander Holm, "
                     "CC BY 3.0, built by benchmarks/build_salamander_sf3.py).")
    return "".join(f"\n- {line}" for line in lines)


def _vibrato_line(style: VibratoStyle) -> str:
    if style.prob <= 0:
        return ""
    return (f"\n- Vibrato on sustained instruments in {style.prob:.0%} of the train and validation"
            f" recordings ({style.cents[0]:.0f}-{style.cents[1]:.0f} cents,"
            f" {style.rate_hz[0]:.1f}-{style.rate_hz[1]:.1f} Hz); none in the test split.")


def _attack_line(style: AttackStyle) -> str:
    if style.prob <= 0:
        return ""
    return (f"\n- Slow attacks on sustained instruments in {style.prob:.0%} of the train and validation"
            f" recordings (expression swells from {style.floor[0]:.0%}-{style.floor[1]:.0%} over"
            f" {style.attack_s[0] * 1000:.0f}-{style.attack_s[1] * 1000:.0f} ms); none in the test split.")


def source_of(item_id: str) -> str:
    """The source collection of a recording id (``"<source>-<work>-<render>"``):
    ``"chorales-bach_bwv103.6-0"`` -> ``"chorales"``."""
    return item_id.split("-", 1)[0]


def _recordings_table(out_dir: Path) -> str:
    """Markdown tables of recordings and hours per source and per ensemble, from metadata.csv."""
    with open(out_dir / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    lines = []
    for title, key in (("source", lambda r: source_of(r["id"])), ("ensemble", lambda r: r["ensemble"])):
        counts: dict[str, list[float]] = {}
        for row in rows:
            entry = counts.setdefault(key(row), [0, 0.0])
            entry[0] += 1
            entry[1] += float(row["duration_s"]) / 3600
        lines += [f"| {title} | recordings | hours |", "|---|---:|---:|"]
        lines += [f"| {k} | {n} | {h:.2f} |" for k, (n, h) in sorted(counts.items(), key=lambda kv: -kv[1][1])]
        lines.append("")
    if rows and "parts" in rows[0]:
        lines += _stems_tables(rows)
    return "\n".join(lines)


def _stems_tables(rows: list[dict]) -> list[str]:
    """Card tables of a corpus rendered with part subsets, pedal or several soundfonts:
    hours by the parts kept, pedal use on piano recordings, and soundfonts per split."""
    hours = lambda selected: sum(float(r["duration_s"]) for r in selected) / 3600
    total = hours(rows) or 1.0
    kinds = {"all parts": [r for r in rows if r.get("parts", "all") in ("", "all")],
             "single line": [r for r in rows if r.get("parts", "all") not in ("", "all") and ";" not in r["parts"]],
             "two parts": [r for r in rows if ";" in r.get("parts", "")]}
    lines = ["| parts kept | recordings | hours | share of hours |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {len(v)} | {hours(v):.2f} | {hours(v) / total:.0%} |" for k, v in kinds.items()]
    piano = [r for r in rows if "piano" in r.get("instruments", "").split(";")]
    pedalled = [r for r in piano if int(r.get("pedal_presses") or 0) > 0]
    presses = sum(int(r["pedal_presses"]) for r in pedalled)
    lines += ["", f"Sustain pedal: {len(pedalled)} of {len(piano)} recordings with a piano "
              f"({hours(pedalled):.2f} of {hours(piano):.2f} h) use it, {presses:,} presses in all.", ""]
    fonts: dict[tuple[str, str], int] = {}
    for row in rows:
        for font in row.get("soundfont", "").split("+"):
            fonts[(row["split"], font)] = fonts.get((row["split"], font), 0) + 1
    lines += ["| split | soundfont | recordings using it |", "|---|---|---:|"]
    lines += [f"| {split} | {font} | {n} |" for (split, font), n in
              sorted(fonts.items(), key=lambda kv: (SPLITS.index(kv[0][0]) if kv[0][0] in SPLITS else 9, -kv[1]))]
    lines.append("")
    return lines


def synthesize(
    out_dir: Path, recipe: Recipe, seed: int = 0, jobs: int = 1, cache_dir: Path | None = None,
    console=None,
) -> SynthReport:
    """Plan, render and describe a whole corpus in ``out_dir`` (resuming a previous run).

    Progress and skipped sources are printed to ``console`` (a rich Console; a quiet
    one when None). Raises DataError if FluidSynth or a soundfont is missing.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = console or Console(quiet=True)
    start = time.monotonic()
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    check_recipe_files(recipe)
    shared = set(recipe.test_soundfonts) & set(recipe.train_soundfonts)
    if shared:
        console.print(f"[yellow]warning:[/] test soundfont also used for training: {', '.join(sorted(shared))}")
    cache_dir = cache_dir or src.default_cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = out_dir / "recipe.toml"
    if previous.is_file() and previous.read_text(encoding="utf-8") != (recipe.text or ""):
        raise DataError(f"{out_dir} holds a corpus rendered from another recipe (see its recipe.toml); "
                        "render into a new folder")
    with atomic_path(out_dir / "recipe.toml", overwrite=True) as tmp:
        tmp.write_text(recipe.text or "", encoding="utf-8")
    report = SynthReport()
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        log = _logger(bar)
        parse_task = bar.add_task("parse sources", total=None)
        items, report.skipped_sources = plan_items(
            recipe, seed, jobs, cache_dir, log, lambda n: bar.advance(parse_task, n)
        )
        bar.update(parse_task, total=bar.tasks[parse_task].completed)
        report.planned = len(items)
        hours = sum(i.estimated_s for i in items) / 3600
        log(f"planned {len(items)} recordings, about {hours:.2f} h")
        render_task = bar.add_task("render", total=len(items))
        tick = _ticker(console, len(items), lambda n: bar.advance(render_task, n))
        render_plan(items, out_dir, recipe, jobs, cache_dir, report, log, tick)
    write_metadata(out_dir, items)
    write_card(out_dir, recipe, seed, report)
    report.elapsed_s = time.monotonic() - start
    return report


def _logger(bar) -> Log:
    return lambda message: bar.console.print(message)


def _ticker(console, total: int, advance: Callable[[int], None]) -> Callable[[int], None]:
    """Advance the bar; on a non-terminal console also print a line every 5 %."""
    done = [0, 0]

    def tick(n: int) -> None:
        advance(n)
        done[0] += n
        step = max(total // 20, 1)
        if not console.is_terminal and done[0] // step > done[1]:
            done[1] = done[0] // step
            console.print(f"rendered {done[0]}/{total}")

    return tick
