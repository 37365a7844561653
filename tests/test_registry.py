"""Registry entries, bundled-folder resolution, the registry/card checker and ``amtcli models``.

Everything here runs in-process without any request: the Hub cache is pointed at a
temporary folder and offline mode is switched on by patching
``huggingface_hub.constants`` (safe because nothing here downloads; the download
path itself is tested in test_hub.py with real environment variables).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from amtcli import registry
from amtcli.errors import ModelError
from amtcli.registry import ModelEntry, ModelFile, entry_from_folder, sha256_of

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SHA = "0" * 64


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty bundled-models root and Hub cache under tmp_path, offline, and a private REGISTRY."""
    from huggingface_hub import constants

    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setattr(registry, "models_root", lambda: root)
    monkeypatch.setattr(registry, "REGISTRY", {})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return root


def bundle(root: Path, source: Path, name: str = "tiny", card: str | None = None, **entry_args) -> ModelEntry:
    """Copy a checkpoint into ``root/name`` with a model card and register it."""
    folder = root / name
    shutil.copytree(source, folder)
    (folder / "README.md").write_text(card or f"# {name}\n\nA tiny onf model for tests.\n", encoding="utf-8")
    files = tuple(ModelFile(n, sha256_of(folder / n), (folder / n).stat().st_size)
                  for n in ("config.json", "model.safetensors", "README.md"))
    entry = ModelEntry(name, "onf", "tiny test model", files, metrics={"onset F1, synth test": 0.5}, **entry_args)
    registry.REGISTRY[name] = entry
    return entry


def console() -> Console:
    return Console(record=True, width=200)


def test_file_names_match_the_checkpoint_module():
    from amtcli import checkpoint

    assert (registry.CONFIG_FILE, registry.WEIGHTS_FILE, registry.CARD_FILE) == (
        checkpoint.CONFIG_FILE, checkpoint.WEIGHTS_FILE, checkpoint.CARD_FILE)


def test_published_registry_agrees_with_bundled_folders_and_cards():
    assert registry.registry_problems() == []
    assert registry.DEFAULT_MODEL in registry.REGISTRY or not registry.REGISTRY


def test_checker_reports_wrong_hash_family_and_card(isolated, random_onf_checkpoint):
    entry = bundle(isolated, random_onf_checkpoint, card="# tiny\n\nNo family named here.\n")
    assert registry.registry_problems() == ["tiny: README.md does not mention 'onf'"]
    wrong = ModelFile("model.safetensors", SHA, entry.file("model.safetensors").size)
    registry.REGISTRY["tiny"] = ModelEntry("tiny", "cnn", "x", (entry.file("config.json"), wrong))
    problems = registry.registry_problems()
    assert "tiny: model.safetensors: sha256 does not match" in problems
    assert "tiny: config.json family 'onf', registry says 'cnn'" in problems
    assert "tiny: no README.md model card listed" in problems
    registry.REGISTRY["ghost"] = ModelEntry("ghost", "onf", "x", (entry.file("config.json"), wrong))
    assert any(p.startswith("ghost: no bundled folder") for p in registry.registry_problems())


@pytest.mark.parametrize("changes, message", [
    ({"revision": "main"}, "40-hex commit"),
    ({"revision": None}, "both repo_id and revision"),
    ({"repo_id": "no-slash"}, "ORG/REPO"),
    ({"name": "Bad Name"}, "lowercase"),
    ({"files": (ModelFile("config.json", SHA, 1),)}, "model.safetensors"),
])
def test_entry_validation(changes, message):
    args = dict(name="ok", family="onf", description="d", repo_id="org/repo", revision=COMMIT,
                files=(ModelFile("config.json", SHA, 1), ModelFile("model.safetensors", SHA, 2)))
    with pytest.raises(ValueError, match=message):
        ModelEntry(**{**args, **changes})


def test_model_file_validation():
    with pytest.raises(ValueError, match="64 lowercase hex"):
        ModelFile("config.json", "ABC", 1)
    with pytest.raises(ValueError, match="plain file name"):
        ModelFile("sub/config.json", SHA, 1)


