"""What a published checkpoint is: its files (name, sha256, size), its Hub repository and
revision, and how a file on disk is checked against that record.

The lowest layer of model resolution: :mod:`amtcli.hub` (downloads) and
:mod:`amtcli.registry` (names) both build on it; it knows neither.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

#: File names of a checkpoint folder (the same as in :mod:`amtcli.checkpoint`, which
#: imports torch and so is not imported here).
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE)
#: How ``--model`` names a Hub repository: ``hf://ORG/REPO[@REV]``.
HF_PREFIX = "hf://"

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: A full git commit id, as the Hub names revisions.
COMMIT_RE = re.compile(r"[0-9a-f]{40}")
#: A Hub model repository id, ORG/REPO.
REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ModelFile:
    """One file of a published checkpoint.

    Attributes:
        name: file name inside the checkpoint folder / Hub repo ("model.safetensors").
        sha256: expected sha256 of the content, 64 lowercase hex digits.
        size: expected size in bytes.
    """

    name: str
    sha256: str
    size: int

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "\\" in self.name:
            raise ValueError(f"model file name must be a plain file name, got {self.name!r}")
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"{self.name}: size must be a non-negative int, got {self.size!r}")


@dataclass(frozen=True)
class ModelEntry:
    """A published checkpoint.

    Attributes:
        name: what users type after ``--model``.
        family: model family ("onf", "cnn", "ctc", "seq2seq").
        description: one line for ``amtcli models list``.
        files: every file of the checkpoint folder with its sha256 and size.
        repo_id: Hugging Face Hub repository ("ORG/REPO"), or None for a bundled-only model.
        revision: the Hub commit the files were published in (40 hex digits), or None
            exactly when ``repo_id`` is None. Never a branch: a branch can move.
        metrics: headline metrics for ``amtcli models list``, label -> value; say the
            data set in the label ("onset F1, MusicNet test").
    """

    name: str
    family: str
    description: str
    files: tuple[ModelFile, ...]
    repo_id: str | None = None
    revision: str | None = None
    metrics: dict[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"model name {self.name!r}: use lowercase letters, digits, '.', '_' or '-'")
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"model {self.name!r}: a file is listed twice")
        missing = [n for n in REQUIRED_FILES if n not in names]
        if missing:
            raise ValueError(f"model {self.name!r}: files must include {', '.join(missing)}")
        if (self.repo_id is None) != (self.revision is None):
            raise ValueError(f"model {self.name!r}: give both repo_id and revision, or neither")
        if self.repo_id is not None and not REPO_ID_RE.fullmatch(self.repo_id):
            raise ValueError(f"model {self.name!r}: repo_id must look like ORG/REPO, got {self.repo_id!r}")
        if self.revision is not None and not COMMIT_RE.fullmatch(self.revision):
            raise ValueError(f"model {self.name!r}: revision must be a 40-hex commit, not a branch or tag")

    @property
    def sha256(self) -> dict[str, str]:
        """File name -> expected sha256 hex digest."""
        return {f.name: f.sha256 for f in self.files}

    def file(self, name: str) -> ModelFile | None:
        """The entry's record of file ``name``, or None."""
        return next((f for f in self.files if f.name == name), None)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_problem(path: Path, spec: ModelFile) -> str | None:
    """What is wrong with ``path`` as a copy of ``spec`` ("missing", size, sha256), or None."""
    try:
        size = path.stat().st_size
    except OSError:
        return "missing"
    if size != spec.size:
        return f"size {size} bytes, expected {spec.size}"
    if sha256_of(path) != spec.sha256:
        return "sha256 does not match"
    return None
