"""Model registry: name -> family, description, files (sha256 + size), Hub repo and revision.

Resolution for ``--model X``, first match wins:

1. ``hf://ORG/REPO[@REV]``: a checkpoint someone published in the same layout
   (see :func:`amtcli.hub.resolve_hf_uri`).
2. A registered name: the bundled folder ``models/<name>/`` if every file matches
   the recorded size and sha256; else the Hugging Face cache or a download at the
   pinned revision, verified the same way (see :func:`amtcli.hub.fetch_entry`).
   A registered name wins over a folder of the same name in the working
   directory; write ``./NAME`` for the folder.
3. A local checkpoint folder.

Otherwise a one-line error lists the registered names. Only models with a trained
checkpoint are registered. To add one, paste the literal that
:func:`entry_from_folder` prints into ``_ENTRIES``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from amtcli.errors import ModelError
from amtcli.model_files import (CARD_FILE, COMMIT_RE, CONFIG_FILE, HF_PREFIX, REPO_ID_RE,  # noqa: F401
                                REQUIRED_FILES, WEIGHTS_FILE, ModelEntry, ModelFile, file_problem, sha256_of)

DEFAULT_MODEL = "onf"

def _index(entries: tuple[ModelEntry, ...]) -> dict[str, ModelEntry]:
    registry: dict[str, ModelEntry] = {}
    for entry in entries:
        if entry.name in registry:
            raise ValueError(f"model {entry.name!r} is registered twice")
        registry[entry.name] = entry
    return registry


#: Published checkpoints, one ``ModelEntry(...)`` literal each (see :func:`entry_from_folder`).
_ENTRIES: tuple[ModelEntry, ...] = (
    ModelEntry(
        name='cnn',
        family='cnn',
        description='Frame-wise CNN with an onset read-out, 0.75 M parameters, the fastest bundled model, trained not to hear partials as notes.',
        repo_id=None,
        revision=None,
        files=(
            ModelFile('config.json', sha256='ff8ef4a7cb801bcb08560226054824c8920494d7796945eb87d954f45f767f3c', size=1151),
            ModelFile('model.safetensors', sha256='aea0271b2b9282cd3e6abfb79fe539d748fa991e592e8c70ae3d4efa41cb7fdb', size=3007856),
            ModelFile('README.md', sha256='52e7e747d0bc7b459936b1cc9e1ce1cf33536832ff2b94f50e3ebe3dba47fc64', size=16225),
        ),
        metrics={'note-onset F1, synthetic test (held-out soundfont)': 0.749, 'note-onset F1, realdev (Bach10 mixes, mean)': 0.758, 'note-onset F1, realdev-solo (Bach10 parts, mean)': 0.777},
    ),
    ModelEntry(
        name='onf',
        family='onf',
        description='Onsets-and-Frames heads on the cnn trunk with an onset stack, 1.16 M parameters; the most accurate bundled model on solo lines (default).',
        repo_id=None,
        revision=None,
        files=(
            ModelFile('config.json', sha256='c7f43b036db75754275e120f94128526684fab30c68487df8737376885d6bc6c', size=1176),
            ModelFile('model.safetensors', sha256='f4bd94d68ea725de733cc9a477aacb9a3be6d68cb3fe7bb9823077d9663c8b11', size=4652816),
            ModelFile('README.md', sha256='0242e7e805aaeba1d2fed660c5b470cf9f4e7857eef183ad9120b86dccc45c83', size=15981),
        ),
        metrics={'note-onset F1, synthetic test (held-out soundfont)': 0.774, 'note-onset F1, realdev (Bach10 mixes, mean)': 0.736, 'note-onset F1, realdev-solo (Bach10 parts, mean)': 0.79},
    ),
    ModelEntry(
        name='ctc',
        family='ctc',
        description="CNN + BiLSTM over an HCQT with CTC over pitch tokens, 0.54 M parameters (the study's CTC model, timed).",
        repo_id=None,
        revision=None,
        files=(
            ModelFile('config.json', sha256='89b7c99b495b43da12b4189d6ce51ec0b1d1dc3a63b870a9b6ff231890f43c26', size=1164),
            ModelFile('model.safetensors', sha256='4d9a2bbc75df0045931f177f9775821097754ee2e8a6184860202b11d03f8611', size=2177904),
            ModelFile('README.md', sha256='00e66ea76d0c12a31c1c4706de96d6ffe2c3facb7a70d4efd1c4bb91d439c41c', size=10047),
        ),
        metrics={'note-onset F1, synthetic test (held-out soundfont)': 0.749, 'note-onset F1, realdev (Bach10, mean)': 0.621, 'note-onset F1, realdev-solo (Bach10 parts, mean)': 0.647, 'frame F1, realdev': 0.704, 'token F1, synthetic test': 0.811},
    ),
    ModelEntry(
        name='seq2seq',
        family='seq2seq',
        description="CNN + BiLSTM encoder, attention LSTM decoder over note-event tokens, 0.80 M trained parameters; a frozen copy of the cnn guides its beam search and checks its notes (the study's Seq2Seq model; poorest offsets of the bundled models, no velocities).",
        repo_id=None,
        revision=None,
        files=(
            ModelFile('config.json', sha256='ec26b5d597d38f8d7dc65002e002441e37b3222dd02069d751bd6ef1dc358a56', size=1891),
            ModelFile('model.safetensors', sha256='ba51c5c2c3961928a0082593f8fb85f8c68c4be9b989190e2d59e74eab02e707', size=5987116),
            ModelFile('README.md', sha256='3dded5c639fbc6ec57d80274eba7c72aeca38b4d489c8caa4f1a22ec9bb6e8c5', size=29467),
        ),
        metrics={'note-onset F1, synthetic test (held-out soundfont)': 0.72, 'note-onset F1, realdev (Bach10, mean)': 0.547, 'frame F1, realdev': 0.688, 'token F1, synthetic test': 0.765},
    ),
)

#: Every model with a trained checkpoint, by name.
REGISTRY: dict[str, ModelEntry] = _index(_ENTRIES)


def available_models() -> list[str]:
    """Names of registered models."""
    return sorted(REGISTRY)


def _unknown(name: str) -> ModelError:
    names = ", ".join(available_models()) or "none yet (no trained checkpoint is published)"
    return ModelError(f"unknown model {name!r}; available: {names}; or give a checkpoint folder or hf://ORG/REPO")


def get_entry(name: str) -> ModelEntry:
    """The registry entry called ``name``; ModelError listing the valid names otherwise."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise _unknown(name)
    return entry


