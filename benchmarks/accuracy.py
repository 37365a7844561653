"""Accuracy benchmark: note-onset, note-with-offset and frame F1 per recording and mean,
with the token measures of the "CTC vs. Seq2Seq" study (token F1, token error rate,
length ratio over onset-ordered pitch tokens) beside them.

Scores one or more models on any of:
  --realdev DIR       folders each holding mix.wav + notes.csv (e.g. ../shared/data/realdev)
  --realdev-solo DIR  folders each holding one INSTRUMENT.wav + notes.csv
                      (e.g. ../shared/data/realdev-solo)
  --dataset DIR       a MusicNet-layout dataset; --split picks the split(s) (default test;
                      comma-separated for several, e.g. test,piano_test)
  --piano-test DIR    the piano_test split of a corpus-v3 dataset (solo piano in a
                      held-out real piano), beside another --dataset

Every file's unmatched notes are also counted by class (``amtcli eval --errors``); the
tables show the totals. Prints a table per model and set and writes JSON (--json). Run by
hand, not in CI:

    python benchmarks/accuracy.py --model onf --realdev ../shared/data/realdev \
        --realdev-solo ../shared/data/realdev-solo \
        --dataset /work/data/synth-v1 --json benchmarks/results/accuracy.json
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch


def realdev_items(root: Path) -> list[tuple[str, Path, Path]]:
    """(name, audio, notes.csv) of each folder under ``root`` holding notes.csv and one
    WAV file (``mix.wav`` in realdev, ``INSTRUMENT.wav`` in realdev-solo)."""
    items = []
    for folder in sorted(p for p in root.iterdir() if (p / "notes.csv").is_file()):
        wavs = sorted(folder.glob("*.wav"))
        if len(wavs) == 1:
            items.append((folder.name, wavs[0], folder / "notes.csv"))
    return items


def dataset_items(root: Path, split: str, limit: int | None) -> list[tuple[str, Path, Path]]:
    from amtcli.training.data import split_pairs

    pairs = split_pairs(root, split)[:limit]
    return [(audio.stem, audio, labels) for audio, labels in pairs]


def add_set_arguments(parser: argparse.ArgumentParser) -> None:
    """--realdev, --dataset, --split and --limit: the recordings to score."""
    parser.add_argument("--realdev", type=Path, help="real recordings (a folder per piece: mix.wav, notes.csv)")
    parser.add_argument("--realdev-solo", type=Path,
                        help="real solo recordings (a folder per part: INSTRUMENT.wav, notes.csv)")
    parser.add_argument("--dataset", type=Path, help="a MusicNet-layout dataset, e.g. the synthetic corpus")
    parser.add_argument("--split", default="test", help="split(s) of --dataset, comma-separated (default: test)")
    parser.add_argument("--piano-test", type=Path, help="a corpus-v3 dataset whose piano_test split is scored too")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N files of the split")


def chosen_sets(args, parser: argparse.ArgumentParser) -> dict[str, list[tuple[str, Path, Path]]]:
    """{set title: (name, audio, labels) items} for the arguments of :func:`add_set_arguments`;
    a usage error when neither --realdev nor --dataset is given."""
    sets = {}
    if args.realdev:
        sets["realdev"] = realdev_items(args.realdev)
    if getattr(args, "realdev_solo", None):
        sets["realdev-solo"] = realdev_items(args.realdev_solo)
    if args.dataset:
        for split in args.split.split(","):
            sets[f"{args.dataset.name}:{split}"] = dataset_items(args.dataset, split, args.limit)
    if getattr(args, "piano_test", None):
        sets[f"{args.piano_test.name}:piano_test"] = dataset_items(args.piano_test, "piano_test", args.limit)
    if not sets:
        parser.error("give --realdev, --realdev-solo, --dataset and/or --piano-test")
    return sets


def score(model_name: str, items, threads: int, onset_threshold: float | None, frame_threshold: float | None) -> dict:
    from amtcli.checkpoint import load_checkpoint
    from amtcli.commands.evaluate import score_recordings
    from amtcli.evaluation import mean_result
    from amtcli.registry import resolve_model

    torch.set_num_threads(threads)
    name, folder = resolve_model(model_name)
    model = load_checkpoint(folder, "cpu", name=name)
    overrides = {"onset_threshold": onset_threshold, "frame_threshold": frame_threshold}
    options = replace(model.decode, **{k: v for k, v in overrides.items() if v is not None})
    report = score_recordings(model, items, options, errors=True)
    if report.failed:
        raise SystemExit("; ".join(report.failed))
    files = [{**r.as_dict(), "tokens": report.tokens[r.name]} for r in report.results]
    mean = mean_result(report.results).as_dict()
    mean["tokens"] = {key: sum(f["tokens"][key] for f in files) / len(files) for key in files[0]["tokens"]}
    return {
        "model": name,
        "family": model.family,
        "decode": vars(options),
        "files": files,
        "mean": mean,
        "audio_s": report.audio_s,
        "transcribe_s": report.transcribe_s,
    }


def print_table(title: str, report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title} - {report['model']}")
    for column in ("item", "onset P", "onset R", "onset F1", "onset+offset F1", "frame F1", "ref", "est",
                   "token F1", "TER", "length ratio"):
        table.add_column(column, justify="left" if column == "item" else "right")
    for row in report["files"] + [report["mean"]]:
        table.add_row(
            row["name"],
            f"{row['note_onset']['precision']:.3f}",
            f"{row['note_onset']['recall']:.3f}",
            f"{row['note_onset']['f1']:.3f}",
            f"{row['note_offset']['f1']:.3f}",
            f"{row['frame']['f1']:.3f}",
            str(row["n_ref"]),
            str(row["n_est"]),
            f"{row['tokens']['token_f1']:.3f}",
            f"{row['tokens']['token_error_rate']:.3f}",
            f"{row['tokens']['length_ratio']:.3f}",
        )
    Console(width=160).print(table)
    errors = report["mean"].get("errors")
    if errors:
        print("unmatched notes (totals): " + ", ".join(f"{k} {v}" for k, v in errors.items()))
    timing = report.get("timing", "model only")
    print(f"{report['audio_s']:.1f} s of audio transcribed in {report['transcribe_s']:.1f} s "
          f"({report['audio_s'] / max(report['transcribe_s'], 1e-9):.1f}x real time, {timing})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None, help="model name or folder (repeatable)")
    add_set_arguments(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--onset-threshold", type=float, default=None, help="default: the model's tuned value")
    parser.add_argument("--frame-threshold", type=float, default=None, help="default: the model's tuned value")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sets = chosen_sets(args, parser)
    out = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {args.threads} threads, "
           f"{platform.processor() or 'cpu'}", "results": []}
    for model in args.model or ["cnn"]:
        for title, items in sets.items():
            report = score(model, items, args.threads, args.onset_threshold, args.frame_threshold)
            report["set"] = title
            print_table(title, report)
            out["results"].append(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
