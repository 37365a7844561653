"""A checkpoint's validation score, measured exactly as `amtcli train` measures it at each
evaluation: the first N validation recordings of a dataset, the first S seconds of each,
the training loop's decoding candidates (`amtcli.training.loop.validate`).

Use it to put a starting checkpoint on the same scale as a run's metrics.csv, e.g. the
stage-1 model before a fine-tune (the loop does not evaluate step 0):

    python benchmarks/validation_score.py models/seq2seq --dataset data/synth-v2 --files 12 --max-s 20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    from amtcli.checkpoint import load_checkpoint
    from amtcli.training.data import load_recordings, split_pairs
    from amtcli.training.loop import validate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--files", type=int, default=12, help="the recipe's validation_files")
    parser.add_argument("--max-s", type=float, default=30.0, help="the recipe's validation_max_s")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_checkpoint(args.checkpoint)
    # the loop validates with default decoding options, not the checkpoint's tuned ones
    loaded.decode = type(loaded.decode)()
    recordings = load_recordings(split_pairs(args.dataset, args.split)[: args.files], loaded.features, args.max_s)
    scores = validate(loaded, recordings)
    print(json.dumps({"checkpoint": str(args.checkpoint), "dataset": str(args.dataset), "split": args.split,
                      "files": len(recordings), "max_s": args.max_s,
                      **{k: round(v, 4) for k, v in scores.items()}}))


if __name__ == "__main__":
    main()