def models_root() -> Path:
    """The bundled ``models/`` folder: in a source checkout, or installed as ``amtcli_models``."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "models").is_dir():
        return checkout / "models"
    from importlib.util import find_spec

    spec = find_spec("amtcli_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the bundled models folder is not installed; reinstall amtcli")
    return Path(next(iter(spec.submodule_search_locations)))


def folder_problems(folder: Path, entry: ModelEntry) -> dict[str, str]:
    """File name -> problem for every file of ``entry`` that ``folder`` lacks or has wrong."""
    problems = {}
    for spec in entry.files:
        problem = file_problem(folder / spec.name, spec)
        if problem is not None:
            problems[spec.name] = problem
    return problems


def verify_folder(folder: Path, entry: ModelEntry) -> None:
    """Raise ModelError unless every file of ``entry`` is in ``folder`` with its size and sha256."""
    problems = folder_problems(folder, entry)
    if problems:
        name, problem = next(iter(problems.items()))
        raise ModelError(f"model {entry.name!r}: {folder / name}: {problem}; reinstall amtcli or download it again")


def bundled_folder(entry: ModelEntry) -> Path | None:
    """``models/<name>/`` if it holds every file of ``entry`` intact, else None."""
    try:
        folder = models_root() / entry.name
    except ModelError:
        return None
    return folder if folder.is_dir() and not folder_problems(folder, entry) else None


def resolve_model(name_or_path: str) -> tuple[str, Path]:
    """(display name, checkpoint folder) for ``hf://ORG/REPO[@REV]``, a registry name or a local folder.

    Raises ModelError (one line, saying what to do) when nothing usable is found.
    """
    if name_or_path.startswith(HF_PREFIX):
        from amtcli.hub import resolve_hf_uri

        return name_or_path, resolve_hf_uri(name_or_path)
    if name_or_path in REGISTRY:
        return name_or_path, registered_folder(REGISTRY[name_or_path])
    candidate = Path(os.path.expanduser(name_or_path))
    if candidate.is_dir():
        entry = _bundled_entry_at(candidate)
        if entry is not None:           # a path to a bundled folder is checked like its name
            verify_folder(candidate, entry)
        return candidate.name, candidate
    if candidate.exists():
        raise ModelError(f"{candidate} is a file; --model takes a checkpoint folder (config.json + model.safetensors)")
    raise _unknown(name_or_path)


def _bundled_entry_at(folder: Path) -> ModelEntry | None:
    """The registry entry whose bundled folder ``folder`` is, or None."""
    try:
        root = models_root().resolve()
    except ModelError:
        return None
    resolved = folder.resolve()
    if resolved.parent == root and resolved.name in REGISTRY:
        return REGISTRY[resolved.name]
    return None


def registered_folder(entry: ModelEntry) -> Path:
    """A verified folder with ``entry``'s files: the bundled copy, else the Hub cache or a download."""
    folder = bundled_folder(entry)
    if folder is not None:
        return folder
    if entry.repo_id is None:
        verify_folder(models_root() / entry.name, entry)
    from amtcli.hub import fetch_entry

    try:
        return fetch_entry(entry)
    except ModelError as exc:
        raise ModelError(f"{exc}{_bundled_note(entry)}") from None


