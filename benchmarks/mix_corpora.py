"""Link several MusicNet-layout corpora side by side into one, for training on all of them.

Each recording of each named split becomes a symbolic link ``<split>_data/<TAG>-<id>.flac``
(and its labels ``<split>_labels/<TAG>-<id>.csv``) in OUT, so ids that two corpora share
(synth-v2 and corpus-v3 render the same works) stay apart. Nothing is copied.

    python benchmarks/mix_corpora.py data/mix-v2-v3 v2=data/synth-v2 v3=data/corpus-v3
"""

from __future__ import annotations

import argparse
from pathlib import Path


def link_corpora(out: Path, corpora: dict[str, Path], splits: tuple[str, ...]) -> int:
    """Link every (audio, labels) pair of ``splits`` of each tagged corpus into ``out``;
    returns the number of recordings linked now (existing links are kept)."""
    from amtcli.datasets.layout import musicnet_pairs

    linked = 0
    for split in splits:
        (out / f"{split}_data").mkdir(parents=True, exist_ok=True)
        (out / f"{split}_labels").mkdir(parents=True, exist_ok=True)
        for tag, corpus in corpora.items():
            for audio, labels in musicnet_pairs(corpus, split):
                target = out / f"{split}_data" / f"{tag}-{audio.name}"
                if not target.exists():
                    target.symlink_to(audio.resolve())
                    (out / f"{split}_labels" / f"{tag}-{labels.name}").symlink_to(labels.resolve())
                    linked += 1
    return linked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("corpora", nargs="+", help="TAG=FOLDER, e.g. v2=data/synth-v2")
    parser.add_argument("--splits", default="train,validation")
    args = parser.parse_args()
    corpora = dict(item.split("=", 1) for item in args.corpora)
    count = link_corpora(args.out, {tag: Path(folder) for tag, folder in corpora.items()},
                         tuple(args.splits.split(",")))
    print(f"linked {count} recordings into {args.out}")


if __name__ == "__main__":
    main()
