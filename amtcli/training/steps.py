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
               audio: torch.Tensor, targets: dict[str, torch.Tensor], clip_grad_norm: float) -> StepResult:
    """Run one update. Gradients are clipped after ``backward`` and before ``step``.

    A non-finite loss or gradient skips the update (gradients are discarded).
    """
    optimizer.zero_grad(set_to_none=True)
    losses = loss_fn(model(audio), targets)
    total = sum(losses.values())
    total.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip_grad_norm))
    total_value = float(total.detach())
    finite = math.isfinite(total_value) and math.isfinite(grad_norm)
    if finite:
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    return StepResult({k: float(v.detach()) for k, v in losses.items()}, total_value, grad_norm, not finite)
