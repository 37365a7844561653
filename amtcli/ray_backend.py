"""Batch transcription on a Ray cluster (``amtcli transcribe --ray ADDRESS``).

The driver connects to Ray (``local``: a Ray instance started for this run on this
machine; ``auto``: the cluster this machine joined with ``ray start``; or a
``ray://HOST:PORT`` client address), starts a pool of :class:`TranscriberWorker`
actors that each load the model once, and hands them whole files, one at a time. A
worker streams its file as the local command does (flat memory) and writes the outputs
itself (temporary name, then rename) into the output folder, which every node must
see; only a small :class:`~amtcli.file_jobs.FileOutcome` comes back.

A worker that dies mid-file (a killed process, a lost node) is restarted by Ray and its
file is handed out again, up to ``MAX_ATTEMPTS`` times; the retry writes only the
outputs no earlier attempt renamed into place (:meth:`FileJob.still_to_write`), and the
temporary files of a killed attempt are removed before a target is written again.
Ray is an optional extra (``pip install 'amtcli[ray]'``); it is imported only here.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Iterator

from amtcli.errors import AmtError, ConfigError
from amtcli.file_jobs import FileJob, FileOutcome, write_job_outputs

MAX_ATTEMPTS = 3        #: tries per file before it is reported as failed (a worker died each time)
INSTALL_HINT = "pip install 'amtcli[ray]'"


@dataclass(frozen=True)
class WorkerSpec:
    """How each worker loads and runs the model.

    Attributes:
        model: registry name, ``hf://`` address or absolute checkpoint folder (resolved
            on each node).
        device: "cpu" or "cuda" (then one GPU per worker).
        threads: torch CPU threads per worker.
        overrides: decoding options that replace the checkpoint's (``DecodeOptions`` fields).
        batch_windows: windows per model call.
        read_ahead_blocks: audio blocks decoded ahead in a background thread.
    """

    model: str
    device: str = "cpu"
    threads: int = 1
    overrides: tuple[tuple[str, object], ...] = ()
    batch_windows: int = 4
    read_ahead_blocks: int = 4


def check_address(address: str) -> str:
    """``local``, ``auto`` or ``ray://HOST:PORT``; anything else is a one-line ConfigError."""
    if address in ("local", "auto") or (address.startswith("ray://") and len(address) > len("ray://")):
        return address
    raise ConfigError(f"--ray {address!r}: give local (a Ray instance on this machine), auto (the cluster this "
                      "machine joined with `ray start`) or ray://HOST:PORT")


def import_ray():
    """The ``ray`` module, or a ConfigError naming the install command."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--ray needs Ray, an optional extra: {INSTALL_HINT}") from None
    return ray


class TranscriberWorker:
    """Holds one loaded model and transcribes whole files (a Ray actor's class)."""

    def __init__(self, spec: WorkerSpec):
        import torch

        from amtcli.checkpoint import load_checkpoint
        from amtcli.registry import resolve_model

        torch.set_num_threads(spec.threads)
        name, folder = resolve_model(spec.model)
        self.model = load_checkpoint(folder, torch.device(spec.device), name=name)
        self.options = replace(self.model.decode, **dict(spec.overrides))
        self.spec = spec

    def ready(self) -> int:
        """The worker's process id, once the model is loaded."""
        return os.getpid()

    def run(self, job: FileJob, attempt: int = 0) -> FileOutcome:
        """Transcribe ``job.path`` and write its outputs; errors come back in the outcome."""
        from amtcli.audio import AudioStream
        from amtcli.batching import ReadAhead, transcribe_stream

        try:
            stream = ReadAhead(AudioStream(job.path, self.model.features.sample_rate), self.spec.read_ahead_blocks)
        except AmtError as exc:
            return FileOutcome(error=str(exc))
        try:
            warning = stream.warning
            ((_, result),) = list(transcribe_stream(self.model, [(job.index, stream)], self.options,
                                                    self.spec.batch_windows))
        finally:
            stream.close()
        return replace(write_job_outputs(result, job, retry=attempt > 0), warning=warning)


def connect(ray, address: str) -> bool:
    """``ray.init`` for ``address``; returns True when this call started the Ray instance
    (``local``), which the caller then shuts down. Connection failures are one line."""
    quiet = {"log_to_driver": False, "logging_level": "ERROR"}
    try:
        if address == "local":
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                     _node_ip_address="127.0.0.1", **quiet)
            return True
        ray.init(address=address, **quiet)
    except ConnectionError as exc:
        raise ConfigError(f"--ray {address}: cannot connect to a Ray cluster ({exc}); start one with "
                          "`ray start --head`, or use --ray local") from None
    except Exception as exc:  # Ray raises many types here (RaySystemError, RuntimeError...): one line each
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--ray {address}: {first}") from None
    return False


