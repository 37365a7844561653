"""One optimizer step: forward, loss, backward, clip, step, in that order."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class StepResult:
    """What one step did.

    Attributes:
        losses: per-head loss values.
        total: their sum.
        grad_norm: global gradient L2 norm before clipping.
        skipped: True when the loss was NaN/inf and no update was made.
    """

    losses: dict[str, float]
    total: float
    grad_norm: float
    skipped: bool


def train_step(model: nn.Module, loss_fn: Callable[[dict, dict], dict], optimizer: torch.optim.Optimizer,
               audio: torch.Tensor, targets: dict[str, torch.Tensor], clip_grad_norm: float,
               teacher_forced: bool = False, micro_batches: int = 1) -> StepResult:
    """Run one update. Gradients are clipped after ``backward`` and before ``step``.

    With ``micro_batches`` > 1 the batch is split and the parts' gradients (each loss
    scaled by its share of the batch) accumulate before the one step. Teacher-forced
    models are called as ``model(audio, targets["tokens"])``. A non-finite loss or
    gradient skips the update (gradients are discarded).
    """
    optimizer.zero_grad(set_to_none=True)
    n = audio.shape[0]
    bounds = [round(i * n / micro_batches) for i in range(micro_batches + 1)]
    parts = [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
    summed: dict[str, float] = {}
    total_value = 0.0
    for lo, hi in parts:
        part_targets = {k: v[lo:hi] for k, v in targets.items()}
        outputs = model(audio[lo:hi], part_targets["tokens"]) if teacher_forced else model(audio[lo:hi])
        losses = loss_fn(outputs, part_targets)
        share = (hi - lo) / n
        total = sum(losses.values()) * share
        total.backward()
        total_value += float(total.detach())
        for key, value in losses.items():
            summed[key] = summed.get(key, 0.0) + float(value.detach()) * share
    params = [p for p in model.parameters() if p.grad is not None]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip_grad_norm))
    finite = math.isfinite(total_value) and math.isfinite(grad_norm)
    if finite:
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    return StepResult(summed, total_value, grad_norm, not finite)