def _bundled_note(entry: ModelEntry) -> str:
    """Why the bundled copy was not used, when one is there but altered (e.g. a Git LFS pointer)."""
    try:
        folder = models_root() / entry.name
    except ModelError:
        return ""
    altered = {n: p for n, p in folder_problems(folder, entry).items() if p != "missing"}
    if not altered:
        return ""
    name, problem = next(iter(altered.items()))
    return f" (the bundled {folder / name} was not used: {problem})"


def card_body(card: str) -> str:
    """A model card without its YAML front matter (the Hub metadata between two ``---`` lines)."""
    lines = card.splitlines(keepends=True)
    if lines and lines[0].strip() == "---":
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
        if end is not None:
            return "".join(lines[end + 1:]).lstrip("\n")
    return card


def _card_description(card: str) -> str:
    lines = card_body(card).splitlines()
    text = next((line.strip() for line in lines if line.strip() and not line.lstrip().startswith(("#", "|", "<"))), "")
    return text if len(text) <= 100 else text[:97].rstrip() + "..."


def entry_from_folder(name: str, folder: str | os.PathLike, repo_id: str | None, revision: str | None,
                      description: str | None = None, metrics: dict[str, float] | None = None) -> str:
    """The Python literal of a registry entry for the checkpoint in ``folder``, to paste into ``_ENTRIES``.

    Hashes and sizes are computed from the files; the family comes from config.json;
    ``description`` defaults to the first sentence-like line of the model card, and
    ``metrics`` to the validation scores ``train`` stored in config.json. The entry is
    validated (names, 40-hex revision, required files) before it is printed.

    Raises ModelError if the folder lacks config.json, model.safetensors or README.md.
    """
    folder = Path(folder)
    for required in (*REQUIRED_FILES, CARD_FILE):
        if not (folder / required).is_file():
            raise ModelError(f"{folder}: no {required}; a published checkpoint needs config.json, "
                             "model.safetensors and a model card README.md")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        family = config["family"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{folder / CONFIG_FILE}: no family ({exc})") from None
    if description is None:
        description = _card_description((folder / CARD_FILE).read_text(encoding="utf-8"))
    if metrics is None:
        scores = config.get("validation", {})
        metrics = {k: round(float(v), 4) for k, v in scores.items()} if isinstance(scores, dict) else {}
    files = tuple(ModelFile(n, sha256_of(folder / n), (folder / n).stat().st_size)
                  for n in (*REQUIRED_FILES, CARD_FILE))
    try:
        entry = ModelEntry(name, family, description, files, repo_id, revision, dict(metrics))
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    return entry_literal(entry)


def entry_literal(entry: ModelEntry) -> str:
    """``entry`` as Python source (a ``ModelEntry(...)`` call with keyword arguments)."""
    lines = [
        "ModelEntry(",
        f"    name={entry.name!r},",
        f"    family={entry.family!r},",
        f"    description={entry.description!r},",
        f"    repo_id={entry.repo_id!r},",
        f"    revision={entry.revision!r},",
        "    files=(",
        *(f"        ModelFile({f.name!r}, sha256={f.sha256!r}, size={f.size}),"
          for f in entry.files),
        "    ),",
        f"    metrics={dict(entry.metrics)!r},",
        "),",
    ]
    return "\n".join(lines) + "\n"


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, flags=re.IGNORECASE) is not None


def registry_problems() -> list[str]:
    """Disagreements between REGISTRY, the bundled folders and their model cards, one line each.

    For every entry: ``models/<name>/`` exists and holds every listed file with its size
    and sha256; config.json names the entry's family; a README.md model card is listed
    and mentions the model's name and family.
    """
    problems = []
    root = models_root()
    for entry in REGISTRY.values():
        folder = root / entry.name
        if not folder.is_dir():
            problems.append(f"{entry.name}: no bundled folder {folder}")
            continue
        problems += [f"{entry.name}: {name}: {problem}" for name, problem in folder_problems(folder, entry).items()]
        try:
            family = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("family")
        except (OSError, ValueError, AttributeError):
            family = None
        if family != entry.family:
            problems.append(f"{entry.name}: config.json family {family!r}, registry says {entry.family!r}")
        if entry.file(CARD_FILE) is None:
            problems.append(f"{entry.name}: no {CARD_FILE} model card listed")
            continue
        try:
            card = (folder / CARD_FILE).read_text(encoding="utf-8")
        except OSError:
            continue
        for word in dict.fromkeys((entry.name, entry.family)):
            if not _mentions(card, word):
                problems.append(f"{entry.name}: {CARD_FILE} does not mention {word!r}")
    return problems
