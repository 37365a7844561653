"""Where a CTC checkpoint puts its notes in time, around the labelled onsets.

For every labelled note of a split (first --max-s seconds of each recording), prints
the mean frame-activity probability of its pitch and the share of its pitch's token
mass (summed over slots) at frame offsets -3 .. +3 from the labelled onset frame
(20 ms frames). A model that places notes well has its token mass peaked at 0 and its
frame probability rising at 0, not before. Run by hand, not in CI:

    python benchmarks/ctc_onset_timing.py models/ctc --dataset data/synth-v1 --split validation
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

OFFSETS = range(-3, 4)


def main() -> None:
    from amtcli.audio import Audio
    from amtcli.checkpoint import load_checkpoint
    from amtcli.inference import stitched_posteriors
    from amtcli.training.data import load_recordings, split_pairs
    from amtcli.types import PIANO_LOW

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--max-s", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_checkpoint(args.checkpoint)
    layout = model.module.layout
    rate = model.features.frame_rate_hz
    frame_sums, token_sums, n_notes = np.zeros(len(OFFSETS)), np.zeros(len(OFFSETS)), 0
    for rec in load_recordings(split_pairs(args.dataset, args.split), model.features, args.max_s):
        rows = np.concatenate(list(stitched_posteriors(model, Audio(rec.samples, model.features.sample_rate, rec.name))))
        log_probs, frames, _ = layout.split(rows)
        token_mass = np.exp(log_probs).sum(axis=1)                 # (n_frames, 90): expected emissions per frame
        for note in rec.notes:
            t, key = int(round(note.onset_s * rate)), note.pitch - PIANO_LOW
            if not (0 <= key < 88 and 3 <= t < len(frames) - 3):
                continue
            window = token_mass[t - 3 : t + 4, key]
            frame_sums += frames[t - 3 : t + 4, key]
            token_sums += window / max(float(window.sum()), 1e-9)
            n_notes += 1
    print(f"{args.checkpoint}: {n_notes} labelled notes of {args.dataset} {args.split} (first {args.max_s:g} s each)")
    print("offset (frames of 20 ms)      " + " ".join(f"{o:+6d}" for o in OFFSETS))
    print("mean frame probability        " + " ".join(f"{v / n_notes:6.3f}" for v in frame_sums))
    print("share of the pitch's tokens   " + " ".join(f"{v / n_notes:6.3f}" for v in token_sums))


if __name__ == "__main__":
    main()
