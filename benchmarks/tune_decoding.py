"""Tune a checkpoint's decoding thresholds on a validation split (never on test or realdev).

Computes each recording's posteriorgram once, decodes it with every combination of
note-start rule ("onset" or "frame"), onset threshold, frame threshold, minimum
note duration, gap filling and re-onset rise (the last two act in frame-start
decoding) and blank offset (CTC models), and prints mean note-onset F1 (and note-with-offset and frame F1) per
combination. For seq2seq models, which decode tokens and not posteriors, it runs the
whole decoder once per choice of --token-grammar, --confirm, --onset-confirm, --rise, --end, --beam, --fusion,
--fusion-window and --reattack instead. With --write, stores the
combination with the best onset F1 (seq2seq ties, such as --end values, which move only
offsets, go to the better note-with-offset F1, then frame F1) in the checkpoint's
config.json ("decode"), which
`amtcli transcribe` then uses by default.

    python benchmarks/tune_decoding.py runs/onf/best --dataset data/synth-v1 --write
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from amtcli.audio import Audio
    from amtcli.checkpoint import load_checkpoint
    from amtcli.evaluation import evaluate_notes, mean_result
    from amtcli.batching import transcribe
    from amtcli.inference import decode_chunks, stitched_posteriors
    from amtcli.options import DecodeOptions
    from amtcli.training.data import load_recordings, split_pairs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--max-s", type=float, default=60.0, help="seconds of each recording used")
    parser.add_argument("--onset", default="0.2,0.3,0.4,0.5")
    parser.add_argument("--frame", default="0.3,0.4,0.5")
    parser.add_argument("--min-duration", default="0.05,0.1")
    parser.add_argument("--note-start", default="onset,frame")
    parser.add_argument("--gap-fill", default="0.04", help="gap_fill_s values (frame-start decoding)")
    parser.add_argument("--reonset", default="0",
                        help="reonset_threshold values (frame-start decoding, with or without an onset head)")
    parser.add_argument("--onset-support", default="0",
                        help="onset_support values (frame-start decoding of models with an onset head; 0: off)")
    parser.add_argument("--blank-offset", default="0", help="blank_offset values (CTC models)")
    parser.add_argument("--token-grammar", default="on,off", help="seq2seq models: decode with / without the grammar")
    parser.add_argument("--confirm", default="0", help="seq2seq models: confirm_threshold values (0: off)")
    parser.add_argument("--end", default="0", help="seq2seq models: end_threshold values (0: off)")
    parser.add_argument("--onset-confirm", default="0",
                        help="seq2seq models: onset_confirm_threshold values (0: off)")
    parser.add_argument("--rise", default="0", help="seq2seq models: rise_threshold values (0: off)")
    parser.add_argument("--beam", default="1", help="seq2seq models: beam widths (1: greedy)")
    parser.add_argument("--fusion", default="0", help="seq2seq models: fusion_weight values (0: off)")
    parser.add_argument("--reattack", default="0", help="seq2seq models: reattack_s values (0: off)")
    parser.add_argument("--fusion-window", default="0.02:0",
                        help="seq2seq models: fusion_before_s:fusion_after_s pairs, comma-separated")
    parser.add_argument("--soundfonts", default="",
                        help="use only the recordings rendered with these soundfonts (comma-separated file "
                             "names, from the dataset's metadata.csv), e.g. ones the model never trained on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="store the best pair in config.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_checkpoint(args.checkpoint)
    pairs = split_pairs(args.dataset, args.split)
    if args.soundfonts:
        pairs = rendered_with(pairs, args.dataset, set(args.soundfonts.split(",")))
    recordings = load_recordings(pairs, model.features, args.max_s)
    if getattr(model.module, "OUTPUT", "frames") == "tokens":
        rows = []
        try:
            windows = [tuple(map(float, pair.split(":"))) for pair in args.fusion_window.split(",")]
        except ValueError:
            parser.error(f"--fusion-window takes BEFORE:AFTER pairs in seconds, got {args.fusion_window!r}")
        if any(len(window) != 2 for window in windows):
            parser.error(f"--fusion-window takes BEFORE:AFTER pairs in seconds, got {args.fusion_window!r}")
        for grammar, confirm, onset_confirm, rise, end, beam, fusion, (before, after), reattack in itertools.product(
                args.token_grammar.split(","), map(float, args.confirm.split(",")),
                map(float, args.onset_confirm.split(",")), map(float, args.rise.split(",")),
                map(float, args.end.split(",")), map(int, args.beam.split(",")), map(float, args.fusion.split(",")),
                windows, map(float, args.reattack.split(","))):
            if fusion == 0 and (before, after) != windows[0]:
                continue                     # the window matters only with fusion
            options = DecodeOptions(token_grammar=grammar == "on", confirm_threshold=confirm, end_threshold=end,
                                    onset_confirm_threshold=onset_confirm, rise_threshold=rise, beam_width=beam,
                                    fusion_weight=fusion, fusion_before_s=before, fusion_after_s=after,
                                    reattack_s=reattack)
            decoded = [list(transcribe(model, Audio(r.samples, model.features.sample_rate), options).notes)
                       for r in recordings]
            mean = mean_result([evaluate_notes(list(r.notes), notes, name=r.name)
                                for r, notes in zip(recordings, decoded)])
            n_est, n_ref = sum(map(len, decoded)), sum(len(r.notes) for r in recordings)
            chosen = {"token_grammar": options.token_grammar, "confirm_threshold": confirm, "end_threshold": end}
            if onset_confirm > 0:
                chosen["onset_confirm_threshold"] = onset_confirm
            if rise > 0:
                chosen["rise_threshold"] = rise
            if beam > 1:
                chosen["beam_width"] = beam
            if fusion > 0:
                chosen.update(fusion_weight=fusion, fusion_before_s=before, fusion_after_s=after)
            if reattack > 0:
                chosen["reattack_s"] = reattack
            rows.append((chosen, mean.note_onset.f1, mean.note_offset.f1, mean.frame.f1))
            print(f"token grammar {grammar:3s} confirm {confirm:.2f} onset confirm {onset_confirm:.2f} "
                  f"rise {rise:.2f} end {end:.2f} "
                  f"beam {beam} fusion {fusion:g} window -{before:g}/+{after:g} s reattack {reattack:g} s: "
                  f"length ratio {n_est / max(n_ref, 1):.3f} "
                  f"note-onset F1 {mean.note_onset.f1:.4f} note-offset F1 {mean.note_offset.f1:.4f} "
                  f"frame F1 {mean.frame.f1:.4f}", flush=True)
        chosen, best_f1 = max(rows, key=lambda row: row[1:])[:2]   # ties: note-with-offset, then frame F1
        report(args, chosen, best_f1, len(recordings))
        return
    posteriors = [
        np.concatenate(list(stitched_posteriors(model, Audio(r.samples, model.features.sample_rate))))
        for r in recordings
    ]
    rows = []
    has_onsets = "onset" in model.module.CHANNELS
    is_ctc = getattr(model.module, "OUTPUT", "frames") == "ctc"
    grid = itertools.product(args.note_start.split(",") if has_onsets else ["frame"],
                             map(float, args.onset.split(",") if has_onsets else ["0.5"]),
                             map(float, args.frame.split(",")), map(float, args.min_duration.split(",")),
                             map(float, args.gap_fill.split(",") if not is_ctc else ["0"]),
                             map(float, args.reonset.split(",") if not is_ctc else ["0"]),
                             map(float, args.blank_offset.split(",") if is_ctc else ["0"]),
                             map(float, args.onset_support.split(",") if has_onsets else ["0"]))
    for start, onset, frame, min_duration, gap_fill, reonset, blank_offset, support in grid:
        if start == "onset" and (reonset > 0 or support > 0):
            continue                    # the onset rule has no frame re-onset and needs no onset support
        options = DecodeOptions(onset_threshold=onset, frame_threshold=frame, min_duration_s=min_duration,
                                gap_fill_s=gap_fill, reonset_threshold=reonset, note_start=start,
                                blank_offset=blank_offset, onset_support=support)
        decoded = [decode_chunks(model, [p], options) for p in posteriors]
        results = [evaluate_notes(list(r.notes), notes, name=r.name) for r, notes in zip(recordings, decoded)]
        mean = mean_result(results)
        n_est, n_ref = sum(map(len, decoded)), sum(len(r.notes) for r in recordings)
        rows.append((options, mean.note_onset.f1, mean.note_offset.f1, mean.frame.f1))
        print(f"start {start:5s} onset {onset:.2f} frame {frame:.2f} min {min_duration:.2f} s "
              f"gap {gap_fill:.2f} s reonset {reonset:.2f} blank {blank_offset:.1f} support {support:.2f}: "
              f"length ratio {n_est / max(n_ref, 1):.3f} "
              f"note-onset F1 {mean.note_onset.f1:.4f} "
              f"note-offset F1 {mean.note_offset.f1:.4f} frame F1 {mean.frame.f1:.4f}", flush=True)
    best, best_f1 = max(rows, key=lambda row: row[1])[:2]
    chosen = {"note_start": best.note_start, "onset_threshold": best.onset_threshold,
              "frame_threshold": best.frame_threshold, "min_duration_s": best.min_duration_s,
              "gap_fill_s": best.gap_fill_s, "reonset_threshold": best.reonset_threshold,
              "blank_offset": best.blank_offset}
    if has_onsets:
        chosen["onset_support"] = best.onset_support
    report(args, chosen, best_f1, len(recordings))


def rendered_with(pairs: list, dataset: Path, soundfonts: set[str]) -> list:
    """The (audio, labels) pairs whose recording the dataset's metadata.csv lists as
    rendered with one of ``soundfonts``; exits with a message if there are none."""
    import csv

    with open(dataset / "metadata.csv", newline="", encoding="utf-8") as handle:
        chosen = {row["id"] for row in csv.DictReader(handle) if row.get("soundfont") in soundfonts}
    kept = [pair for pair in pairs if pair[0].stem in chosen]
    if not kept:
        raise SystemExit(f"no recordings of that split were rendered with {', '.join(sorted(soundfonts))}")
    return kept


def report(args, chosen: dict, best_f1: float, n_recordings: int) -> None:
    """Print the best decoding and, with --write, store it in the checkpoint's config.json."""
    from amtcli.atomic import atomic_path
    from amtcli.checkpoint import CONFIG_FILE

    print(f"best: {chosen} (note-onset F1 {best_f1:.4f} on {n_recordings} {args.split} recordings "
          f"of {args.dataset})")
    if args.write:
        path = args.checkpoint / CONFIG_FILE
        payload = json.loads(path.read_text(encoding="utf-8"))
        payload["decode"] = chosen
        payload["decode_tuning"] = {"dataset": args.dataset.name, "split": args.split, "max_s": args.max_s,
                                    "note_onset_f1": best_f1}
        if args.soundfonts:
            payload["decode_tuning"]["soundfonts"] = sorted(args.soundfonts.split(","))
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote decode thresholds to {path}")


if __name__ == "__main__":
    main()
