"""The training loop: recipe -> run folder with checkpoints, metrics and a plot.

Run folder layout:
    last/      config.json + model.safetensors + trainer_state.pt (resume point)
    best/      config.json + model.safetensors of the best validation note-onset F1
    metrics.csv, metrics.png

Under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel
(gloo on CPU, nccl on CUDA); every rank samples different crops, rank 0 validates
and writes files.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from amtcli.atomic import atomic_path
from amtcli.checkpoint import LoadedModel, copy_weights, get_family, save_checkpoint
from amtcli.errors import ConfigError
from amtcli.options import WindowSpec
from amtcli.training.config import TrainConfig
from amtcli.training.data import CropSampler, load_recordings, split_pairs
from amtcli.training.steps import train_step

METRIC_COLUMNS = ["step", "elapsed_s", "lr", "loss", "grad_norm", "val_onset_f1", "val_offset_f1", "val_frame_f1"]


def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def validate(loaded: LoadedModel, recordings) -> dict[str, float]:
    """Mean note-onset / note-with-offset / frame F1 of ``loaded`` on ``recordings``.

    Posteriors are computed once and decoded with each candidate of
    :func:`validation_decodings`; the one with the better mean onset F1 is reported (an
    Onsets-and-Frames model's onset head learns later than its frame head, a CTC model's
    tokens stay below the blank for long, and the best checkpoint should not be chosen by
    a rule it will not be decoded with).
    """
    import numpy as np

    from amtcli.audio import Audio
    from amtcli.evaluation import evaluate_notes, mean_result
    from amtcli.batching import transcribe
    from amtcli.inference import decode_chunks, output_kind, stitched_posteriors

    if output_kind(loaded) == "tokens":
        best = mean_result([
            evaluate_notes(list(rec.notes), list(transcribe(loaded, Audio(rec.samples, loaded.features.sample_rate,
                                                                           rec.name)).notes), name=rec.name)
            for rec in recordings
        ])
        return {"val_onset_f1": best.note_onset.f1, "val_offset_f1": best.note_offset.f1,
                "val_frame_f1": best.frame.f1}
    posteriors = [
        np.concatenate(list(stitched_posteriors(loaded, Audio(rec.samples, loaded.features.sample_rate, rec.name))))
        for rec in recordings
    ]
    best = None
    for options in validation_decodings(loaded):
        mean = mean_result([
            evaluate_notes(list(rec.notes), decode_chunks(loaded, [p], options), name=rec.name)
            for rec, p in zip(recordings, posteriors)
        ])
        if best is None or mean.note_onset.f1 > best.note_onset.f1:
            best = mean
    return {"val_onset_f1": best.note_onset.f1, "val_offset_f1": best.note_offset.f1, "val_frame_f1": best.frame.f1}


def validation_decodings(loaded: LoadedModel) -> list:
    """Decoding options tried at validation: both note-start rules for a model with an
    onset head, blank offsets 0-3 for a CTC model (tuned after training with
    ``benchmarks/tune_decoding.py``), the defaults otherwise."""
    from amtcli.inference import output_kind
    from amtcli.options import DecodeOptions

    if output_kind(loaded) == "ctc":
        return [DecodeOptions(note_start="frame", blank_offset=b) for b in (0.0, 1.0, 2.0, 3.0)]
    if "onset" in loaded.module.CHANNELS:
        return [DecodeOptions(note_start="onset"), DecodeOptions(note_start="frame")]
    return [DecodeOptions(note_start="frame")]


def _write_metrics(path: Path, rows: list[dict]) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


def _read_metrics(path: Path, up_to_step: int) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= up_to_step]


def _plot_metrics(path: Path, rows: list[dict]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4))
    FigureCanvasAgg(fig)
    ax_loss = fig.add_subplot(1, 2, 1)
    ax_f1 = fig.add_subplot(1, 2, 2)
    steps = [int(r["step"]) for r in rows]
    ax_loss.plot(steps, [float(r["loss"]) for r in rows])
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    val = [r for r in rows if r.get("val_onset_f1") not in (None, "")]
    for key, label in (("val_onset_f1", "note onset"), ("val_offset_f1", "note w/ offset"), ("val_frame_f1", "frame")):
        ax_f1.plot([int(r["step"]) for r in val], [float(r[key]) for r in val], marker="o", label=label)
    ax_f1.set_xlabel("step")
    ax_f1.set_ylabel("validation F1")
    ax_f1.set_ylim(0, 1)
    ax_f1.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _save_state(run_dir: Path, config: TrainConfig, module, optimizer, scheduler, step: int, best_f1: float,
                rng: np.random.Generator, evals_since_best: int = 0) -> None:
    """Write the resume point ``last/`` as one unit: weights, config and trainer state go
    into a new folder, which then replaces ``last/`` by renames (the previous one is kept
    as ``.last.old`` until the new one is in place), so a kill at any moment leaves one
    whole resume point (see :func:`_resume_point`)."""
    import shutil

    last, previous = run_dir / "last", run_dir / ".last.old"
    fresh = run_dir / f".last.{os.getpid()}.part"
    shutil.rmtree(fresh, ignore_errors=True)
    save_checkpoint(fresh, config.family, config.model, module, extra=_checkpoint_extra(config, step=step))
    state = {
        "step": step,
        "best_f1": best_f1,
        "evals_since_best": evals_since_best,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": rng.bit_generator.state,
    }
    with atomic_path(fresh / "trainer_state.pt", overwrite=True) as tmp:
        torch.save(state, tmp)
    if last.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.rename(last, previous)
    os.rename(fresh, last)
    shutil.rmtree(previous, ignore_errors=True)


def _resume_point(run_dir: Path) -> Path | None:
    """The folder to resume from: ``last/``, or ``.last.old`` when a kill fell between
    the two renames of :func:`_save_state` (it is moved back to ``last/``); None when
    the run has none. Unfinished ``.last.*.part`` folders are removed."""
    import shutil

    for stale in run_dir.glob(".last.*.part"):
        shutil.rmtree(stale, ignore_errors=True)
    last, previous = run_dir / "last", run_dir / ".last.old"
    if not last.exists() and (previous / "trainer_state.pt").exists():
        os.rename(previous, last)
    return last if (last / "trainer_state.pt").exists() else None


def _checkpoint_extra(config: TrainConfig, **values) -> dict:
    """config.json entries besides the model config: step, scores, the recipe's windowing."""
    return {**values, **({"windowing": dict(config.windowing)} if config.windowing else {})}


