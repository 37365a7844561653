"""Split one batch of inputs into N disjoint parts for N independent processes.

``amtcli transcribe INPUTS --shard K/N`` keeps the files whose key hashes to part K
(0-based, so a SLURM array ``--array=0-3`` or a Kubernetes Indexed Job's
``JOB_COMPLETION_INDEX`` can be passed as it is). The key of a file is its path
relative to the folder it was found in (for a file named on the command line, its own
path as given), so the same K/N picks the same files on every machine that sees the
same tree and on every rerun, whatever the order of the inputs: N processes together
transcribe every file exactly once, and a failed part is rerun with ``--skip-existing``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from amtcli.errors import ConfigError


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N; ConfigError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise ConfigError(f"--shard {text!r}: give K/N, e.g. 0/4 for the first of four parts")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {text}: need N >= 1 and 0 <= K < N (parts are numbered from 0)")
    return index, count


def shard_key(path: Path, root: Path | None) -> str:
    """The stable key of an input: its path relative to the folder it was found in, or the
    path as given for a file named on the command line (POSIX separators)."""
    relative = path.relative_to(root) if root is not None else path
    return relative.as_posix()


def shard_of(key: str, count: int) -> int:
    """The part (0..count-1) a key belongs to: a sha256 of the key, modulo ``count``."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % count


def select_shard(files: list[tuple[Path, Path | None]], index: int, count: int) -> list[tuple[Path, Path | None]]:
    """The (file, root) pairs of part ``index`` of ``count``, in their given order."""
    return [(path, root) for path, root in files if shard_of(shard_key(path, root), count) == index]
