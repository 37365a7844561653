"""The output-naming rule and write_outputs' all-or-nothing existence check."""

from __future__ import annotations

from pathlib import Path

import pytest

from amtcli.errors import ConfigError, OutputError
from amtcli.types import Note, Transcription
from amtcli.writers.naming import FORMATS, output_is_file, output_paths, parse_formats, write_outputs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mid", ("mid",)),
        ("midi", ("mid",)),
        ("csv,mid", ("mid", "csv")),
        (" CSV , png ", ("csv", "png")),
        ("all", FORMATS),
        ("mid,all", FORMATS),
        ("mid,midi,mid", ("mid",)),
        (".png", ("png",)),
    ],
)
def test_parse_formats(text: str, expected: tuple[str, ...]) -> None:
    assert parse_formats(text) == expected


@pytest.mark.parametrize("text", ["wav", "mid,xml", "", " , "])
def test_parse_formats_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_formats(text)
    assert "\n" not in str(info.value)


def test_next_to_input_by_default() -> None:
    assert output_paths(Path("songs/a/take.wav"), None) == {"mid": Path("songs/a/take.mid")}
    assert output_paths(Path("songs/take.flac"), ("mid", "csv")) == {
        "mid": Path("songs/take.mid"),
        "csv": Path("songs/take.csv"),
    }


def test_output_file_suffix_picks_format() -> None:
    assert output_paths(Path("in.wav"), None, output=Path("out/x.csv")) == {"csv": Path("out/x.csv")}
    assert output_paths(Path("in.wav"), None, output=Path("x.midi")) == {"mid": Path("x.midi")}
    assert output_paths(Path("in.wav"), None, output=Path("X.PNG")) == {"png": Path("X.PNG")}


def test_output_file_with_explicit_formats_shares_stem() -> None:
    assert output_paths(Path("in.wav"), ("mid", "csv", "png"), output=Path("res/x.midi")) == {
        "mid": Path("res/x.midi"),
        "csv": Path("res/x.csv"),
        "png": Path("res/x.png"),
    }
    with pytest.raises(ConfigError, match="leaves mid out"):          # would write only x.csv
        output_paths(Path("in.wav"), ("csv",), output=Path("x.mid"))


def test_output_without_format_suffix_is_a_directory(tmp_path: Path) -> None:
    assert not output_is_file(Path("results"))
    assert output_is_file(Path("results.mid"))
    existing = tmp_path / "looks_like.csv"
    existing.mkdir()
    assert not output_is_file(existing)
    assert output_paths(Path("songs/take.wav"), None, output=Path("results")) == {
        "mid": Path("results/take.mid")
    }
    assert output_paths(Path("take.wav"), ("csv",), output=existing) == {"csv": existing / "take.csv"}


def test_output_dir_mirrors_input_tree() -> None:
    paths = output_paths(
        Path("songs/a/b/take.v1.wav"),
        ("mid", "png"),
        output_dir=Path("out"),
        input_root=Path("songs"),
    )
    assert paths == {"mid": Path("out/a/b/take.v1.mid"), "png": Path("out/a/b/take.v1.png")}
    assert output_paths(Path("songs/a/take.wav"), None, output=Path("out"), input_root=Path("songs")) == {
        "mid": Path("out/a/take.mid")
    }


def test_output_dir_without_root_or_outside_root_uses_name() -> None:
    assert output_paths(Path("x/y/take.wav"), None, output_dir=Path("out")) == {"mid": Path("out/take.mid")}
    assert output_paths(
        Path("elsewhere/take.wav"), None, output_dir=Path("out"), input_root=Path("songs")
    ) == {"mid": Path("out/take.mid")}


def test_output_dir_with_resolved_root(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "songs" / "a").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    paths = output_paths(
        Path("songs/a/take.wav"), ("csv",), output_dir=Path("out"), input_root=tmp_path / "songs"
    )
    assert paths == {"csv": Path("out/a/take.csv")}


def test_conflicts_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        output_paths(Path("in.wav"), None, output=Path("a.mid"), output_dir=Path("d"))
    with pytest.raises(ConfigError, match="replace the input"):
        output_paths(Path("notes.csv"), ("csv",))
    with pytest.raises(ConfigError):
        output_paths(Path("in.wav"), ("wav",))


NOTES = (Note(0.0, 0.5, 60, program=0), Note(0.25, 1.0, 67, program=None))


def test_write_outputs_writes_every_format(tmp_path: Path) -> None:
    transcription = Transcription(NOTES, duration_s=1.0)
    paths = output_paths(tmp_path / "song.wav", parse_formats("all"))
    written = write_outputs(transcription, paths, overwrite=False, reference=[Note(0.0, 0.5, 60)])
    assert written == [tmp_path / "song.mid", tmp_path / "song.csv", tmp_path / "song.png"]
    assert all(p.stat().st_size > 0 for p in written)
    assert (tmp_path / "song.csv").read_text().startswith("onset,offset,pitch,velocity,instrument\n")


def test_write_outputs_checks_all_targets_first(tmp_path: Path) -> None:
    transcription = Transcription(NOTES, duration_s=1.0)
    paths = output_paths(tmp_path / "song.wav", parse_formats("all"))
    paths["png"].write_bytes(b"keep me")
    with pytest.raises(OutputError, match="song.png"):
        write_outputs(transcription, paths, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.png"]
    assert paths["png"].read_bytes() == b"keep me"

    written = write_outputs(transcription, paths, overwrite=True)
    assert len(written) == 3 and paths["png"].read_bytes() != b"keep me"


def test_write_outputs_creates_mirrored_folders(tmp_path: Path) -> None:
    paths = output_paths(
        Path("songs/a/take.wav"), ("csv",), output_dir=tmp_path / "out", input_root=Path("songs")
    )
    write_outputs(Transcription(NOTES, duration_s=1.0), paths, overwrite=False)
    assert (tmp_path / "out" / "a" / "take.csv").is_file()
