"""One markdown table from several ``benchmarks/accuracy.py`` JSON files (no transcription).

A row per JSON file (named by the file's stem), the mean note-onset F1 of every set it
scored, note-with-offset F1 on the piano test split, and the realdev-solo unmatched-note
counts of ``amtcli eval --errors``:

    python benchmarks/ablation_table.py benchmarks/results/corpus-v3/abl-*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SETS = (("realdev", "realdev"), ("realdev-solo", "realdev-solo"), ("synth-v2:test", "synthetic test"),
        ("corpus-v3:piano_test", "piano test"))
ERROR_COLUMNS = ("hit", "missed", "harmonic", "split", "timing", "semitone", "silence", "other")


def row(path: Path) -> str:
    """The table row of one accuracy JSON."""
    results = {r["set"]: r for r in json.loads(path.read_text(encoding="utf-8"))["results"]}
    cells = [path.stem]
    for key, _ in SETS:
        cells.append(f"{results[key]['mean']['note_onset']['f1']:.3f}" if key in results else "-")
    piano = results.get("corpus-v3:piano_test")
    cells.append(f"{piano['mean']['note_offset']['f1']:.3f}" if piano else "-")
    errors = results.get("realdev-solo", {}).get("mean", {}).get("errors", {})
    cells += [str(errors.get(c, "-")) for c in ERROR_COLUMNS]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    header = ["run", *(f"{title} F1" for _, title in SETS), "piano test offset F1",
              *(f"solo {c}" for c in ERROR_COLUMNS)]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for path in args.files:
        print(row(path))


if __name__ == "__main__":
    main()
