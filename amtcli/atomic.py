"""Atomic file writes: write to a temporary file beside the target, then rename.

An interrupted run therefore never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path
from typing import Iterator

from amtcli.errors import OutputError


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    current = os.umask(0)
    os.umask(current)
    return current


NAME_MAX_BYTES = 255       #: longest file name most filesystems take, in bytes
_RANDOM_PART = 8           #: characters tempfile.mkstemp adds


def temporary_prefix(target: Path) -> str:
    """``.NAME.``, with NAME shortened (never the final name) so that the temporary name
    ``.NAME.XXXXXXXX.part.SUFFIX`` stays within NAME_MAX_BYTES."""
    room = NAME_MAX_BYTES - len(f"..{'x' * _RANDOM_PART}.part{target.suffix}".encode())
    name = target.name.encode()[:room].decode("utf-8", errors="ignore")
    return f".{name}."


def remove_stale_parts(target: Path) -> int:
    """Delete temporary files that an earlier, killed run left for ``target`` (its
    ``.NAME.XXXXXXXX.part.SUFFIX`` names); returns how many. Run before writing it anew."""
    pattern = glob.escape(temporary_prefix(target)) + "?" * _RANDOM_PART + glob.escape(".part" + target.suffix)
    removed = 0
    for stale in target.parent.glob(pattern):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` on success.

    Raises OutputError if ``target`` exists and ``overwrite`` is False, or if the folder
    cannot be written. On any exception the temporary file is removed; temporary files
    of ``target`` left by a killed run are removed first.
    """
    target = Path(target)
    if target.is_dir():
        raise OutputError(f"{target} is a directory; give a file name or use --output-dir")
    if target.exists() and not overwrite:
        raise OutputError(f"{target} exists; pass --overwrite to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(target)
        fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=".part" + target.suffix,
                                        dir=target.parent)
        os.close(fd)
    except OSError as exc:
        blocking = next((p for p in [target.parent, *target.parent.parents] if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise OutputError(f"cannot write {target}: {blocking} is a file, not a folder") from None
        raise OutputError(f"cannot write to {target.parent}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
