"""The download path, with the real ``huggingface_hub`` client against a local fake Hub.

``huggingface_hub`` reads ``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE`` once, when it is imported. So every scenario runs in a fresh
Python process started with those variables set, exactly as a user would run
amtcli; nothing patches the library's constants. The fake Hub is a threaded HTTP
server on 127.0.0.1 in the test process that answers HEAD and GET on
``/{repo_id}/resolve/{revision}/{filename}`` with the headers the client needs
(``ETag``, ``X-Repo-Commit``, ``Content-Length``; ``X-Error-Code`` on a 404) and
records every request, so a test can tell whether the server was contacted. Unlike
the real Hub it serves large files directly instead of redirecting to a CDN.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from amtcli.errors import ModelError

COMMIT = "3f2a9c0d5e7b8a1c4d6e9f0a2b3c5d7e8f9a0b1c"
REPO = "amtcli-test/tiny-onf"
MODEL = "tiny-hub-test"
WEIGHTS = "model.safetensors"

CHILD = r"""
import json, sys
from amtcli import registry
from amtcli.errors import AmtError

job = json.loads(sys.argv[1])
if job["entry"]:
    e = job["entry"]
    files = tuple(registry.ModelFile(**f) for f in e["files"])
    entry = registry.ModelEntry(e["name"], "onf", "test model", files, e["repo_id"], e["revision"])
    registry.REGISTRY[entry.name] = entry


def run(action, model):
    try:
        if action in ("resolve", "load"):
            name, folder = registry.resolve_model(model)
            if action == "resolve":
                return {"folder": str(folder)}
            from amtcli.checkpoint import load_checkpoint
            return {"folder": str(folder), "family": load_checkpoint(folder, "cpu", name=name).family}
        from rich.console import Console
        from amtcli.commands import models
        console = Console(record=True, width=300)
        commands = {"download": models.run_download, "info": models.run_info}
        code = commands[action](model, console) if action in commands else models.run_verify(console)
        return {"code": code, "output": console.export_text()}
    except AmtError as exc:
        return {"error": str(exc)}


