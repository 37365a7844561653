"""Speed and memory benchmark of the whole `amtcli transcribe` command.

For each model and input length, writes a test recording (a loop of the example
recording, or of noise-free harmonic tones if the example is missing), runs the real
command in a fresh process several times, and reports the median wall time, the
real-time factor (audio seconds per wall second) and the peak RSS of the process.

    python benchmarks/speed.py --model onf --lengths 10,600,3600 --runs 3 \
        --json benchmarks/results/speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import soundfile as sf

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "example.flac"


def make_input(path: Path, seconds: float, rate: int = 44100) -> None:
    """Write ``seconds`` of audio to ``path`` in blocks (memory stays small)."""
    if EXAMPLE.exists():
        loop, loop_rate = sf.read(EXAMPLE, dtype="float32")
        if loop.ndim > 1:
            loop = loop.mean(axis=1)
        rate = loop_rate
    else:
        t = np.arange(rate * 4) / rate
        loop = (0.2 * np.sin(2 * np.pi * 261.6 * t) * np.exp(-t)).astype(np.float32)
    total = int(seconds * rate)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        written = 0
        while written < total:
            block = loop[: total - written]
            out.write(block)
            written += len(block)


def run_once(model: str, audio: Path, out_dir: Path, threads: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one `amtcli transcribe` process."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    code = (
        "import resource, sys, torch; torch.set_num_threads(%d); from amtcli.cli import main; "
        "sys.argv = ['amtcli'] + sys.argv[1:]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)" % threads
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, "transcribe", str(audio), "--model", model, "--output-dir", str(out_dir),
         "--format", "mid,csv", "--overwrite", "--device", "cpu"],
        capture_output=True, text=True, env=env,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"amtcli failed on {audio}: {proc.stderr.strip()[-500:]}")
    rss_kb = int([line for line in proc.stderr.splitlines() if line.startswith("MAXRSS")][-1].split()[1])
    return wall, rss_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--lengths", default="10,600,3600", help="input lengths in seconds, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    lengths = [float(x) for x in args.lengths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seconds in lengths:
            make_input(tmp / f"in_{int(seconds)}.wav", seconds)
        for model in args.model or ["cnn"]:
            for seconds in lengths:
                runs = [run_once(model, tmp / f"in_{int(seconds)}.wav", tmp / "out", args.threads)
                        for _ in range(args.runs)]
                wall = statistics.median(r[0] for r in runs)
                rss = max(r[1] for r in runs)
                rows.append({"model": model, "audio_s": seconds, "median_wall_s": wall,
                             "realtime_factor": seconds / wall, "peak_rss_mb": rss, "runs": args.runs})
                print(f"{model:10s} {seconds:7.0f} s  wall {wall:7.2f} s  {seconds / wall:7.1f}x real time  "
                      f"peak RSS {rss:7.0f} MB", flush=True)
    out = {"date": date.today().isoformat(), "machine": f"{platform.machine()} {os.cpu_count()} CPUs, "
           f"{args.threads} torch threads", "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
