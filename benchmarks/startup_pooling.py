"""Two costs behind the speed figures: torch's import (part of every command's start-up)
and frequency max-pooling in the conv stems (``nn.MaxPool2d((1, 2))`` against
:class:`amtcli.families.layers.FrequencyMaxPool`, same output).

    python benchmarks/startup_pooling.py --json benchmarks/results/startup-pooling.json

Import times are wall-clock seconds of fresh ``python -c`` processes (median of --runs),
minus an empty interpreter; pooling times are milliseconds per call on one thread for a
(1, 16, 1500, 128) map (a 30 s window of the stems' first layer), median of 50 calls.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path


def process_seconds(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def pooling_ms(module, x, calls: int = 50) -> float:
    module(x)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        module(x)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    empty = process_seconds("pass", args.runs)
    imports = {name: process_seconds(f"import {name}", args.runs) - empty
               for name in ("torch", "amtcli.cli", "pydantic")}
    import torch

    from amtcli.families.layers import FrequencyMaxPool

    torch.set_num_threads(1)
    x = torch.randn(1, 16, 1500, 128)
    assert torch.equal(torch.nn.MaxPool2d((1, 2))(x), FrequencyMaxPool(2)(x))
    pool2d, reshape = pooling_ms(torch.nn.MaxPool2d((1, 2)), x), pooling_ms(FrequencyMaxPool(2), x)
    for name, seconds in imports.items():
        print(f"import {name:12s} {seconds:6.3f} s (fresh process, minus an empty interpreter)")
    print(f"MaxPool2d((1, 2))   {pool2d:7.2f} ms   FrequencyMaxPool(2) {reshape:7.2f} ms   "
          f"{pool2d / reshape:5.1f}x faster (1 thread, 1 x 16 x 1500 x 128)")
    if args.json:
        args.json.write_text(json.dumps({
            "date": date.today().isoformat(), "machine": f"{platform.machine()} 1 torch thread",
            "import_s": imports, "maxpool2d_ms": pool2d, "frequency_max_pool_ms": reshape,
        }, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