def _datasets(config: TrainConfig, features, rank: int, rng: np.random.Generator, note_targets=None):
    """(crop sampler over the train split, validation recordings; empty except on rank 0)."""
    if not config.data.dataset:
        raise ConfigError("the recipe names no dataset: set [data] dataset or pass --dataset")
    dataset = Path(config.data.dataset)
    crop_frames = int(round(config.data.crop_s * features.frame_rate_hz))
    train_recordings = load_recordings(split_pairs(dataset, config.data.train_split), features)
    val_recordings = []
    if rank == 0:
        pairs = split_pairs(dataset, config.data.validation_split)[: config.data.validation_files]
        val_recordings = load_recordings(pairs, features, config.data.validation_max_s)
    augment_config = config.augment if config.data.augment else None
    sampler = CropSampler(train_recordings, features, crop_frames, rng, augment_config, config.data.reattack_gap_frames,
                          note_targets)
    return sampler, val_recordings


def _from_rank_zero(score: float, stop: bool, world: int) -> tuple[float, bool]:
    """Rank 0's validation score and stop decision, on every rank (so learning rates
    and early stopping stay in step under torchrun)."""
    if world <= 1 or not dist.is_initialized():
        return score, stop
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    payload = torch.tensor([score, float(stop)], dtype=torch.float64, device=device)
    dist.broadcast(payload, src=0)
    return float(payload[0]), bool(payload[1] > 0.5)


def _scheduler(config: TrainConfig, optimizer):
    """StepLR (stepped every optimizer step) or ReduceLROnPlateau (stepped with each validation F1)."""
    if config.optim.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=config.optim.lr_decay_rate, patience=config.optim.plateau_patience)
    return torch.optim.lr_scheduler.StepLR(optimizer, config.optim.lr_decay_every, config.optim.lr_decay_rate)


