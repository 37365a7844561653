"""How sharply a model's onset head marks note starts: its mean onset probability at each
frame offset from the labelled onsets, and the share of notes whose onset probability
peaks above 0.5 within +-3 frames.

For a checkpoint with an onset head (``onf``) and a MusicNet-layout split, e.g. the
synthetic piano test split of corpus v3. Run by hand, not in CI:

    python benchmarks/onset_sharpness.py models/onf --dataset data/corpus-v3 --split piano_test \
        --json benchmarks/results/corpus-v3/onset-sharpness-onf.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch

OFFSETS = range(-3, 4)   #: frames around the labelled onset frame


def main() -> None:
    from amtcli.audio import Audio
    from amtcli.checkpoint import load_checkpoint
    from amtcli.inference import stitched_posteriors
    from amtcli.training.data import load_recordings, split_pairs
    from amtcli.types import PIANO_LOW

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, nargs="+")
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--split", default="piano_test")
    parser.add_argument("--max-s", type=float, default=30.0, help="seconds of each recording used")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for folder in args.checkpoint:
        model = load_checkpoint(folder)
        channels = getattr(model.module, "CHANNELS", ())
        if "onset" not in channels:
            raise SystemExit(f"{folder}: no onset head")
        recordings = load_recordings(split_pairs(args.dataset, args.split), model.features, args.max_s)
        at_offset = {offset: [] for offset in OFFSETS}
        peaks = []
        for recording in recordings:
            posteriors = np.concatenate(list(stitched_posteriors(
                model, Audio(recording.samples, model.features.sample_rate))))
            onsets = posteriors[..., channels.index("onset")]
            for note in recording.notes:
                key, frame = note.pitch - PIANO_LOW, int(round(note.onset_s * model.features.frame_rate_hz))
                if 0 <= key < onsets.shape[1] and 3 <= frame < len(onsets) - 3:
                    for offset in OFFSETS:
                        at_offset[offset].append(onsets[frame + offset, key])
                    peaks.append(onsets[frame - 3 : frame + 4, key].max())
        row = {"checkpoint": str(folder), "notes": len(peaks),
               "mean_onset_probability_by_frame_offset": {str(o): float(np.mean(v)) for o, v in at_offset.items()},
               "share_peaking_above_0.5": float(np.mean(np.array(peaks) > 0.5))}
        rows.append(row)
        means = " ".join(f"{o:+d}:{np.mean(v):.3f}" for o, v in at_offset.items())
        print(f"{folder}: {len(peaks)} notes; mean onset probability by frame offset {means}; "
              f"peak > 0.5 for {row['share_peaking_above_0.5']:.0%}")
    if args.json:
        report = {"date": date.today().isoformat(), "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
                  "dataset": str(args.dataset), "split": args.split, "max_s": args.max_s, "rows": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
