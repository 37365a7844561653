"""``amtcli transcribe --ray``: the same outputs as the local batch, one error line per bad
file, nothing lost or written twice when a worker dies mid-file, and a one-line error
without the extra.

The Ray tests start Ray on this machine only (127.0.0.1, 2 CPUs, token auth off for
that loopback-only instance) and run the command as a subprocess, as a user would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from amtcli.cli import app
from conftest import harmonic_tone

RATE = 16000


def write_tones(folder: Path, n: int, seconds: float) -> list[Path]:
    """``n`` files of a repeated harmonic tone (a different pitch each), ``seconds`` long."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        tone = harmonic_tone(55 + 3 * i, 0.5, RATE)
        period = np.concatenate([tone, np.zeros(RATE // 4, dtype=np.float32)])
        samples = np.tile(period, int(seconds * RATE) // len(period) + 1)[: int(seconds * RATE)]
        paths.append(folder / f"take{i}.wav")
        sf.write(paths[-1], samples.astype(np.float32), RATE)
    return paths


def ray_env(tmp: Path, address: str | None = None) -> dict[str, str]:
    env = dict(os.environ, RAY_TMPDIR=str(tmp), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    if address:
        env["RAY_ADDRESS"] = address
    return env


def amtcli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amtcli", "transcribe", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A Ray head on 127.0.0.1 with 2 CPUs; yields the environment that reaches it with ``--ray auto``."""
    pytest.importorskip("ray")
    tmp = Path("/tmp") / f"amtcli-ray-{os.getpid()}"       # short: Ray's socket paths must fit in 107 bytes
    tmp.mkdir(exist_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = ray_env(tmp, f"127.0.0.1:{port}")
    ray_cli = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
    subprocess.run([*ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats"], env=env, check=True, capture_output=True,
                   timeout=180)
    try:
        yield env
    finally:
        subprocess.run([*ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.mark.slow
def test_ray_local_writes_what_the_local_batch_writes(tmp_path):
    pytest.importorskip("ray")
    inputs = tmp_path / "in"
    write_tones(inputs, 4, 3.0)
    env = ray_env(Path("/tmp") / f"amtcli-ray-local-{os.getpid()}")
    local = amtcli([str(inputs), "--output-dir", str(tmp_path / "local"), "-f", "mid,csv", "--model", "cnn"], env)
    assert local.returncode == 0, local.stderr
    ray = amtcli([str(inputs), "--output-dir", str(tmp_path / "ray"), "-f", "mid,csv", "--model", "cnn",
                  "--ray", "local", "--ray-workers", "2"], env)
    assert ray.returncode == 0, ray.stderr
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "ray").iterdir()) and len(names) == 8
    for name in names:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
    ok_lines = [line for line in ray.stdout.splitlines() if line.startswith("ok ")]
    assert [line.split(":")[0] for line in ok_lines] == [f"ok {inputs / f'take{i}.wav'}" for i in range(4)]
    assert "4/4 files transcribed" in ray.stdout and "(ray local)" in ray.stdout


@pytest.mark.slow
def test_a_corrupt_file_is_one_error_line_and_the_others_are_written(tmp_path, ray_cluster):
    inputs = tmp_path / "in"
    write_tones(inputs, 3, 2.0)
    (inputs / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = tmp_path / "out"
    result = amtcli([str(inputs), "--output-dir", str(out), "--model", "cnn", "--ray", "auto"], ray_cluster)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(inputs / "broken.wav") in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["take0.mid", "take1.mid", "take2.mid"]
    assert "3/4 files transcribed, 0 skipped, 1 failed" in result.stdout


def worker_pids() -> list[int]:
    """Processes of Ray workers running a file right now (their title names the method)."""
    listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines() if "ray::TranscriberWorker.run" in line]


@pytest.mark.slow
def test_a_worker_killed_mid_file_loses_nothing_and_writes_nothing_twice(tmp_path, ray_cluster):
    inputs = tmp_path / "in"
    paths = write_tones(inputs, 6, 40.0)
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_one_busy_worker() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            pids = worker_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
    killer.start()
    result = amtcli([str(inputs), "--output-dir", str(out), "-f", "mid,csv", "--model", "cnn", "--ray", "auto"],
                    ray_cluster)
    killer.join(5)
    assert killed, "no worker was busy long enough to be killed"
    assert result.returncode == 0, result.stderr
    expected = sorted(f"{p.stem}.{suffix}" for p in paths for suffix in ("mid", "csv"))
    assert sorted(p.name for p in out.iterdir()) == expected          # no .part file left behind
    ok_lines = [line for line in result.stdout.splitlines() if line.startswith("ok ")]
    assert len(ok_lines) == 6 and len(set(ok_lines)) == 6              # each file reported once
    for path in paths:
        rows = (out / f"{path.stem}.csv").read_text().splitlines()
        assert len(rows) > 45, path                          # a note every 0.75 s for 40 s: complete
        import pretty_midi

        assert len(pretty_midi.PrettyMIDI(str(out / f"{path.stem}.mid")).instruments[0].notes) == len(rows) - 1


def test_without_the_extra_ray_is_a_one_line_error(tmp_path, monkeypatch):
    inputs = tmp_path / "in"
    write_tones(inputs, 1, 1.0)
    monkeypatch.setitem(sys.modules, "ray", None)        # as if Ray were not installed
    result = CliRunner().invoke(app, ["transcribe", str(inputs), "--output-dir", str(tmp_path / "out"),
                                      "--ray", "local"])
    assert result.exit_code == 2
    assert "pip install 'amtcli[ray]'" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--ray", "cluster7"], "give local"),
    (["--ray-workers", "2"], "applies to Ray runs"),
    (["--ray", "local", "--ray-threads", "0"], "--ray-threads must be at least 1"),
])
def test_bad_ray_flags_are_refused_before_any_work(tmp_path, args, message):
    inputs = tmp_path / "in"
    write_tones(inputs, 1, 1.0)
    result = CliRunner().invoke(app, ["transcribe", str(inputs), "--output-dir", str(tmp_path / "out"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "out").exists()


class FakeCluster:
    """Stands in for the ``ray`` module where only ``cluster_resources()`` is read."""

    def __init__(self, cpus: int, gpus: int = 0):
        self.resources = {"CPU": float(cpus), **({"GPU": float(gpus)} if gpus else {})}

    def cluster_resources(self) -> dict:
        return self.resources


def test_the_default_pool_fills_the_cluster_and_asks_for_no_more_than_it_has():
    from amtcli.errors import ConfigError
    from amtcli.ray_backend import pool_size

    assert pool_size(FakeCluster(8), "cpu", 1, None) == 8
    assert pool_size(FakeCluster(8), "cpu", 3, None) == 2
    assert pool_size(FakeCluster(8, gpus=2), "cuda", 1, None) == 2
    assert pool_size(FakeCluster(8), "cpu", 2, 4) == 4
    with pytest.raises(ConfigError, match="needs 10 CPUs; the cluster has 8"):
        pool_size(FakeCluster(8), "cpu", 2, 5)
    with pytest.raises(ConfigError, match="no GPU"):
        pool_size(FakeCluster(8), "cuda", 1, None)
