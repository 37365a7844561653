"""Add a `cnn` checkpoint's frame detector to a trained seq2seq checkpoint.

The detector (`frame_detector = true`: the cnn's input normalisation, trunk and frame
read-out, frozen) takes no part in seq2seq training: it is built after every trained
module, so their initialisation is unchanged, and it is outside the teacher-forced
pass. Training `models/seq2seq/recipe.toml` (which copies the detector with an
`[[init]]` table) therefore gives the same weights as training without it and adding
the detector afterwards, which is what this script does for an existing run:

    python benchmarks/add_frame_detector.py runs/seq2seq/best --cnn models/cnn --out /tmp/seq2seq

Every seq2seq weight is kept as it is (checked), the detector's are copied from --cnn,
and the other sections of config.json (decode, windowing, validation, ...) are kept.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    from amtcli.checkpoint import copy_weights, load_checkpoint, read_config, save_checkpoint
    from amtcli.families.framewise_cnn import FramewiseCNNConfig
    from amtcli.families.seq2seq import Seq2SeqConfig, Seq2SeqTranscriber

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a seq2seq checkpoint folder without a detector")
    parser.add_argument("--cnn", type=Path, required=True, help="the cnn checkpoint whose frame detector to add")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (may be the same)")
    args = parser.parse_args()

    payload = read_config(args.checkpoint)
    if payload["family"] != "seq2seq":
        raise SystemExit(f"{args.checkpoint}: a {payload['family']} checkpoint, not seq2seq")
    source = load_checkpoint(args.checkpoint).module
    cnn_payload = read_config(args.cnn)
    if cnn_payload["family"] != "cnn":
        raise SystemExit(f"{args.cnn}: a {cnn_payload['family']} checkpoint, not cnn")
    cnn = FramewiseCNNConfig.from_dict(cnn_payload["config"])
    if cnn.reconstruction:
        raise SystemExit(f"{args.cnn}: its frames come from a second pass (reconstruction), which the "
                         "detector does not run")
    config = Seq2SeqConfig.from_dict({
        **payload["config"], "frame_detector": True, "detector_stem_channels": cnn.stem_channels,
        "detector_model_dim": cnn.model_dim, "detector_blocks": cnn.blocks,
        "detector_dilations": cnn.dilations})
    if cnn.features != config.features:
        raise SystemExit("the cnn's features differ from the seq2seq's; the detector would read another spectrum")
    module = Seq2SeqTranscriber(config)
    missing, unexpected = module.load_state_dict(source.state_dict(), strict=False)
    if unexpected or any(not name.startswith(("detector.", "detector_norm.")) for name in missing):
        raise SystemExit(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    copy_weights(module, args.cnn, ("detector_norm=norm", "detector=transcriber"))
    changed = [name for name, value in source.state_dict().items()
               if not torch.equal(module.state_dict()[name], value)]
    if changed:
        raise SystemExit(f"seq2seq weights changed while adding the detector: {changed}")
    extra = {key: value for key, value in payload.items() if key not in ("format_version", "family", "config")}
    save_checkpoint(args.out, "seq2seq", config.to_dict(), module, extra)
    print(json.dumps({"out": str(args.out), "detector_from": str(args.cnn),
                      "tensors": len(module.state_dict())}))


if __name__ == "__main__":
    main()
