"""How a model transcribes one long held tone, with and without the window-join rule.

Synthesizes a harmonic tone (220 Hz, MIDI 57, five partials) held from 1 s to
``--seconds`` + 1 s, transcribes it with each model's tuned decoding, once as
`amtcli transcribe` does (frame decoders told the window joins) and once with the join
rule switched off, and prints the notes of that pitch. One sustained tone should give one
note; a model whose onset head reads each window that starts mid-note as an onset splits
it at the joins when the rule is off.

    python benchmarks/held_tone.py --model onf --model cnn --seconds 22
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def held_tone(seconds: float, rate: int) -> np.ndarray:
    """1 s of silence, the tone for ``seconds``, 1 s of silence; float32 at ``rate`` Hz."""
    t = np.arange(int((seconds + 2) * rate)) / rate
    tone = sum(0.3 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 6))
    tone[: rate] = 0.0
    tone[int((seconds + 1) * rate):] = 0.0
    return tone.astype(np.float32)


def main() -> None:
    from amtcli.audio import Audio
    from amtcli.checkpoint import load_checkpoint
    from amtcli.batching import transcribe
    from amtcli.inference import ChunkDecoder
    from amtcli.registry import resolve_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None, help="model name or folder (repeatable)")
    parser.add_argument("--seconds", type=float, default=22.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.model or ["onf"]:
        model = load_checkpoint(resolve_model(name)[1], name=name)
        rate = model.features.sample_rate
        audio = Audio(held_tone(args.seconds, rate), rate)
        with_rule = [n for n in transcribe(model, audio).notes if n.pitch == 57]
        add_joins = ChunkDecoder.add_joins
        ChunkDecoder.add_joins = lambda self, frames: None          # the rule off
        try:
            without = [n for n in transcribe(model, audio).notes if n.pitch == 57]
        finally:
            ChunkDecoder.add_joins = add_joins
        for label, notes in (("with the join rule", with_rule), ("without it", without)):
            spans = ", ".join(f"{n.onset_s:.2f}-{n.offset_s:.2f}" for n in notes)
            print(f"{name}: {args.seconds:.0f} s tone, {label}: {len(notes)} note(s): {spans}")


if __name__ == "__main__":
    main()
