"""Model registry: name -> family, description and the sha256 of each file.

Resolution for ``--model X``: a local checkpoint folder given as a path; else a
registered name whose bundled folder under ``models/`` matches the recorded
hashes; else a one-line error listing what is available. Only models with a
trained checkpoint are registered.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from amtcli.errors import ModelError

DEFAULT_MODEL = "onf"


@dataclass(frozen=True)
class ModelEntry:
    """A published checkpoint.

    Attributes:
        name: what users type after --model.
        family: model family ("onf", "cnn", "ctc", "seq2seq").
        description: one line for ``amtcli models list``.
        sha256: file name -> expected sha256 hex digest.
    """

    name: str
    family: str
    description: str
    sha256: dict[str, str] = field(default_factory=dict)


#: Every model with a trained, bundled checkpoint.
REGISTRY: dict[str, ModelEntry] = {}


def available_models() -> list[str]:
    """Names of registered models."""
    return sorted(REGISTRY)


def models_root() -> Path:
    """The bundled ``models/`` folder: beside the package in a checkout, or installed with it."""
    checkout = Path(__file__).resolve().parent.parent / "models"
    if checkout.is_dir():
        return checkout
    from importlib.resources import files

    return Path(str(files("amtcli_models")))


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_folder(folder: Path, entry: ModelEntry) -> None:
    """Raise ModelError unless every file of ``entry`` is in ``folder`` with its hash."""
    for name, expected in entry.sha256.items():
        path = folder / name
        if not path.is_file():
            raise ModelError(f"model {entry.name!r}: {path} is missing; reinstall amtcli")
        if sha256_of(path) != expected:
            raise ModelError(f"model {entry.name!r}: {path} does not match its sha256; reinstall amtcli")


def resolve_model(name_or_path: str) -> tuple[str, Path]:
    """(display name, checkpoint folder) for a registry name or a local folder."""
    candidate = Path(os.path.expanduser(name_or_path))
    if candidate.is_dir():
        return candidate.name, candidate
    entry = REGISTRY.get(name_or_path)
    if entry is None:
        names = ", ".join(available_models()) or "none yet (no trained checkpoint is bundled)"
        raise ModelError(f"unknown model {name_or_path!r}; available: {names}; or give a checkpoint folder")
    folder = models_root() / entry.name
    verify_folder(folder, entry)
    return entry.name, folder
