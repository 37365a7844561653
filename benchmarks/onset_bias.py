"""Onset-bias diagnostic: are a model's note onsets early or late against a set's labels?

For every reference note, the nearest estimated onset of the same pitch within 300 ms
gives a deviation (estimate - reference, in ms). The script prints their median and
quartiles and the share beyond +-50 ms (the note-onset tolerance), then the mean
note-onset F1 with every estimated note moved by each of ``--shifts`` ms.

This is a diagnostic, not a calibration: amtcli applies no such shift, and a shift
chosen on a set's own F1 would be fitted to that set. Run by hand, not in CI:

    python benchmarks/onset_bias.py --model cnn --realdev ../shared/data/realdev \
        --dataset data/synth-v1 --limit 8 --json benchmarks/results/onset-bias-cnn.json
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import numpy as np

from accuracy import dataset_items, realdev_items

SEARCH_S = 0.3  #: Largest |estimate - reference| onset paired for the deviation statistics.


def onset_deviations_ms(reference, estimate) -> list[float]:
    """(nearest same-pitch estimated onset - reference onset) in ms, per reference note
    that has an estimate of its pitch within SEARCH_S."""
    by_pitch: dict[int, np.ndarray] = {}
    for pitch in {n.pitch for n in estimate}:
        by_pitch[pitch] = np.array(sorted(n.onset_s for n in estimate if n.pitch == pitch))
    out = []
    for note in reference:
        onsets = by_pitch.get(note.pitch)
        if onsets is None:
            continue
        delta = onsets - note.onset_s
        nearest = float(delta[np.argmin(np.abs(delta))])
        if abs(nearest) <= SEARCH_S:
            out.append(nearest * 1000.0)
    return out


def shifted_onset_f1(reference, estimate, shift_ms: float) -> float:
    """Note-onset F1 (mir_eval, 50 ms) with every estimated note moved by ``shift_ms``."""
    from amtcli.evaluation import evaluate_notes
    from amtcli.types import Note

    moved = [Note(n.onset_s + shift_ms / 1000.0, n.offset_s + shift_ms / 1000.0, n.pitch, n.velocity, n.program,
                  n.confidence) for n in estimate]
    return evaluate_notes(reference, moved).note_onset.f1


def measure(model_name: str, items, shifts: list[float]) -> dict:
    from amtcli.audio import load_audio
    from amtcli.checkpoint import load_checkpoint
    from amtcli.batching import transcribe
    from amtcli.references import load_notes
    from amtcli.registry import resolve_model

    name, folder = resolve_model(model_name)
    model = load_checkpoint(folder, "cpu", name=name)
    deviations: list[float] = []
    f1 = {shift: [] for shift in shifts}
    for _, audio_path, label_path in items:
        reference = load_notes(label_path)
        estimate = list(transcribe(model, load_audio(audio_path, model.features.sample_rate), model.decode).notes)
        deviations += onset_deviations_ms(reference, estimate)
        for shift in shifts:
            f1[shift].append(shifted_onset_f1(reference, estimate, shift))
    d = np.array(deviations)
    return {
        "model": name,
        "recordings": len(items),
        "paired_notes": int(d.size),
        "median_ms": float(np.median(d)),
        "quartiles_ms": [float(np.percentile(d, 25)), float(np.percentile(d, 75))],
        "share_earlier_than_50ms": float(np.mean(d < -50)),
        "share_later_than_50ms": float(np.mean(d > 50)),
        "mean_onset_f1_by_shift_ms": {str(s): float(np.mean(v)) for s, v in f1.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--realdev", type=Path)
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, help="first N recordings of the dataset split")
    parser.add_argument("--shifts", default="-20,-10,0,10,20,30,40", help="ms, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    shifts = [float(s) for s in args.shifts.split(",")]
    sets = []
    if args.realdev:
        sets.append(("realdev", realdev_items(args.realdev)))
    if args.dataset:
        sets.append((f"{args.dataset.name}/{args.split}", dataset_items(args.dataset, args.split, args.limit)))
    if not sets:
        raise SystemExit("give --realdev and/or --dataset")
    rows = []
    for model in args.model:
        for set_name, items in sets:
            row = {"set": set_name, **measure(model, items, shifts)}
            rows.append(row)
            f1 = "  ".join(f"{k:>4} ms {v:.3f}" for k, v in row["mean_onset_f1_by_shift_ms"].items())
            print(f"{row['model']:>10} {set_name:<18} n={row['paired_notes']:<5} median {row['median_ms']:+6.1f} ms "
                  f"IQR [{row['quartiles_ms'][0]:+.0f}, {row['quartiles_ms'][1]:+.0f}] "
                  f"<-50 ms {row['share_earlier_than_50ms']:.2f} >+50 ms {row['share_later_than_50ms']:.2f}")
            print(f"{'':>10} onset F1 with the estimates shifted: {f1}")
    if args.json:
        payload = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {torch.get_num_threads()} "
                   "torch threads", "search_s": SEARCH_S, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
