"""``amtcli models list|info|download|verify``: what is registered, where it is, and is it intact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from amtcli.errors import ModelError
from amtcli.registry import (
    CARD_FILE,
    HF_PREFIX,
    REGISTRY,
    ModelEntry,
    ModelFile,
    available_models,
    bundled_folder,
    card_body,
    file_problem,
    get_entry,
    models_root,
)


def status_of(entry: ModelEntry) -> str:
    """"bundled", "cached", "download needed" or "missing" (bundled-only and not intact); no request."""
    from amtcli.hub import cached_entry_folder

    if bundled_folder(entry) is not None:
        return "bundled"
    if cached_entry_folder(entry) is not None:
        return "cached"
    return "download needed" if entry.repo_id else "missing"


def _metrics(entry: ModelEntry) -> str:
    return ", ".join(f"{label} {value:.3f}" for label, value in entry.metrics.items()) or "-"


def _size(n_bytes: int) -> str:
    if n_bytes < 1000:
        return f"{n_bytes} B"
    value, unit = next((n_bytes / 1000**k, u) for k, u in ((3, "GB"), (2, "MB"), (1, "kB")) if n_bytes >= 1000**k)
    return f"{value:.1f} {unit}"


def run_list(console) -> int:
    """Print every registered model with its family, status and description (its metrics
    are in ``models info``, so the table fits 80 columns). Returns 0."""
    from amtcli.hub import hub_cache_dir, is_offline

    if not REGISTRY:
        console.print("No trained model is registered yet; `amtcli train --recipe models/onf/recipe.toml` "
                      "makes one. `--model` also takes a checkpoint folder or hf://ORG/REPO@REV.")
        return 0
    table = Table()
    for column in ("model", "family", "status", "description"):
        table.add_column(column, overflow="fold")
    for name in available_models():
        entry = REGISTRY[name]
        table.add_row(name, entry.family, status_of(entry), escape(entry.description))
    console.print(table)
    console.print("Scores, training data and limits of each: amtcli models info NAME")
    offline = " (HF_HUB_OFFLINE is set: no downloads)" if is_offline() else ""
    console.print(f"Hugging Face cache: {escape(str(hub_cache_dir()))}{offline}")
    return 0


def _registered_card(entry: ModelEntry) -> Path:
    """The verified README.md of a registered model: bundled, else cached or downloaded."""
    from amtcli.hub import fetch_verified

    spec = entry.file(CARD_FILE)
    if spec is None:
        raise ModelError(f"model {entry.name!r} has no model card")
    bundled = models_root() / entry.name / CARD_FILE
    if file_problem(bundled, spec) is None:
        return bundled
    if entry.repo_id is None:
        raise ModelError(f"model {entry.name!r}: {bundled}: {file_problem(bundled, spec)}; reinstall amtcli")
    return fetch_verified(entry, spec)


def run_info(name: str, console) -> int:
    """Print a model's registry facts and its model card (README.md). Returns 0.

    ``name`` is a registered name, ``hf://ORG/REPO[@REV]`` or a checkpoint folder.
    """
    from rich.markdown import Markdown

    if name.startswith(HF_PREFIX):
        from amtcli.hub import fetch_hf_card

        card = fetch_hf_card(name)
        console.print(f"[bold]{escape(name)}[/bold] (not in the registry: no pinned hashes)")
    elif name in REGISTRY or not Path(name).is_dir():
        entry = get_entry(name)
        hub = f"{entry.repo_id} at commit {entry.revision}" if entry.repo_id else "bundled only"
        files = ", ".join(f"{f.name} ({_size(f.size)})" for f in entry.files)
        console.print(f"[bold]{entry.name}[/bold]: {escape(entry.description)}")
        console.print(f"family {entry.family}; status {status_of(entry)}; Hub {hub}")
        console.print(f"files: {files}")
        console.print(f"headline metrics: {escape(_metrics(entry))}")
        card = _registered_card(entry)
    else:
        card = Path(name) / CARD_FILE
        if not card.is_file():
            raise ModelError(f"{name}: no {CARD_FILE} model card in this folder")
        console.print(f"[bold]{escape(name)}[/bold] (local folder)")
    console.rule()
    console.print(Markdown(card_body(card.read_text(encoding="utf-8"))))
    return 0


def _download_hf(uri: str, console) -> None:
    """Fetch an hf:// checkpoint and its card, and load it strictly once to prove it works."""
    from amtcli.checkpoint import load_checkpoint
    from amtcli.hub import NotOnHub, fetch_hf_card, resolve_hf_uri

    folder = resolve_hf_uri(uri)
    try:
        fetch_hf_card(uri)
        card = "with its model card"
    except NotOnHub:
        card = "without a model card"
    model = load_checkpoint(folder, "cpu", name=uri)
    console.print(f"[green]ok[/green] {escape(uri)}: family {model.family}, weights load strictly, {card}; "
                  f"cached at {escape(str(folder))}")


def run_download(name_or_all: str, console) -> int:
    """Make models usable offline: a registered name, ``all``, or ``hf://ORG/REPO[@REV]``.

    Each model is reported in one line; returns 1 if any failed, else 0.
    """
    from amtcli.hub import fetch_entry

    if name_or_all.startswith(HF_PREFIX):
        _download_hf(name_or_all, console)
        return 0
    if name_or_all == "all":
        entries = [REGISTRY[n] for n in available_models()]
        if not entries:
            console.print("No trained model is registered yet; nothing to download.")
            return 0
    else:
        entries = [get_entry(name_or_all)]
    failures = 0
    for entry in entries:
        try:
            bundled = bundled_folder(entry)
            if bundled is not None:
                console.print(f"[green]ok[/green] {entry.name}: bundled at {escape(str(bundled))}; nothing to download")
                continue
            folder = fetch_entry(entry)
        except ModelError as exc:
            failures += 1
            console.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
            continue
        console.print(f"[green]ok[/green] {entry.name}: verified in the Hugging Face cache at {escape(str(folder))}")
    return 1 if failures else 0


def _copies(entry: ModelEntry) -> Iterator[tuple[ModelFile, str, Path]]:
    """(file record, "bundled" or "cached", path) for every copy of ``entry``'s files on this machine."""
    from amtcli.hub import cached_file

    try:
        root: Path | None = models_root() / entry.name
    except ModelError:
        root = None
    for spec in entry.files:
        if root is not None and (root / spec.name).exists():
            yield spec, "bundled", root / spec.name
        if entry.repo_id is not None:
            cached = cached_file(entry.repo_id, spec.name, entry.revision)
            if cached is not None:
                yield spec, "cached", cached


def run_verify(console) -> int:
    """Check every bundled and cached file of every registered model by size and sha256.

    Prints one row per file; returns 1 if any file does not match, else 0. Files that
    are neither bundled nor cached are not an error (they are fetched when needed).
    """
    if not REGISTRY:
        console.print("No trained model is registered yet; nothing to verify.")
        return 0
    table = Table()
    for column in ("model", "file", "copy", "result"):
        table.add_column(column)
    table.add_column("path", overflow="fold")
    checked = bad = 0
    for name in available_models():
        entry = REGISTRY[name]
        found = False
        for spec, where, path in _copies(entry):
            found = True
            checked += 1
            problem = file_problem(path, spec)
            bad += problem is not None
            result = "[green]ok[/green]" if problem is None else f"[red]{problem}[/red]"
            table.add_row(name, spec.name, where, result, escape(str(path)))
        if not found:
            table.add_row(name, "-", "-", "not bundled, not cached", "-")
    console.print(table)
    console.print(f"{checked} files checked, {bad} do not match the registry")
    return 1 if bad else 0