print(json.dumps([run(action, model) for action, model in job["steps"]]))
"""


class FakeHub:
    """Files served per repo at one commit (also reachable as ``main``), and a log of requests."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.endpoint = ""

    def add(self, repo_id: str, files: dict[str, bytes], commit: str = COMMIT) -> None:
        self.repos[repo_id] = dict(files)
        self.commits[repo_id] = commit

    def count(self, method: str | None = None, filename: str | None = None) -> int:
        with self.lock:
            return sum(1 for m, path in self.requests
                       if (method is None or m == method) and (filename is None or path.endswith("/" + filename)))


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _reply(self, status: int, headers: dict[str, str], data: bytes = b"", body: bool = False) -> None:
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _serve(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            with hub.lock:
                hub.requests.append((self.command, path))
            match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if match is None or match.group(1) not in hub.repos:
                return self._reply(404, {"X-Error-Code": "RepoNotFound"})
            repo_id, revision, filename = match.groups()
            commit = hub.commits[repo_id]
            if revision not in (commit, "main"):
                return self._reply(404, {"X-Error-Code": "RevisionNotFound"})
            data = hub.repos[repo_id].get(filename)
            if data is None:
                return self._reply(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
            etag = f'"{hashlib.sha256(data).hexdigest()}"'
            self._reply(200, {"ETag": etag, "X-Repo-Commit": commit}, data, body)

    return Handler


@pytest.fixture
def fake_hub():
    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    hub.endpoint = f"http://127.0.0.1:{server.server_port}"
    yield hub
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def checkpoint_files(tmp_path_factory) -> dict[str, bytes]:
    """config.json, model.safetensors and README.md of a tiny random onf model, as bytes."""
    import torch

    from amtcli.checkpoint import save_checkpoint
    from amtcli.families.onsets_frames import OnsetsFrames, OnsetsFramesConfig

    torch.manual_seed(0)
    config = OnsetsFramesConfig(conv_channels=4, model_dim=32, lstm_units=8)
    folder = tmp_path_factory.mktemp("hub_ckpt")
    save_checkpoint(folder, "onf", config.to_dict(), OnsetsFrames(config))
    (folder / "README.md").write_text(f"# {MODEL}\n\nA tiny onf test checkpoint.\n", encoding="utf-8")
    return {name: (folder / name).read_bytes() for name in ("config.json", WEIGHTS, "README.md")}


def entry_json(files: dict[str, bytes]) -> dict:
    """The registry entry (as JSON for the child) that pins ``files`` at COMMIT of REPO."""
    specs = [{"name": n, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in files.items()]
    return {"name": MODEL, "repo_id": REPO, "revision": COMMIT, "files": specs}


def run_child(steps: list[tuple[str, str | None]], endpoint: str, home: Path, entry: dict | None = None,
              offline: bool = False, hub_cache: Path | None = None) -> list[dict]:
    """Run amtcli steps in a fresh process with the Hub variables set before anything is imported.

    ``steps``: (action, model) pairs, action one of resolve, load, download, info, verify.
    ``entry``: a registry entry (see entry_json) registered in the child first.
    Returns one dict per step: {"folder"...}, {"code", "output"} or {"error": message}.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(("HF_", "HUGGINGFACE_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", NO_PROXY="127.0.0.1,localhost", OMP_NUM_THREADS="1")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    if hub_cache is not None:
        env["HF_HUB_CACHE"] = str(hub_cache)
    job = {"steps": steps, "entry": entry}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], env=env, capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def resolve(files: dict[str, bytes], endpoint: str, home: Path, **kwargs) -> dict:
    """Resolve the registered test model in a fresh process; its one result."""
    return run_child([("resolve", MODEL)], endpoint, home, entry_json(files), **kwargs)[0]


def unused_endpoint() -> str:
    """An endpoint on 127.0.0.1 where nothing listens (a port bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def assert_intact(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (folder / name).read_bytes() == data


def test_first_download_then_cache_hit_without_requests(fake_hub, checkpoint_files, tmp_path):
    fake_hub.add(REPO, checkpoint_files)
    first = resolve(checkpoint_files, fake_hub.endpoint, tmp_path / "home")
    folder = Path(first["folder"])
    assert folder.is_relative_to(tmp_path / "home" / "hub") and folder.name == COMMIT
    assert_intact(folder, checkpoint_files)
    assert fake_hub.count("GET") == 3
    before = fake_hub.count()
    assert resolve(checkpoint_files, fake_hub.endpoint, tmp_path / "home") == first
    assert fake_hub.count() == before


def test_offline_uses_the_cache_and_fails_clearly_without_it(fake_hub, checkpoint_files, tmp_path):
    fake_hub.add(REPO, checkpoint_files)
    online = resolve(checkpoint_files, fake_hub.endpoint, tmp_path / "home")
    before = fake_hub.count()
    assert resolve(checkpoint_files, fake_hub.endpoint, tmp_path / "home", offline=True) == online
    assert fake_hub.count() == before
    empty = resolve(checkpoint_files, fake_hub.endpoint, tmp_path / "empty", offline=True)
    assert "HF_HUB_OFFLINE" in empty["error"] and f"amtcli models download {MODEL}" in empty["error"]
    assert "\n" not in empty["error"] and fake_hub.count() == before


def test_corrupt_cache_file_is_fetched_again_once(fake_hub, checkpoint_files, tmp_path):
    fake_hub.add(REPO, checkpoint_files)
    cache = tmp_path / "hub-cache"
    folder = Path(resolve(checkpoint_files, fake_hub.endpoint, tmp_path / "home", hub_cache=cache)["folder"])
    assert folder.is_relative_to(cache)
    with open(folder / WEIGHTS, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\xff\xfe\xfd")
    gets = fake_hub.count("GET", WEIGHTS)
    verify, again, verify_again = run_child([("verify", None), ("resolve", MODEL), ("verify", None)],
                                            fake_hub.endpoint, tmp_path / "home", entry_json(checkpoint_files),
                                            hub_cache=cache)
    assert verify["code"] == 1 and "sha256 does not match" in verify["output"]
    assert Path(again["folder"]) == folder
    assert_intact(folder, checkpoint_files)
    assert fake_hub.count("GET", WEIGHTS) == gets + 1 and fake_hub.count("GET", "config.json") == 1
    assert verify_again["code"] == 0 and "files checked, 0 do not match" in verify_again["output"]


def test_checksum_mismatch_on_fresh_download_is_an_error(fake_hub, checkpoint_files, tmp_path):
    tampered = dict(checkpoint_files)
    tampered[WEIGHTS] = checkpoint_files[WEIGHTS][:-4] + b"\x00\x00\x00\x01"
    fake_hub.add(REPO, tampered)
    for _ in range(2):
        gets = fake_hub.count("GET", WEIGHTS)
        result = resolve(checkpoint_files, fake_hub.endpoint, tmp_path / "home")
        assert "does not match the registry (sha256 does not match)" in result["error"]
        assert fake_hub.count("GET", WEIGHTS) == gets + 1


def test_missing_file_on_the_hub_is_an_error(fake_hub, checkpoint_files, tmp_path):
    fake_hub.add(REPO, {k: v for k, v in checkpoint_files.items() if k != "README.md"})
    result = resolve(checkpoint_files, fake_hub.endpoint, tmp_path / "home")
    assert f"README.md is not in {REPO} at revision {COMMIT}" in result["error"]
    assert fake_hub.count("GET", "README.md") == 0


def test_server_down_is_a_quick_clear_error(fake_hub, checkpoint_files, tmp_path):
    fake_hub.add(REPO, checkpoint_files)
    [download] = run_child([("download", MODEL)], fake_hub.endpoint, tmp_path / "home", entry_json(checkpoint_files))
    assert download["code"] == 0 and "verified in the Hugging Face cache" in download["output"]
    dead = unused_endpoint()
    started = time.monotonic()
    result = resolve(checkpoint_files, dead, tmp_path / "other-home")
    assert time.monotonic() - started < 20
    assert f"cannot reach {dead}" in result["error"] and "HF_ENDPOINT" in result["error"]
    cached = resolve(checkpoint_files, dead, tmp_path / "home")
    assert_intact(Path(cached["folder"]), checkpoint_files)


def test_hf_uri_checkpoints(fake_hub, checkpoint_files, tmp_path):
    fake_hub.add("someone/onf-tiny", checkpoint_files)
    config = json.loads(checkpoint_files["config.json"])
    config["config"]["model_dim"] = 16
    fake_hub.add("someone/onf-wrong", {**checkpoint_files, "config.json": json.dumps(config).encode()})
    fake_hub.add("someone/not-a-checkpoint", {"README.md": b"# nothing here\n"})
    home = tmp_path / "home"
    loaded, wrong, download = run_child(
        [("load", "hf://someone/onf-tiny"), ("load", "hf://someone/onf-wrong"), ("download", "hf://someone/onf-tiny")],
        fake_hub.endpoint, home)
    assert loaded["family"] == "onf" and Path(loaded["folder"]).name == COMMIT
    assert_intact(Path(loaded["folder"]), {k: checkpoint_files[k] for k in ("config.json", WEIGHTS)})
    assert "weights do not match the config" in wrong["error"]
    assert download["code"] == 0 and "weights load strictly, with its model card" in download["output"]
    before = fake_hub.count()
    pinned_uri = f"hf://someone/onf-tiny@{COMMIT}"
    pinned, info = run_child([("resolve", pinned_uri), ("info", pinned_uri)], fake_hub.endpoint, home)
    assert pinned["folder"] == loaded["folder"] and fake_hub.count() == before
    assert info["code"] == 0 and "A tiny onf test checkpoint." in info["output"]
    uris = ["hf://someone/not-a-checkpoint", "hf://someone/nope", "hf://someone/onf-tiny@v9"]
    empty, missing, revision = run_child([("resolve", uri) for uri in uris], fake_hub.endpoint, home)
    assert "config.json is not in someone/not-a-checkpoint" in empty["error"]
    assert "repository someone/nope not found" in missing["error"]
    assert "revision v9 is not in someone/onf-tiny" in revision["error"]


@pytest.mark.parametrize("uri, expected", [
    ("hf://org/repo", ("org/repo", "main")),
    ("hf://org/repo@v1.0", ("org/repo", "v1.0")),
    (f"hf://Org-1/re.po_2@{COMMIT}", ("Org-1/re.po_2", COMMIT)),
])
def test_parse_hf_uri(uri, expected):
    from amtcli.hub import parse_hf_uri

    assert parse_hf_uri(uri) == expected


@pytest.mark.parametrize("uri", ["hf://org", "hf://org/repo/extra", "hf://org/repo@", "hf:///repo", "org/repo"])
def test_parse_hf_uri_rejects_bad_addresses(uri):
    from amtcli.hub import parse_hf_uri

    with pytest.raises(ModelError, match="hf://ORG/REPO"):
        parse_hf_uri(uri)
