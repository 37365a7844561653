"""CTC family (``ctc``): CNN + BiLSTM over an HCQT, CTC over pitch tokens.

After the CTC model of the "CTC vs. Seq2Seq" study, made into a timed transcriber:

* ``slots`` token distributions per 20 ms frame (a linear layer gives slots x 90
  logits per frame), so a chord's notes can all fire inside the frame where they
  start: the study's one-token-per-frame output had to spread chords over
  neighbouring frames and under-produced on them (length ratio about 0.84);
* an auxiliary frame-activity head (88 sigmoids per frame, BCE on the frame
  targets) that tells the decoder where each note ends and, with ``frame_cue``, gives
  the token head the frame probabilities and their rise as a cue for where notes start;
* a velocity read-out, so MIDI files get dynamics.

The CTC target of a crop is its notes' pitch tokens ordered by onset, then pitch
(``decoding.ctc.onset_tokens``); crops with more than ``max_tokens`` tokens are
left out of the CTC term (the study's train-only filter).

With ``alignment_loss_weight`` > 0 a cross-entropy on one valid CTC path (each
token in a slot of its onset frame, overflow in the next free slots, blank
elsewhere: :func:`aligned_slot_targets`) is added to the CTC loss. CTC alone finds
its alignment slowly and sat near all-blank for thousands of steps here; the
labels already say where each note starts, and the auxiliary term uses that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from amtcli.decoding.ctc import BLANK, N_CTC_CLASSES, CTCLayout, onset_starts, onset_tokens
from amtcli.families.layers import FrequencyMaxPool
from amtcli.families.losses import velocity_loss
from amtcli.families.config import FamilyConfig
from amtcli.features import build_frontend, feature_shape, with_channels
from amtcli.options import FeatureSpec
from amtcli.types import N_KEYS

FAMILY = "ctc"

DEFAULT_FEATURES = FeatureSpec(kind="hcqt", n_fft=4096, n_bins=252, bins_per_octave=36, fmin_hz=27.5,
                               fmax_hz=8000.0, harmonics=(0.5, 1.0, 2.0, 3.0, 4.0))


@dataclass(frozen=True)
class CTCConfig(FamilyConfig):
    """Hyperparameters of :class:`CTCTranscriber`.

    Attributes:
        features: input spectrum (HCQT by default: 252 bins, 36 per octave, 5 harmonics).
        stem_channels: channels of the 2-D convolutions.
        model_dim: width of the projection feeding the BiLSTM.
        lstm_units: BiLSTM units per direction.
        slots: token distributions per frame.
        max_tokens: crops with more CTC tokens are left out of the CTC loss (training only).
        frame_loss_weight: weight of the auxiliary frame-activity BCE.
        frame_cue: feed the token head the (detached) frame probabilities and their rise
            from the previous frame, so it can fire where a pitch starts sounding instead
            of learning onsets from scratch (CTC alone stayed blank for 2,000 steps here).
        alignment_loss_weight: weight of the cross-entropy on the onset-frame CTC path
            (:func:`aligned_slot_targets`); 0 trains with the CTC loss alone.
    """

    features: FeatureSpec = DEFAULT_FEATURES
    stem_channels: int = 16
    model_dim: int = 192
    lstm_units: int = 96
    slots: int = 4
    max_tokens: int = 90
    frame_loss_weight: float = 1.0
    frame_cue: bool = False
    alignment_loss_weight: float = 0.0


class CTCTranscriber(nn.Module):
    """Audio (batch, n_samples) -> ``{"tokens": (batch, n_frames * slots, 90) logits,
    "frame": (batch, n_frames, 88) logits, "velocity": (batch, n_frames, 88) logits}``."""

    OUTPUT = "ctc"
    #: No per-key channels: rows are laid out by :class:`~amtcli.decoding.ctc.CTCLayout`.
    CHANNELS: tuple[str, ...] = ()

    def __init__(self, config: CTCConfig):
        super().__init__()
        self.config = config
        n_bins, channels = feature_shape(config.features)
        c = config.stem_channels
        self.layout = CTCLayout(config.slots)
        self.frontend = build_frontend(config.features)
        self.norm = nn.BatchNorm2d(channels)
        self.stem = nn.Sequential(
            nn.Conv2d(channels, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), FrequencyMaxPool(3),
            nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), FrequencyMaxPool(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(), FrequencyMaxPool(2),
        )
        self.project = nn.Sequential(nn.Linear(2 * c * (n_bins // 12), config.model_dim), nn.ReLU())
        self.lstm = nn.LSTM(config.model_dim, config.lstm_units, batch_first=True, bidirectional=True)
        width = 2 * config.lstm_units
        cue = 2 * N_KEYS if config.frame_cue else 0
        self.tokens = nn.Linear(width + cue, config.slots * N_CTC_CLASSES)
        self.frame = nn.Linear(width + config.model_dim, N_KEYS)
        self.velocity = nn.Linear(config.model_dim, N_KEYS)

    def forward(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        spec = with_channels(self.frontend(audio))
        x = self.norm(spec.permute(0, 3, 1, 2))                 # (batch, channels, n_frames, n_bins)
        x = self.stem(x).permute(0, 2, 1, 3).flatten(2)        # (batch, n_frames, 2c * n_bins // 12)
        acoustic = self.project(x)
        recurrent = self.lstm(acoustic)[0]
        batch, n_frames = recurrent.shape[:2]
        frame = self.frame(torch.cat([recurrent, acoustic], dim=-1))
        token_input = recurrent
        if self.config.frame_cue:
            probs = torch.sigmoid(frame).detach()
            rise = torch.relu(probs - torch.cat([probs[:, :1], probs[:, :-1]], dim=1))
            token_input = torch.cat([recurrent, probs, rise], dim=-1)
        tokens = self.tokens(token_input).reshape(batch, n_frames * self.config.slots, N_CTC_CLASSES)
        return {"tokens": tokens, "frame": frame, "velocity": self.velocity(acoustic)}

    @torch.no_grad()
    def posteriorgram(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio (batch, n_samples) -> rows (batch, n_frames, layout.width): token
        log-probabilities of every slot, frame probabilities, velocity / 127."""
        out = self(audio)
        batch, n_frames = out["frame"].shape[:2]
        log_probs = torch.log_softmax(out["tokens"].float(), dim=-1).reshape(batch, n_frames, -1)
        return torch.cat([log_probs, torch.sigmoid(out["frame"]), torch.sigmoid(out["velocity"])], dim=-1)


