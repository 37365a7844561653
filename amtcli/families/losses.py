"""Loss terms shared by the frame-aligned families."""

from __future__ import annotations

import torch


def velocity_loss(velocity_logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Squared error of sigmoid(logits) against velocity / 127, counted only at labelled
    onsets (as in Onsets-and-Frames). All tensors (batch, n_frames, 88); returns a scalar."""
    onset_mask = targets["onset"]
    error = (torch.sigmoid(velocity_logits) - targets["velocity"]).square() * onset_mask
    return error.sum() / onset_mask.sum().clamp(min=1.0)
