"""Batch throughput: one `amtcli transcribe DIR` call against one call per file.

Writes --files recordings of --seconds each (cut from a loop of the example
recording), then times (a) a single command over the folder and (b) the same files
one command at a time, both in fresh processes, and reports the speed-up factor.
Run by hand, not in CI:

    python benchmarks/batch.py --model onf --files 100 --seconds 60 \
        --json benchmarks/results/batch-onf.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import soundfile as sf

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "example.flac"


def write_inputs(folder: Path, files: int, seconds: float) -> float:
    """``files`` recordings of ``seconds`` s (different offsets into the looped example)."""
    audio, rate = sf.read(EXAMPLE, dtype="float32")
    n = int(seconds * rate)
    loop = np.tile(audio, n // len(audio) + 2)
    for i in range(files):
        offset = (i * rate * 3) % len(audio)
        sf.write(folder / f"clip{i:03d}.wav", loop[offset : offset + n], rate, subtype="PCM_16")
    return files * seconds


def command(model: str, threads: int, *args: str) -> list[str]:
    code = f"import torch; torch.set_num_threads({threads}); from amtcli.cli import main; main()"
    return [sys.executable, "-c", code, "transcribe", *args, "--model", model, "--format", "mid", "--overwrite",
            "--device", "cpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = Path(tmp) / "in", Path(tmp) / "out"
        inputs.mkdir()
        audio_s = write_inputs(inputs, args.files, args.seconds)
        started = time.perf_counter()
        subprocess.run(command(args.model, args.threads, str(inputs), "--output-dir", str(out), "--jobs",
                               str(args.jobs)), check=True, stdout=subprocess.DEVNULL)
        batch_s = time.perf_counter() - started
        started = time.perf_counter()
        for path in sorted(inputs.iterdir()):
            subprocess.run(command(args.model, args.threads, str(path), "--output-dir", str(out)), check=True,
                           stdout=subprocess.DEVNULL)
        single_s = time.perf_counter() - started
    report = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {args.threads} torch threads",
        "model": args.model, "files": args.files, "seconds_each": args.seconds, "jobs": args.jobs,
        "one_command_s": batch_s, "one_command_per_file_s": single_s, "speedup": single_s / batch_s,
        "one_command_realtime_factor": audio_s / batch_s,
    }
    print(f"{args.files} files x {args.seconds:g} s, model {args.model}, {args.threads} threads")
    print(f"  one command for the folder: {batch_s:8.1f} s ({audio_s / batch_s:.0f}x real time)")
    print(f"  one command per file:       {single_s:8.1f} s ({audio_s / single_s:.0f}x real time)")
    print(f"  speed-up:                   {single_s / batch_s:8.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