def pool_size(ray, device: str, threads: int, workers: int | None) -> int:
    """Workers to start: ``workers`` when given, else enough to fill the cluster (its GPUs
    for cuda, its CPUs / ``threads`` otherwise)."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if device == "cuda" and gpus < 1:
        raise ConfigError("--device cuda was asked for but the Ray cluster has no GPU; use --device cpu")
    if workers is None:
        return gpus if device == "cuda" else max(1, cpus // threads)
    if device == "cuda" and workers > gpus:
        raise ConfigError(f"--ray-workers {workers} with --device cuda needs {workers} GPUs; the cluster has {gpus}")
    if workers * threads > cpus:     # the extra workers would wait for CPUs forever
        raise ConfigError(f"--ray-workers {workers} x --ray-threads {threads} needs {workers * threads} CPUs; "
                          f"the cluster has {cpus}")
    return workers


def run_on_ray(jobs: list[FileJob], spec: WorkerSpec, address: str, workers: int | None = None,
               ) -> Iterator[tuple[int, FileOutcome]]:
    """Yield ``(job.index, outcome)`` for every job as workers finish them (any order).

    Starts the pool, checks that each worker loaded the model (a worker that cannot is
    a ConfigError naming why), and hands out files until all are done; a file whose
    worker died is handed out again (up to MAX_ATTEMPTS tries). Workers are stopped,
    and a ``local`` Ray instance shut down, when the generator ends or is closed.
    """
    if not jobs:           # everything skipped: no cluster to start
        return
    ray = import_ray()
    started = connect(ray, check_address(address))
    actors = []
    try:
        n_workers = pool_size(ray, spec.device, spec.threads, workers)
        remote = ray.remote(TranscriberWorker).options(
            num_cpus=spec.threads, num_gpus=1 if spec.device == "cuda" else 0, max_restarts=-1, max_task_retries=0)
        actors = [remote.remote(spec) for _ in range(min(n_workers, len(jobs)))]
        try:
            ray.get([actor.ready.remote() for actor in actors])
        except ray.exceptions.RayError as exc:
            raise ConfigError(f"the Ray workers could not load model {spec.model!r}: {_first_line(exc)}") from None
        yield from _dispatch(ray, actors, jobs)
    finally:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # already gone: nothing to stop
                pass
        if started:
            ray.shutdown()


def _dispatch(ray, actors: list, jobs: list[FileJob]) -> Iterator[tuple[int, FileOutcome]]:
    """Keep every live actor busy with one file until ``jobs`` are done.

    When a worker dies mid-file its file goes back to the front of the queue (one more
    attempt) and the actor is probed with ``ready()`` until Ray has restarted it, so a
    restarting actor is not handed files that would fail at once. An actor that Ray
    cannot bring back leaves the pool; with none left, the remaining files fail.
    """
    waiting: deque[tuple[FileJob, int]] = deque((job, 0) for job in jobs)
    idle = list(actors)
    running: dict = {}      # object ref -> (actor, job, attempt); job None for a readiness probe
    lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)
    while waiting or any(job is not None for _, job, _ in running.values()):
        while waiting and idle:
            actor = idle.pop()
            job, attempt = waiting.popleft()
            running[actor.run.remote(job, attempt)] = (actor, job, attempt)
        if not running:           # every actor is gone: nothing can run the rest
            for job, _ in waiting:
                yield job.index, FileOutcome(error=f"{job.path}: no Ray worker is left to transcribe it")
            return
        (ref,), _ = ray.wait(list(running), num_returns=1)
        actor, job, attempt = running.pop(ref)
        try:
            outcome = ray.get(ref)
        except lost as exc:
            if isinstance(exc, ray.exceptions.ActorDiedError) and job is None:
                continue           # Ray gave up restarting it: it leaves the pool
            if job is None:        # still restarting: probe again shortly
                time.sleep(_PROBE_PAUSE_S)
            running[actor.ready.remote()] = (actor, None, 0)
            if job is None:
                continue
            if attempt + 1 < MAX_ATTEMPTS:
                waiting.appendleft((job, attempt + 1))
                continue
            outcome = FileOutcome(error=f"{job.path}: the Ray worker transcribing it died {MAX_ATTEMPTS} times "
                                        f"({_first_line(exc)})")
        except ray.exceptions.RayTaskError as exc:   # a bug in the worker: reported, the batch goes on
            idle.append(actor)
            outcome = FileOutcome(error=f"{job.path}: {_first_line(exc)}")
        else:
            idle.append(actor)
            if job is None:        # a restarted actor answered its probe: back to work
                continue
        yield job.index, outcome


_PROBE_PAUSE_S = 0.2        #: between readiness probes of a restarting worker


def _first_line(exc: BaseException) -> str:
    """The most useful one-line description of a Ray exception (its cause when it has one)."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(cause).__name__
