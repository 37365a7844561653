"""Loss terms shared by the frame-aligned families."""

from __future__ import annotations

import torch
from torch import nn

from amtcli.types import HARMONIC_INTERVALS

ONSET_LOSS_WEIGHT = 4.0
"""Scale of the onset BCE: with 0.3 % positive frames an unscaled onset head lagged the
frame head by more than 500 steps; scaling the term (not the positives) keeps its
probabilities calibrated."""


def onset_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``ONSET_LOSS_WEIGHT`` x the BCE of onset ``logits`` against 0/1 ``target``, both
    (batch, n_frames, 88); returns a scalar."""
    return ONSET_LOSS_WEIGHT * nn.functional.binary_cross_entropy_with_logits(logits, target)


def velocity_loss(velocity_logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Squared error of sigmoid(logits) against velocity / 127, counted only at labelled
    onsets (as in Onsets-and-Frames). All tensors (batch, n_frames, 88); returns a scalar."""
    onset_mask = targets["onset"]
    error = (torch.sigmoid(velocity_logits) - targets["velocity"]).square() * onset_mask
    return error.sum() / onset_mask.sum().clamp(min=1.0)


def harmonic_negatives(frame_target: torch.Tensor) -> torch.Tensor:
    """Where a key is silent but one of its subharmonics sounds: 1.0 at key k of a frame
    when key k is not labelled and key k - h is, for h in HARMONIC_INTERVALS (so k is a
    partial of a sounding note). (batch, n_frames, 88) in and out."""
    active = frame_target > 0.5
    mask = torch.zeros_like(active)
    for interval in HARMONIC_INTERVALS:
        mask[..., interval:] |= active[..., :-interval]
    return (mask & ~active).to(frame_target.dtype)


def frame_loss(logits: torch.Tensor, target: torch.Tensor, harmonic_weight: float = 1.0) -> torch.Tensor:
    """Binary cross-entropy of frame logits, each (batch, n_frames, 88); with
    ``harmonic_weight`` != 1 the silent keys at a sounding note's partials
    (:func:`harmonic_negatives`) weigh that much more, so hearing a partial as a note
    costs more than other false positives. Returns a scalar (mean over elements)."""
    if harmonic_weight == 1.0:
        return nn.functional.binary_cross_entropy_with_logits(logits, target)
    weight = 1.0 + (harmonic_weight - 1.0) * harmonic_negatives(target)
    return nn.functional.binary_cross_entropy_with_logits(logits, target, weight=weight)