def _restore(last: Path, module, optimizer, scheduler, rng: np.random.Generator) -> tuple[int, float, int]:
    """Load the resume point in ``last``; returns (step, best validation onset F1,
    evaluations since that best)."""
    import json

    from safetensors.torch import load_file

    try:
        module.load_state_dict(load_file(str(last / "model.safetensors")), strict=True)
        state = torch.load(last / "trainer_state.pt", weights_only=True)
        weights_step = json.loads((last / "config.json").read_text(encoding="utf-8")).get("step")
        if weights_step is not None and int(weights_step) != int(state["step"]):
            raise ValueError(f"weights of step {weights_step}, trainer state of step {state['step']}")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = state["numpy_rng"]
        return int(state["step"]), float(state["best_f1"]), int(state.get("evals_since_best", 0))
    except Exception as exc:  # any damage: one line, and how to go on
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ConfigError(f"{last} is damaged and cannot be resumed ({reason}); "
                          "pass --no-resume to start over") from None


def _write_run_recipe(run_dir: Path, config: TrainConfig, world: int) -> None:
    import json

    payload = {"family": config.family, "name": config.name, "model": config.model,
               "windowing": config.windowing, "seed": config.seed,
               "data": asdict(config.data), "optim": asdict(config.optim), "schedule": asdict(config.schedule),
               "init": [asdict(init) for init in config.init], "augment": asdict(config.augment),
               "world_size": world}
    with atomic_path(run_dir / "recipe.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _progress(console):
    """A rich progress bar with loss and throughput (hidden when not on a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]} steps/s"), TimeRemainingColumn(),
        console=console, disable=not console.is_terminal, transient=True,
    )


def train(config: TrainConfig, run_dir: Path, resume: bool = True, console=None) -> Path:
    """Train ``config`` into ``run_dir``; returns the folder of the best checkpoint."""
    from rich.console import Console

    console = console or Console()
    rank, world, device = _setup_distributed()
    torch.set_num_threads(config.schedule.threads)
    torch.manual_seed(config.seed)
    family = get_family(config.family)
    module = family.build(config.model)
    for init in config.init:
        copy_weights(module, init.checkpoint, init.modules)
    features = family.features(config.model)
    windowing = {k: float(v) for k, v in config.windowing.items() if k in ("window_s", "hop_s")}
    WindowSpec.from_seconds(features, **windowing)  # a bad [windowing] fails here, not at the first validation
    loss_fn = family.loss(config.model)
    rng = np.random.default_rng([config.seed, rank])
    note_targets = family.note_targets(config.model) if family.note_targets else None
    sampler, val_recordings = _datasets(config, features, rank, rng, note_targets)

    frozen = tuple(prefix for init in config.init for prefix in init.frozen_prefixes())
    for name, param in module.named_parameters():
        if _under(name, frozen):
            param.requires_grad_(False)
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    scheduler = _scheduler(config, optimizer)
    run_dir.mkdir(parents=True, exist_ok=True)
    plateau = config.optim.lr_schedule == "plateau"
    start_step, best_f1, evals_since_best = 0, -1.0, 0
    point = _resume_point(run_dir) if resume else None
    if point is not None:
        start_step, best_f1, evals_since_best = _restore(point, module, optimizer, scheduler, rng)
        if rank == 0:
            console.log(f"resumed from step {start_step} (best validation onset F1 {best_f1:.3f})")
    rows = _read_metrics(run_dir / "metrics.csv", start_step) if rank == 0 else []
    if rank == 0:
        _write_run_recipe(run_dir, config, world)

    _train_mode(module.to(device), frozen)
    model = module
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    started = time.monotonic()
    elapsed_before = float(rows[-1]["elapsed_s"]) if rows else 0.0
    window_losses: list[float] = []
    window_norms: list[float] = []
    with _progress(console) as progress:
        task = progress.add_task("train", total=config.optim.steps, completed=start_step, loss="-", speed="-")
        for step in range(start_step, config.optim.steps):
            audio, targets = sampler.batch(config.data.batch_size)
            audio_t = torch.from_numpy(audio).to(device)
            targets_t = {k: torch.from_numpy(v).to(device) for k, v in targets.items()}
            result = train_step(model, loss_fn, optimizer, audio_t, targets_t, config.optim.clip_grad_norm,
                                teacher_forced=family.teacher_forced, micro_batches=config.optim.micro_batches)
            if not plateau:
                scheduler.step()
            if not result.skipped:
                window_losses.append(result.total)
                window_norms.append(result.grad_norm)
            done = step + 1
            is_eval = done % config.schedule.eval_every == 0 or done == config.optim.steps
            row: dict = {}
            if rank == 0:
                elapsed = elapsed_before + time.monotonic() - started
                speed = (done - start_step) / max(elapsed - elapsed_before, 1e-9)
                progress.update(task, completed=done, loss=f"{result.total:.4f}", speed=f"{speed:.2f}")
                if done % config.schedule.log_every == 0 or is_eval:
                    row = {
                        "step": done,
                        "elapsed_s": f"{elapsed:.1f}",
                        "lr": f"{optimizer.param_groups[0]['lr']:.3g}",
                        "loss": f"{np.mean(window_losses) if window_losses else float('nan'):.5f}",
                        "grad_norm": f"{np.mean(window_norms) if window_norms else float('nan'):.4f}",
                    }
                    window_losses, window_norms = [], []
            stop = False
            if is_eval:
                score = -1.0
                if rank == 0:
                    module.eval()
                    scores = validate(LoadedModel(config.name, config.family, module, features, config.model, device,
                                                  **windowing), val_recordings)
                    _train_mode(module, frozen)
                    row.update({k: f"{v:.4f}" for k, v in scores.items()})
                    score = scores["val_onset_f1"]
                    if score > best_f1:
                        best_f1, evals_since_best = score, 0
                        save_checkpoint(run_dir / "best", config.family, config.model, module,
                                        extra=_checkpoint_extra(config, step=done, validation=scores))
                    elif best_f1 > 0:
                        evals_since_best += 1   # a model that has not found any note yet has no plateau
                    patience = config.schedule.early_stop_patience
                    stop = bool(patience and evals_since_best >= patience and done >= config.schedule.min_steps)
                score, stop = _from_rank_zero(score, stop, world)
                if plateau and score > 0:
                    scheduler.step(score)
                if rank == 0:
                    _save_state(run_dir, config, module, optimizer, scheduler, done, best_f1, rng, evals_since_best)
            if rank == 0 and row:
                rows.append(row)
                console.log(
                    f"step {done}/{config.optim.steps} loss {row['loss']} {speed:.2f} steps/s"
                    + (f" val onset F1 {row['val_onset_f1']} (best {best_f1:.4f})" if is_eval else "")
                )
                if is_eval:
                    _write_metrics(run_dir / "metrics.csv", rows)
                    _plot_metrics(run_dir / "metrics.png", rows)
            if stop:
                if rank == 0:
                    console.log(f"early stop at step {done}: no better validation onset F1 in "
                                f"{config.schedule.early_stop_patience} evaluations (best {best_f1:.4f})")
                break
    if dist.is_initialized():
        _check_ranks_agree(module, run_dir, rank, world)
        dist.barrier()
        dist.destroy_process_group()
    return run_dir / "best"


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _train_mode(module: torch.nn.Module, frozen: tuple[str, ...]) -> None:
    """Training mode, except the frozen sub-modules (their batch norms keep their statistics)."""
    module.train()
    for name, sub in module.named_modules():
        if name and _under(name, frozen):
            sub.eval()


def parameter_digest(module: torch.nn.Module) -> float:
    """A float that changes with any parameter (sum of |w| weighted by position)."""
    total = 0.0
    for i, param in enumerate(module.parameters()):
        total += float(param.detach().double().abs().sum()) * (i + 1)
    return total


def _check_ranks_agree(module: torch.nn.Module, run_dir: Path, rank: int, world: int) -> None:
    """Gather every rank's parameter digest; rank 0 records them in ``ranks.json``.

    Raises RuntimeError if the replicas diverged (DistributedDataParallel must keep
    them identical).
    """
    import json

    digest = torch.tensor([parameter_digest(module)], dtype=torch.float64)
    gathered = [torch.zeros_like(digest) for _ in range(world)]
    dist.all_gather(gathered, digest)
    values = [float(g) for g in gathered]
    if rank == 0:
        (run_dir / "ranks.json").write_text(json.dumps({"world_size": world, "digests": values}) + "\n")
    if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
        raise RuntimeError(f"replicas diverged across ranks: {values}")
