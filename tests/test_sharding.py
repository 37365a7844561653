"""--shard K/N: disjoint parts that cover the inputs, whatever their order."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from amtcli.cli import app
from amtcli.errors import ConfigError
from amtcli.sharding import parse_shard, select_shard


def test_parts_are_disjoint_cover_the_inputs_and_ignore_their_order():
    files = [(Path(f"music/{d}/take{i}.wav"), Path("music")) for d in "abc" for i in range(40)]
    files += [(Path(f"named{i}.flac"), None) for i in range(10)]
    parts = [select_shard(files, k, 4) for k in range(4)]
    assert sorted(f for part in parts for f in part) == sorted(files)
    assert all(len(part) > 10 for part in parts)                      # a hash spreads them
    shuffled = files[:]
    random.Random(1).shuffle(shuffled)
    for k in range(4):
        assert sorted(select_shard(shuffled, k, 4)) == sorted(parts[k])
    moved = [(Path("/mnt/other") / p.relative_to("music"), Path("/mnt/other")) if r else (p, r) for p, r in files]
    assert [p.name for p, _ in select_shard(moved, 2, 4)] == [p.name for p, _ in parts[2]]   # another mount point
    assert select_shard(files, 0, 1) == files


@pytest.mark.parametrize("text", ["4/4", "1", "a/b", "-1/3", "0/0"])
def test_bad_shard_values(text):
    with pytest.raises(ConfigError):
        parse_shard(text)


def test_two_shard_commands_transcribe_every_file_once(tmp_path, random_onf_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        sf.write(folder / f"f{i}.wav", np.zeros(8000, dtype=np.float32), 16000)
    written = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        result = CliRunner().invoke(app, ["transcribe", str(folder), "--output-dir", str(out), "--shard", f"{k}/2",
                                          "--model", str(random_onf_checkpoint)])
        assert result.exit_code == 0, result.output
        mine = sorted(p.name for p in out.iterdir()) if out.exists() else []
        assert f"shard {k}/2: {len(mine)} of 6 files" in " ".join(result.output.split())
        written += mine
    assert sorted(written) == [f"f{i}.mid" for i in range(6)]
