"""One input file's job: its outputs, and what came of writing them.

Shared by the local batch (:mod:`amtcli.commands.transcribe`) and the Ray workers
(:mod:`amtcli.ray_backend`), so that both write the same files the same way (a
temporary name, then a rename) and report them the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from amtcli.errors import AmtError
from amtcli.types import Transcription


def stat_key(path: Path) -> tuple[int, int] | None:
    """(inode, modification time in ns) of an existing file, None when there is none.
    A file replaced by a rename gets a new inode, so the key tells an output that existed
    before a run from one the run wrote."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


@dataclass(frozen=True)
class FileJob:
    """One input and the outputs to write for it.

    Attributes:
        index: position in the batch (lines are printed in this order).
        path: the audio file.
        targets: ``{format: output path}`` still to write.
        overwrite: replace outputs that existed when the batch was planned.
        existing: ``{str(output path): stat_key}`` of those outputs at planning time; a
            retried job leaves alone any output whose key has changed since (an earlier
            attempt of this run wrote it), so no output is written twice.
    """

    index: int
    path: Path
    targets: dict[str, Path]
    overwrite: bool = False
    existing: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def plan(cls, index: int, path: Path, targets: dict[str, Path], overwrite: bool) -> "FileJob":
        """A job whose ``existing`` records the outputs already on disk now."""
        existing = {str(t): key for t in targets.values() if (key := stat_key(t)) is not None}
        return cls(index, path, dict(targets), overwrite, existing)

    def still_to_write(self) -> dict[str, Path]:
        """The targets a retry must write: those missing, and those that are still the
        files that existed at planning time (``overwrite`` replaces them); not the ones an
        earlier attempt already renamed into place."""
        return {fmt: target for fmt, target in self.targets.items()
                if (key := stat_key(target)) is None or (self.overwrite and self.existing.get(str(target)) == key)}


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file: an error line's text, or its outputs and counts."""

    error: str | None = None
    written: tuple[Path, ...] = ()
    duration_s: float = 0.0
    n_notes: int = 0
    warning: str | None = None


def write_job_outputs(result: Transcription | AmtError, job: FileJob, retry: bool = False) -> FileOutcome:
    """Write a finished transcription to ``job``'s targets (temporary name, then rename).

    ``result`` may be the error met while reading or transcribing the file. On a
    ``retry`` only :meth:`FileJob.still_to_write` is written, and the others count as
    written. Output errors come back in the outcome, never raised.
    """
    from amtcli.writers.naming import write_outputs

    if isinstance(result, AmtError):
        return FileOutcome(error=str(result))
    targets = job.still_to_write() if retry else job.targets
    try:
        written = write_outputs(result, targets, job.overwrite) if targets else []
    except AmtError as exc:
        return FileOutcome(error=str(exc))
    if retry:
        written = list(job.targets.values())
    return FileOutcome(written=tuple(written), duration_s=result.duration_s, n_notes=len(result.notes))
