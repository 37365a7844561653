"""The ``evaluate`` command: score estimate files against reference files.

A pair is either two files, or two folders whose note files (``.csv``, ``.mid``,
``.midi``, searched recursively) are paired by their path relative to the folder
without the suffix -- for flat folders, simply by file stem (``ref/a.csv`` with
``est/a.mid``). When one folder holds several note files with the same stem, the CSV
wins over the MIDI file. Files present on one side only are skipped and reported.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape

from amtcli.atomic import atomic_path
from amtcli.errors import AmtError, LabelError
from amtcli.types import EvalResult

#: Note-file suffixes in order of preference when two share a stem.
NOTE_SUFFIXES = (".csv", ".mid", ".midi")


@dataclass(frozen=True)
class ScoreReport:
    """What :func:`score_paths` found.

    Attributes:
        results: one EvalResult per scored pair, sorted by name.
        unpaired: names (relative paths) present in only one folder, e.g.
            ``"reference only: a/b.csv"``; for a dataset split, one line per file it
            leaves out (:func:`~amtcli.datasets.layout.musicnet_left_out`).
        failed: one line per pair that could not be scored (a malformed file).
        audio_s, transcribe_s: seconds of audio transcribed and seconds spent in
            ``transcribe`` (model and decoding, no I/O), when a model was run.
        tokens: name -> token measures of the "CTC vs. Seq2Seq" study
            (:func:`amtcli.evaluation.token_metrics`), when a model was run.
        unlabelled: names whose estimate has no instrument labels, scored pooled only
            although per-instrument scores were asked for (see :func:`_evaluate`).
        left_out: one line per MIDI file whose drum or zero-length notes were skipped.
    """

    results: list[EvalResult]
    unpaired: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    audio_s: float = 0.0
    transcribe_s: float = 0.0
    tokens: dict[str, dict[str, float]] = field(default_factory=dict)
    unlabelled: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)


def _note_files(folder: Path) -> dict[str, Path]:
    """``{relative path without suffix (posix): file}`` for the note files under ``folder``."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        suffix = path.suffix.lower()
        if suffix not in NOTE_SUFFIXES or path.name.startswith(".") or not path.is_file():
            continue
        key = path.relative_to(folder).with_suffix("").as_posix()
        held = found.get(key)
        if held is None or NOTE_SUFFIXES.index(suffix) < NOTE_SUFFIXES.index(held.suffix.lower()):
            found[key] = path
    return found


def _pairs(ref: Path, est: Path) -> tuple[list[tuple[str, Path, Path | None]], list[str]]:
    """(name, reference, estimate) pairs, and one line per unpaired file. A reference
    without an estimate is paired with None (scored as all missed); an estimate without
    a reference is only listed."""
    if ref.is_file() and est.is_file():
        return [(est.stem, ref, est)], []
    if ref.is_dir() and est.is_dir():
        ref_files, est_files = _note_files(ref), _note_files(est)
        names = sorted(set(ref_files) & set(est_files))
        ref_only = sorted(set(ref_files) - set(est_files))
        est_only = sorted(set(est_files) - set(ref_files))
        unpaired = [f"reference only: {ref_files[k].relative_to(ref)}" for k in ref_only] + [
            f"estimate only: {est_files[k].relative_to(est)}" for k in est_only
        ]
        if not names:
            raise LabelError(f"no file in {est} has the same name as a file in {ref}")
        pairs = [(name, ref_files[name], est_files.get(name)) for name in sorted(set(names) | set(ref_only))]
        return pairs, unpaired
    for path in (ref, est):
        if not path.exists():
            raise LabelError(f"{path}: no such file or folder")
    raise LabelError(f"give two files or two folders, not {ref} and {est}")


