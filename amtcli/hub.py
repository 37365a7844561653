"""Checkpoints from the Hugging Face Hub: cache first, pinned downloads, sha256 verified here.

Files are fetched with ``huggingface_hub.hf_hub_download`` into the standard Hub
cache, so the library's environment variables apply: ``HF_HOME`` / ``HF_HUB_CACHE``
(where the cache is), ``HF_ENDPOINT`` (which server), ``HF_HUB_OFFLINE`` (never touch
the network). ``huggingface_hub`` reads them once, when it is imported, so set them
before starting amtcli.

For a registered model the revision is a commit, so a cached file is used without
any request. The library only checks a download's size, so every file is checked
against the registry's sha256 here: a cached file that does not match is removed
and fetched again once; a fresh download that does not match is an error, never
used. A file that is not cached is fetched with ``force_download=True``: the cache
was just looked up, and this makes an unreachable server an immediate error rather
than the library's retries with backoff (about 20 s).

``hf://ORG/REPO[@REV]`` names a checkpoint someone published in the same layout
(config.json + model.safetensors + README.md). There is no registry hash for it; its
layout and config are checked here, and :func:`amtcli.checkpoint.load_checkpoint`
loads its weights strictly.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from amtcli.errors import ModelError
from amtcli.model_files import (CARD_FILE, COMMIT_RE, HF_PREFIX, REPO_ID_RE, REQUIRED_FILES, ModelEntry, ModelFile,
                                file_problem)

#: Top-level modules of the HTTP stacks huggingface_hub versions use; their errors mean "no connection".
_NETWORK_MODULES = {"httpx", "httpx2", "httpcore", "requests", "urllib3"}


class NotOnHub(ModelError):
    """The repository exists but the file is not in it at that revision (HTTP 404)."""


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` was set when ``huggingface_hub`` was imported."""
    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path:
    """The Hub cache folder (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else ~/.cache/huggingface/hub)."""
    return Path(constants.HF_HUB_CACHE)


def endpoint() -> str:
    """The Hub server in use (``HF_ENDPOINT``, else https://huggingface.co)."""
    return constants.ENDPOINT


def cached_file(repo_id: str, filename: str, revision: str) -> Path | None:
    """The cached copy of ``filename`` at ``revision`` (a commit, branch or tag), without any request."""
    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def _unwrap(exc: BaseException) -> BaseException:
    """The real error behind the library's "force download failed due to the above error" ValueError."""
    return exc.__cause__ if isinstance(exc, ValueError) and exc.__cause__ is not None else exc


def _not_found(cause: BaseException) -> bool:
    if isinstance(cause, EntryNotFoundError) and not isinstance(cause, LocalEntryNotFoundError):
        return True
    known = (RepositoryNotFoundError, RevisionNotFoundError)
    return (isinstance(cause, HfHubHTTPError) and not isinstance(cause, known)
            and cause.response is not None and cause.response.status_code == 404)


def _reason(cause: BaseException, repo_id: str, revision: str) -> str | None:
    """A short reason for a failed Hub request, or None for an error that is not about the Hub."""
    if isinstance(cause, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    if isinstance(cause, RevisionNotFoundError):
        return f"revision {revision} is not in {repo_id}"
    if isinstance(cause, GatedRepoError):
        return f"{repo_id} is gated; accept its terms on the Hub and log in (`hf auth login` or HF_TOKEN)"
    if isinstance(cause, RepositoryNotFoundError):
        return f"repository {repo_id} not found (if it is private, log in with `hf auth login` or set HF_TOKEN)"
    if isinstance(cause, HfHubHTTPError):
        status = cause.response.status_code if cause.response is not None else "?"
        return f"the Hub answered HTTP {status}"
    network = type(cause).__module__.split(".")[0] in _NETWORK_MODULES
    if network or isinstance(cause, (ConnectionError, TimeoutError, LocalEntryNotFoundError)):
        return f"cannot reach {endpoint()} ({type(cause).__name__}); check the network and HF_ENDPOINT"
    if isinstance(cause, OSError):
        first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        return f"the download failed ({first})"
    return None


def download_file(repo_id: str, filename: str, revision: str, label: str, force: bool = False) -> Path:
    """Fetch ``filename`` of ``repo_id`` at ``revision`` into the Hub cache; its path there.

    ``label`` names what is being fetched in error messages ("model 'onf'").
    Raises NotOnHub for a missing file and ModelError for every other failure.
    """
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, force_download=force))
    except Exception as exc:
        cause = _unwrap(exc)
        if _not_found(cause):
            raise NotOnHub(f"{label}: {filename} is not in {repo_id} at revision {revision}") from None
        reason = _reason(cause, repo_id, revision)
        if reason is None:
            raise
        raise ModelError(f"{label}: cannot download {filename} from {repo_id}: {reason}") from None


