"""Batch throughput: one `amtcli transcribe DIR` call against one call per file, or
(--scale-out) against Ray workers and `--shard` processes.

Writes --files recordings of --seconds each (cut from a loop of the example
recording), then times (a) a single command over the folder and (b) the same files
one command at a time, both in fresh processes, and reports the speed-up factor.
With --scale-out it times instead, on the same files and in one run: the local batch
(--threads torch threads), `--ray local` with 1 worker of --threads threads and with
--threads workers of 1 thread, and --threads `--shard K/N` processes of 1 thread side
by side; every wall time includes starting Python, loading the model (and starting
Ray). Run by hand, on an idle machine, not in CI (--scale-out needs `amtcli[ray]`):

    python benchmarks/batch.py --model onf --files 100 --seconds 60 \
        --json benchmarks/results/batch-onf.json
    python benchmarks/batch.py --model cnn --files 100 --seconds 60 --scale-out \
        --json benchmarks/results/scale-out-cnn.json
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


def timed(*commands: list[str]) -> float:
    """Seconds to run ``commands`` side by side (each must succeed)."""
    started = time.perf_counter()
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL) for c in commands]
    codes = [p.wait() for p in processes]
    if any(codes):
        raise SystemExit(f"a timed command failed (exit codes {codes})")
    return time.perf_counter() - started


def scale_out(args, inputs: Path, out: Path, audio_s: float) -> dict:
    """Wall seconds and throughput of the local batch, Ray (1 and N workers) and N shards."""
    n = args.threads
    common = ["--output-dir", str(out), "--jobs", str(args.jobs)]
    rows = {
        "local batch": timed(command(args.model, n, str(inputs), *common)),
        "ray local, 1 worker": timed(command(args.model, 1, str(inputs), *common, "--ray", "local",
                                             "--ray-workers", "1", "--ray-threads", str(n))),
        f"ray local, {n} workers": timed(command(args.model, 1, str(inputs), *common, "--ray", "local",
                                                 "--ray-workers", str(n), "--ray-threads", "1")),
        f"{n} --shard processes": timed(*(command(args.model, 1, str(inputs), *common, "--shard", f"{k}/{n}")
                                          for k in range(n))),
    }
    local = rows["local batch"]
    for name, seconds in rows.items():
        print(f"  {name:<24} {seconds:8.1f} s  {audio_s / seconds:6.0f}x real time  "
              f"{100 * (local / seconds - 1):+5.0f}% throughput against the local batch")
    return {name: {"wall_s": seconds, "realtime_factor": audio_s / seconds, "throughput_vs_local": local / seconds}
            for name, seconds in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--scale-out", action="store_true", help="time Ray workers and --shard processes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = Path(tmp) / "in", Path(tmp) / "out"
        inputs.mkdir()
        audio_s = write_inputs(inputs, args.files, args.seconds)
        if args.scale_out:
            print(f"{args.files} files x {args.seconds:g} s, model {args.model}, {args.threads} threads in all")
            report = {"date": date.today().isoformat(),
                      "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {args.threads} torch threads in all",
                      "model": args.model, "files": args.files, "seconds_each": args.seconds, "jobs": args.jobs,
                      "rows": scale_out(args, inputs, out, audio_s)}
            write_json(args.json, report)
            return
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
    write_json(args.json, report)


def write_json(path: Path | None, report: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
