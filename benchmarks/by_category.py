"""Per-category note-onset F1 from accuracy JSON files (no transcription is run).

Groups the synthetic rows of ``benchmarks/accuracy.py`` JSON by the source collection in
each recording's id (the part before the first "-": chorales, generated, quartets, ...),
and prints, per model, each collection's number of recordings and mean note-onset
precision / recall / F1 (the mean over recordings, as the headline mean), then the
headline mean itself. Shows where a model's synthetic-test score comes from.

    python benchmarks/by_category.py benchmarks/results/accuracy-cnn.json \\
        benchmarks/results/onf-accuracy-finetune.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def category_means(files: list[dict]) -> dict[str, tuple[int, float, float, float]]:
    """File rows (``name`` and ``note_onset`` P / R / F1) -> {collection: (n, mean P,
    mean R, mean F1)}, sorted by collection name."""
    from amtcli.datasets.synth import source_of

    groups: dict[str, list[dict]] = defaultdict(list)
    for row in files:
        groups[source_of(row["name"])].append(row["note_onset"])
    out = {}
    for name in sorted(groups):
        rows = groups[name]
        out[name] = (len(rows), *(sum(r[k] for r in rows) / len(rows) for k in ("precision", "recall", "f1")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=Path, nargs="+", help="accuracy JSON written by benchmarks/accuracy.py")
    parser.add_argument("--set", default="test", help="rows whose set name contains this (default: test)")
    args = parser.parse_args()
    for path in args.json:
        for result in json.loads(path.read_text(encoding="utf-8"))["results"]:
            if args.set not in result["set"]:
                continue
            print(f"{path.name}: {result['model']} on {result['set']}")
            for name, (n, p, r, f1) in category_means(result["files"]).items():
                print(f"  {name:16s} {n:3d} recordings  note-onset P {p:.3f}  R {r:.3f}  F1 {f1:.3f}")
            print(f"  {'all (headline)':16s} {len(result['files']):3d} recordings  "
                  f"note-onset F1 {result['mean']['note_onset']['f1']:.3f}")


if __name__ == "__main__":
    main()