def _evaluate(reference, estimate, name: str, by_instrument: bool, unlabelled: list[str],
              errors: bool = False) -> EvalResult:
    """:func:`~amtcli.evaluation.evaluate_notes`, except that an estimate without any
    instrument label (amtcli's models do not tell instruments apart) is scored pooled only
    and its name added to ``unlabelled``: matched per instrument, every reference
    instrument would score 0 against one "unknown" row."""
    from amtcli.evaluation import evaluate_notes

    if by_instrument and estimate and all(note.program is None for note in estimate):
        unlabelled.append(name)
        by_instrument = False
    return evaluate_notes(reference, estimate, name=name, by_instrument=by_instrument, errors=errors)


def score_paths(ref: Path, est: Path, by_instrument: bool = False, errors: bool = False) -> ScoreReport:
    """Score one estimate file against one reference file, or two folders pair by pair
    (with ``errors``, also classify the unmatched notes).

    Raises LabelError when the paths do not exist, mix a file with a folder, or the
    folders share no file name. A reference without an estimate is scored as if the
    estimate were empty (every note missed, F1 0) and listed in ``unpaired``. A
    malformed file fails only its own pair (listed in ``failed``); the other pairs are
    still scored.
    """
    from amtcli.references import load_notes

    pairs, unpaired = _pairs(Path(ref), Path(est))
    results: list[EvalResult] = []
    failed: list[str] = []
    unlabelled: list[str] = []
    left_out: list[str] = []
    for name, ref_path, est_path in pairs:
        try:
            reference = load_notes(ref_path, left_out)
            estimate = load_notes(est_path, left_out) if est_path is not None else []
        except AmtError as exc:
            if len(pairs) == 1:
                raise
            failed.append(str(exc))
            continue
        results.append(_evaluate(reference, estimate, name, by_instrument, unlabelled, errors))
    return ScoreReport(results=results, unpaired=unpaired, failed=failed, unlabelled=unlabelled, left_out=left_out)


def score_recordings(model, items: list[tuple[str, Path, Path]], options=None, by_instrument: bool = False,
                     png_dir: Path | None = None, overwrite: bool = False, console=None,
                     errors: bool = False) -> ScoreReport:
    """Transcribe each (name, audio, labels) item with a loaded model and score it.

    ``options`` defaults to the model's tuned DecodeOptions. With ``png_dir``, a piano
    roll of the prediction over the reference is written per item. An item that fails is
    reported in ``failed`` and the rest go on.
    """
    import time

    from amtcli.audio import load_audio
    from amtcli.evaluation import token_metrics
    from amtcli.batching import transcribe
    from amtcli.references import load_notes
    from amtcli.writers.pianoroll import write_pianoroll

    results, failed, audio_s, transcribe_s, tokens, unlabelled = [], [], 0.0, 0.0, {}, []
    for index, (name, audio_path, label_path) in enumerate(items, start=1):
        try:
            reference = load_notes(label_path)
            warnings: list[str] = []
            audio = load_audio(audio_path, model.features.sample_rate, warnings)
            for line in warnings if console is not None else []:
                _stderr_like(console).print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False,
                                            soft_wrap=True)
            started = time.perf_counter()
            estimate = transcribe(model, audio, options)
            transcribe_s += time.perf_counter() - started
            audio_s += audio.duration_s
            results.append(_evaluate(reference, list(estimate.notes), name, by_instrument, unlabelled, errors))
            tokens[name] = token_metrics(reference, list(estimate.notes))
            if png_dir is not None:
                write_pianoroll(estimate, png_dir / f"{name}.png", reference=reference, overwrite=overwrite)
        except AmtError as exc:
            failed.append(str(exc))
            if console is not None:
                console.print(f"failed {index}/{len(items)}: {name}", highlight=False)
            continue
        if console is not None:
            console.print(f"scored {index}/{len(items)}: {name}", highlight=False)
    return ScoreReport(results=sorted(results, key=lambda r: r.name), failed=failed, audio_s=audio_s,
                       transcribe_s=transcribe_s, tokens=tokens, unlabelled=sorted(unlabelled))