def test_entry_from_folder_prints_a_literal_that_round_trips(tmp_path, random_onf_checkpoint):
    folder = tmp_path / "onf"
    shutil.copytree(random_onf_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["validation"] = {"val_onset_f1": 0.812345}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# onf\n\nOnsets and Frames, CPU-sized.\n")
    text = entry_from_folder("onf", folder, "org/onf", COMMIT)
    entry = eval(text.rstrip().rstrip(","), {"ModelEntry": ModelEntry, "ModelFile": ModelFile})
    assert entry.family == "onf" and entry.repo_id == "org/onf" and entry.revision == COMMIT
    assert entry.description == "Onsets and Frames, CPU-sized."
    assert entry.metrics == {"val_onset_f1": 0.8123}
    assert [f.name for f in entry.files] == ["config.json", "model.safetensors", "README.md"]
    assert registry.folder_problems(folder, entry) == {}
    with pytest.raises(ModelError, match="40-hex commit"):
        entry_from_folder("onf", folder, "org/onf", "main")
    (folder / "README.md").unlink()
    with pytest.raises(ModelError, match="model card README.md"):
        entry_from_folder("onf", folder, "org/onf", COMMIT)


def test_bundled_model_resolves_and_a_modified_copy_is_refused(isolated, random_onf_checkpoint):
    bundle(isolated, random_onf_checkpoint)
    assert registry.resolve_model("tiny") == ("tiny", isolated / "tiny")
    (isolated / "tiny" / "README.md").write_text("# tiny\n\nedited onf card\n")
    with pytest.raises(ModelError, match=r"README.md: size .* reinstall amtcli"):
        registry.resolve_model("tiny")


def test_modified_bundle_of_a_hub_model_falls_back_to_the_hub(isolated, random_onf_checkpoint):
    bundle(isolated, random_onf_checkpoint, repo_id="org/tiny", revision=COMMIT)
    (isolated / "tiny" / "model.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(ModelError, match=r"HF_HUB_OFFLINE is set; run `amtcli models download tiny`.*"
                                         r"the bundled .*model.safetensors was not used: size"):
        registry.resolve_model("tiny")


def test_registered_name_wins_over_a_local_folder(isolated, random_onf_checkpoint, tmp_path, monkeypatch):
    bundle(isolated, random_onf_checkpoint)
    shutil.copytree(random_onf_checkpoint, tmp_path / "work" / "tiny")
    monkeypatch.chdir(tmp_path / "work")
    assert registry.resolve_model("tiny")[1] == isolated / "tiny"
    assert registry.resolve_model("./tiny")[1] == Path("tiny")
    assert registry.resolve_model(str(random_onf_checkpoint))[1] == random_onf_checkpoint


def test_unknown_model_lists_the_valid_names(isolated, random_onf_checkpoint):
    with pytest.raises(ModelError, match="none yet"):
        registry.resolve_model("nope")
    bundle(isolated, random_onf_checkpoint)
    with pytest.raises(ModelError, match=r"unknown model 'nope'; available: tiny; or give a checkpoint folder"):
        registry.resolve_model("nope")


def test_models_root_is_the_checkout_folder():
    assert registry.models_root() == Path(registry.__file__).resolve().parent.parent / "models"


def test_list_info_download_verify_with_a_bundled_model(isolated, random_onf_checkpoint):
    from amtcli.commands.models import run_download, run_info, run_list, run_verify

    out = console()
    assert run_list(out) == 0 and "No trained model is registered yet" in out.export_text()
    bundle(isolated, random_onf_checkpoint, repo_id="org/tiny", revision=COMMIT,
           card="---\nlicense: mit\n---\n# tiny\n\nA tiny onf model for tests.\n")
    assert run_list(out) == 0
    listed = out.export_text()
    assert "bundled" in listed and "onset F1" not in listed and "models info NAME" in listed
    assert run_info("tiny", out) == 0
    info = out.export_text()
    assert "A tiny onf model for tests." in info and "onset F1, synth test 0.500" in info and "license: mit" not in info and COMMIT in info
    assert run_download("all", out) == 0 and "nothing to download" in out.export_text()
    assert run_verify(out) == 0 and "3 files checked, 0 do not match" in out.export_text()
    (isolated / "tiny" / "config.json").write_text("{}")
    assert run_verify(out) == 1 and "1 do not match" in out.export_text()
    assert run_list(out) == 0 and "download needed" in out.export_text()
    assert run_download("tiny", out) == 1 and "HF_HUB_OFFLINE is set" in out.export_text()
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        run_info("nope", out)


def test_pyproject_ships_every_package_and_the_models_folder():
    tomllib = pytest.importorskip("tomllib")
    root = Path(registry.__file__).resolve().parent.parent
    setuptools = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    if setuptools.get("package-dir", {}).get("amtcli_models") != "models":
        pytest.skip("pyproject.toml does not ship models/ as amtcli_models yet")
    code_packages = {".".join(p.parent.relative_to(root).parts) for p in (root / "amtcli").rglob("*.py")}
    assert code_packages <= set(setuptools["packages"])
    assert "amtcli_models" in setuptools["packages"]
    assert "**/*" in setuptools["package-data"]["amtcli_models"]