def fetch_verified(entry: ModelEntry, spec: ModelFile) -> Path:
    """The Hub-cache copy of one registered file, verified by size and sha256.

    A cached copy that does not match is removed and fetched again once; a fresh
    download that does not match raises ModelError.
    """
    label = f"model {entry.name!r}"
    cached = cached_file(entry.repo_id, spec.name, entry.revision)
    if cached is not None and file_problem(cached, spec) is None:
        return cached
    if is_offline():
        if cached is not None:
            raise ModelError(f"{label}: the cached {spec.name} is corrupt ({file_problem(cached, spec)}) and "
                             "HF_HUB_OFFLINE is set; go online once to fetch it again")
        raise ModelError(f"{label} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; run "
                         f"`amtcli models download {entry.name}` once while online, or pass --model FOLDER")
    if cached is not None:
        try:
            cached.unlink()
        except OSError as exc:
            raise ModelError(f"{label}: the cached {cached} is corrupt and cannot be removed "
                             f"({exc.strerror or exc}); delete it and run again") from None
    try:
        path = download_file(entry.repo_id, spec.name, entry.revision, label, force=True)
    except NotOnHub as exc:
        raise ModelError(f"{exc}; the registry and the Hub disagree, report it to the amtcli maintainers") from None
    problem = file_problem(path, spec)
    if problem is not None:
        raise ModelError(f"{label}: {spec.name} downloaded from {entry.repo_id}@{entry.revision[:12]} does not "
                         f"match the registry ({problem}); not using it, report it to the amtcli maintainers")
    return path


def cached_entry_folder(entry: ModelEntry) -> Path | None:
    """The cached snapshot folder if it holds every file of ``entry`` intact; no request is made."""
    if entry.repo_id is None:
        return None
    folders = set()
    for spec in entry.files:
        path = cached_file(entry.repo_id, spec.name, entry.revision)
        if path is None or file_problem(path, spec) is not None:
            return None
        folders.add(path.parent)
    return folders.pop() if len(folders) == 1 else None


def fetch_entry(entry: ModelEntry) -> Path:
    """A folder with every file of a registered model, from the cache or downloaded, all verified."""
    if entry.repo_id is None:
        raise ModelError(f"model {entry.name!r} is not on the Hub and its bundled copy is unusable; reinstall amtcli")
    paths = [fetch_verified(entry, spec) for spec in entry.files]
    return paths[0].parent


def parse_hf_uri(uri: str) -> tuple[str, str]:
    """(repo_id, revision) of ``hf://ORG/REPO[@REV]``; the revision defaults to ``main``."""
    if not uri.startswith(HF_PREFIX):
        raise ModelError(f"{uri!r} is not an hf:// address; write hf://ORG/REPO or hf://ORG/REPO@REVISION")
    repo_id, at, revision = uri[len(HF_PREFIX):].partition("@")
    if not REPO_ID_RE.fullmatch(repo_id) or (at and not revision):
        raise ModelError(f"{uri!r}: write hf://ORG/REPO or hf://ORG/REPO@REVISION (a commit, branch or tag)")
    return repo_id, revision or "main"


def fetch_hf_file(repo_id: str, filename: str, revision: str, label: str) -> Path:
    """``filename`` of a third-party repo: cached (commit revisions, or offline), else downloaded.

    A branch or tag is checked against the Hub when online, so a moved branch is
    followed; offline, the last cached commit of that branch is used.
    """
    cached = cached_file(repo_id, filename, revision)
    if cached is not None and (COMMIT_RE.fullmatch(revision) or is_offline()):
        return cached
    if is_offline():
        raise ModelError(f"{label}: {filename} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                         f"run `amtcli models download {label}` once while online")
    return download_file(repo_id, filename, revision, label, force=cached is None)


def check_layout(folder: Path, label: str) -> str:
    """Family name of the checkpoint in ``folder``; ModelError unless config.json names a known family."""
    from amtcli.checkpoint import get_family, read_config

    try:
        return get_family(read_config(folder)["family"]).name
    except ModelError as exc:
        raise ModelError(f"{label}: not a usable amtcli checkpoint ({exc})") from None


def resolve_hf_uri(uri: str) -> Path:
    """The cached folder of the checkpoint at ``hf://ORG/REPO[@REV]``, downloaded if needed, layout checked."""
    repo_id, revision = parse_hf_uri(uri)
    try:
        paths = [fetch_hf_file(repo_id, name, revision, uri) for name in REQUIRED_FILES]
    except NotOnHub as exc:
        raise ModelError(f"{exc}; an amtcli checkpoint has config.json + model.safetensors") from None
    folders = {p.parent for p in paths}
    if len(folders) != 1:
        raise ModelError(f"{uri}: revision {revision} moved while downloading; run again or pin a commit with @REV")
    folder = folders.pop()
    check_layout(folder, uri)
    return folder


def fetch_hf_card(uri: str) -> Path:
    """The model card README.md of ``hf://ORG/REPO[@REV]``; NotOnHub if the repo has none."""
    repo_id, revision = parse_hf_uri(uri)
    try:
        return fetch_hf_file(repo_id, CARD_FILE, revision, uri)
    except NotOnHub as exc:
        raise NotOnHub(f"{exc}; the checkpoint has no model card") from None