def _stderr_like(console):
    """A console on stderr beside ``console`` (warnings and errors go there)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, quiet=console.quiet)


def score_model(model_name: str, dataset: Path, split: str, device: str = "auto", by_instrument: bool = False,
                png_dir: Path | None = None, overwrite: bool = False, limit: int | None = None,
                console=None, errors: bool = False) -> ScoreReport:
    """Transcribe every recording of a MusicNet-layout split and score it against its labels."""
    from amtcli.checkpoint import load_checkpoint
    from amtcli.inference import pick_device
    from amtcli.registry import resolve_model
    from amtcli.training.data import split_pairs

    name, folder = resolve_model(model_name)
    model = load_checkpoint(folder, pick_device(device), name=name)
    from dataclasses import replace

    from amtcli.datasets.layout import musicnet_left_out

    pairs = split_pairs(dataset, split)
    items = [(audio.stem, audio, labels) for audio, labels in pairs[:limit]]
    report = score_recordings(model, items, None, by_instrument, png_dir, overwrite, console, errors)
    return replace(report, unpaired=musicnet_left_out(dataset, split, pairs))


def _cells(result: EvalResult, label: str) -> list[str]:
    return [
        label,
        f"{result.note_onset.precision:.3f}",
        f"{result.note_onset.recall:.3f}",
        f"{result.note_onset.f1:.3f}",
        f"{result.note_offset.f1:.3f}",
        f"{result.frame.f1:.3f}",
        str(result.n_ref),
        str(result.n_est),
    ]


def print_results(results: list[EvalResult], console) -> None:
    """Print one table: a row per file (with indented rows per instrument, if scored)
    and, for more than one file, a mean row (the scores' means, the note counts' totals).
    ``console`` is a ``rich.console.Console``.
    """
    from rich.table import Table

    from amtcli.evaluation import mean_result

    table = Table(title="note and frame scores (onset tolerance 50 ms)")
    table.add_column("file", overflow="fold")       # long names wrap instead of being cut
    for column in ("onset P", "onset R", "onset F1", "offset F1", "frame F1", "n_ref", "n_est"):
        table.add_column(column, justify="right")

    def add(result: EvalResult, label: str, style: str | None = None) -> None:
        table.add_row(*_cells(result, label), style=style)
        for key, sub in result.by_instrument.items():
            table.add_row(*_cells(sub, f"  {key}"), style="dim")

    for result in results:
        add(result, result.name)
    if len(results) > 1:
        table.add_section()
        add(mean_result(results), "mean (n_ref, n_est: totals)", style="bold")
    console.print(table)


def print_errors(results: list[EvalResult], console) -> None:
    """Print the unmatched notes by class (:mod:`amtcli.note_errors`): a row per file with
    error counts and, for more than one file, a total row. Files without counts are skipped."""
    from rich.table import Table

    from amtcli.types import ErrorCounts

    counted = [r for r in results if r.errors is not None]
    if not counted:
        return
    columns = ("hit", "missed", *ErrorCounts.ESTIMATE_CLASSES)
    table = Table(title="unmatched notes by class (estimated notes: harmonic ... other; reference notes: missed)")
    table.add_column("file", overflow="fold")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for result in counted:
        counts = result.errors.as_dict()
        table.add_row(result.name, *(str(counts[c]) for c in columns))
    if len(counted) > 1:
        table.add_section()
        total = sum((r.errors for r in counted), ErrorCounts()).as_dict()
        table.add_row("total", *(str(total[c]) for c in columns), style="bold")
    console.print(table)


def write_json(results: list[EvalResult], path: str | os.PathLike, overwrite: bool = False) -> None:
    """Write ``{"files": [per-file scores], "mean": mean scores or null}`` as JSON, atomically."""
    from amtcli.evaluation import mean_result

    document = {
        "files": [r.as_dict() for r in results],
        "mean": mean_result(results).as_dict() if results else None,
    }
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