def aligned_slot_targets(onset_targets: np.ndarray, slots: int) -> np.ndarray:
    """One valid CTC path of a crop's tokens, on the slot grid.

    Args:
        onset_targets: (n_frames, 88) onset labels (> 0.5 marks a note's onset frame).
        slots: token slots per frame.

    Returns:
        (n_frames * slots,) int64 class ids: the tokens starting in a frame fill its
        slots in pitch order; a chord with more notes than slots spills into the next
        frames' free slots (order kept); every other slot is BLANK.
    """
    starts = onset_starts(onset_targets)
    n_frames = starts.shape[0]
    path = np.full(n_frames * slots, BLANK, dtype=np.int64)
    pending: list[int] = []
    for t in range(n_frames):
        pending.extend(int(k) for k in np.flatnonzero(starts[t]))
        take, pending = pending[:slots], pending[slots:]
        path[t * slots : t * slots + len(take)] = take
    return path


def ctc_loss_terms(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                   max_tokens: int, frame_loss_weight: float,
                   alignment_loss_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Per-term losses (scalars): CTC (mean over kept crops of the per-crop loss divided by
    its token count), the alignment cross-entropy (when weighted), frame BCE and velocity
    squared error at labelled onsets."""
    onset = targets["onset"].detach().cpu().numpy()
    sequences = [onset_tokens(o) for o in onset]
    keep = [i for i, s in enumerate(sequences) if len(s) <= max_tokens]
    log_probs = torch.log_softmax(outputs["tokens"].float(), dim=-1)
    if keep:
        kept = log_probs[keep].transpose(0, 1)                 # (n_slots, kept, classes)
        flat = torch.tensor([t for i in keep for t in sequences[i]], dtype=torch.long)
        lengths = torch.tensor([len(sequences[i]) for i in keep], dtype=torch.long)
        input_lengths = torch.full((len(keep),), kept.shape[0], dtype=torch.long)
        ctc = nn.functional.ctc_loss(kept, flat.to(kept.device), input_lengths, lengths, blank=BLANK,
                                     reduction="mean", zero_infinity=True)
    else:
        ctc = log_probs.sum() * 0.0
    bce = nn.functional.binary_cross_entropy_with_logits
    terms = {"ctc": ctc}
    if alignment_loss_weight > 0:
        slots = log_probs.shape[1] // onset.shape[1]
        path = torch.from_numpy(np.stack([aligned_slot_targets(o, slots) for o in onset])).to(log_probs.device)
        terms["alignment"] = alignment_loss_weight * nn.functional.nll_loss(
            log_probs.reshape(-1, log_probs.shape[-1]), path.reshape(-1))
    return {
        **terms,
        "frame": frame_loss_weight * bce(outputs["frame"], targets["frame"]),
        "velocity": velocity_loss(outputs["velocity"], targets),
    }
