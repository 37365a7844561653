"""Seq2seq family (``seq2seq``): CNN + BiLSTM encoder, attention LSTM decoder over
note-event tokens (:mod:`amtcli.decoding.tokens`).

After the Seq2Seq model of the "CTC vs. Seq2Seq" study:

* encoder: the conv stack of ``onf`` over a 128-bin log-mel, then a BiLSTM; every
  window comes with its length in frames and a padding mask;
* decoder: an LSTM cell with additive (Bahdanau) attention and input feeding: the
  input at step t is [emb(y_{t-1}); c_{t-1}], logits come from [h_t; c_t];
  attention energies are computed in float32 and padded frames are filled with -1e4
  before the softmax. Optionally the energies also see a convolution of the previous
  step's attention weights (location-sensitive attention, Chorowski et al. 2015:
  ``location_kernel``) and the memory carries sinusoidal features of each position's
  time (``position_dim``), so a context vector says *when* it looked. With
  ``attention_window_s`` the attention is restricted to a window that starts at the
  decoder's current time (the sum of the TIME_SHIFTs it has read so far, so it is the
  same under teacher forcing and when decoding) and learned embeddings of each
  position's offset from that time enter the energies and the context: the context
  says how far ahead the next event is, which is what a TIME_SHIFT needs;
* loss: cross-entropy with per-class weights (NOTE_ON, NOTE_OFF, TIME_SHIFT, EOS
  differ in frequency by an order of magnitude), teacher forcing; optional guided
  attention and frame / onset activity losses on the encoder;
* decoding: greedy or beam search, stopping at EOS, at ``max_decode_tokens``, when
  the output starts looping or (with a window) when time passes the window's end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from amtcli.decoding.tokens import (EOS, MAX_SHIFT_STEPS, NOTE_OFF_BASE, NOTE_ON_BASE, PAD, SHIFT_BASE, SOS,
                                    TIME_STEP_S, VOCAB_SIZE, confirm_note_ons, encode_window,
                                    end_notes_by_activity)
from amtcli.errors import ConfigError
from amtcli.families.onsets_frames import build_acoustic, run_acoustic
from amtcli.families.config import FamilyConfig
from amtcli.features import build_frontend, feature_shape
from amtcli.options import FeatureSpec
from amtcli.types import N_KEYS

FAMILY = "seq2seq"
MASKED_ENERGY = -1e4


@dataclass(frozen=True)
class Seq2SeqConfig(FamilyConfig):
    """Hyperparameters of :class:`Seq2SeqTranscriber`.

    Attributes:
        features: input spectrum (128-bin log-mel).
        conv_channels, model_dim: encoder conv stack (as ``onf``).
        acoustic, stem_channels, blocks, dilations: the encoder's CNN, "conv" or
            "dilated" (the ``cnn`` family's trunk), as in ``onf``.
        encoder_units: BiLSTM units per direction.
        memory_stride: frames averaged into one attention position (2: 25 per second).
        decoder_units: decoder LSTM units; also the attention size.
        embedding_dim: token embedding size.
        max_target_tokens: training sequences are cut to this many tokens (EOS kept).
        max_decode_tokens: length cap when decoding one 10 s window.
        weight_on, weight_off, weight_shift, weight_eos: cross-entropy class weights.
        guided_attention_weight: weight of the guided-attention loss
            (:func:`guided_attention_loss`); 0 leaves the attention unsupervised.
        guided_attention_sigma: its tolerance in attention positions (one position is
            ``memory_stride`` frames).
        location_kernel: width (positions) of the convolution over the previous attention
            weights in the energies; 0 turns location-sensitive attention off.
        location_channels: its output channels.
        position_dim: sinusoidal time features appended to every memory position (0: none).
        frame_loss_weight: weight of an auxiliary frame-activity BCE on the encoder (a
            linear 88-key read-out per memory position); 0: no frame head.
        onset_loss_weight: the same for onsets (a second read-out); 0: no onset head.
        attention_window_s: attention only sees positions from ``attention_back``
            positions before the current time to this many seconds after it (at least
            the longest TIME_SHIFT, 1 s); 0: the whole window.
        attention_back: positions before the current time inside the window.
        relative_dim: size of the learned offset-from-now embeddings (0: none; needs a
            window).
        shift_sigma_steps: TIME_SHIFT targets spread over neighbouring shifts with this
            standard deviation in 10 ms steps (0: one-hot).
        target_snap_s: training targets merge onsets (and offsets) this close into one
            instant (``encode_window``'s ``snap_s``; 0: exact times).
        frame_readout: a linear per-frame read-out of the CNN's features gives 88 key
            probabilities (the ``cnn`` family's frame output, copyable from a ``cnn``
            checkpoint with ``[init]``); they feed the BiLSTM with the CNN's features, are
            appended to every memory position (so attention and the token read-out see
            which keys sound) and are the frame activity of the decoding rules, in place of
            the auxiliary frame head.
        frame_detector: a separate frame-wise CNN over the same spectrum (the ``cnn``
            family's input normalisation, trunk and frame read-out: ``detector_norm`` and
            ``detector``, copyable from a ``cnn`` checkpoint with ``[init]`` and frozen)
            gives the frame activity of the decoding rules, in place of the auxiliary frame
            head. It takes no part in training: it is built after every other module (so
            their initialisation does not change) and is outside the teacher-forced pass.
        detector_stem_channels, detector_model_dim, detector_blocks, detector_dilations:
            its sizes (as the ``cnn`` family's).
    """

    features: FeatureSpec = FeatureSpec(n_bins=128)
    conv_channels: int = 16
    model_dim: int = 192
    acoustic: str = "conv"
    stem_channels: int = 16
    blocks: int = 4
    dilations: tuple[int, ...] = (1, 2, 4)
    encoder_units: int = 96
    memory_stride: int = 2
    decoder_units: int = 128
    embedding_dim: int = 64
    max_target_tokens: int = 400
    max_decode_tokens: int = 1000
    weight_on: float = 2.0
    weight_off: float = 1.0
    weight_shift: float = 0.5
    weight_eos: float = 2.0
    guided_attention_weight: float = 0.0
    guided_attention_sigma: float = 3.0
    location_kernel: int = 0
    location_channels: int = 8
    position_dim: int = 0
    frame_loss_weight: float = 0.0
    onset_loss_weight: float = 0.0
    attention_window_s: float = 0.0
    attention_back: int = 2
    relative_dim: int = 0
    shift_sigma_steps: float = 0.0
    target_snap_s: float = 0.0
    frame_readout: bool = False
    frame_detector: bool = False
    detector_stem_channels: int = 16
    detector_model_dim: int = 128
    detector_blocks: int = 4
    detector_dilations: tuple[int, ...] = (1, 2, 4)

    @property
    def positions_per_step(self) -> float:
        """Attention positions per 10 ms time step."""
        return self.features.frame_rate_hz * TIME_STEP_S / self.memory_stride

    @property
    def window_ahead(self) -> int:
        """Positions after the current time that the attention window covers."""
        return int(round(self.attention_window_s * self.features.frame_rate_hz / self.memory_stride))

    def class_weights(self) -> torch.Tensor:
        """(VOCAB_SIZE,) cross-entropy weights; PAD and SOS weigh 0."""
        weights = torch.zeros(VOCAB_SIZE)
        weights[:NOTE_OFF_BASE] = self.weight_on
        weights[NOTE_OFF_BASE:SHIFT_BASE] = self.weight_off
        weights[SHIFT_BASE:EOS] = self.weight_shift
        weights[EOS] = self.weight_eos
        return weights


class Fusion(NamedTuple):
    """Shallow fusion of a frame activity into decoding (see :func:`attack_evidence`).

    Attributes:
        activity: (batch, n_positions, 88) probability that each key sounds, one row per
            decoded sequence.
        weight: added to the NOTE_ON logits per unit of attack evidence.
        before_s, after_s: the evidence's peak is taken from this many seconds before to
            this many after the decoder's current time.
    """

    activity: torch.Tensor
    weight: float
    before_s: float
    after_s: float


class Seq2SeqTranscriber(nn.Module):
    """Audio windows -> note-event tokens.

    ``forward(audio, tokens)`` is the teacher-forced pass used in training: audio
    (batch, n_samples), target tokens (batch, n_tokens) ending in EOS and padded with
    PAD; returns ``{"logits": (batch, n_tokens, VOCAB_SIZE), "tokens": targets}``.
    """

    OUTPUT = "tokens"
    CHANNELS: tuple[str, ...] = ()

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        spec = config.features
        self.frontend = build_frontend(spec)
        self.norm, self.acoustic = build_acoustic(config)
        readout = N_KEYS if config.frame_readout else 0
        if config.frame_readout:
            self.frame_readout = nn.Conv1d(config.model_dim, N_KEYS, 1)
        self.encoder = nn.LSTM(config.model_dim + readout, config.encoder_units, batch_first=True,
                               bidirectional=True)
        if config.relative_dim and not config.attention_window_s:
            raise ValueError("relative_dim needs attention_window_s > 0")
        memory = 2 * config.encoder_units + readout + config.position_dim
        context = memory + config.relative_dim
        units = config.decoder_units
        self.embed = nn.Embedding(VOCAB_SIZE, config.embedding_dim, padding_idx=PAD)
        self.cell = nn.LSTMCell(config.embedding_dim + context, units)
        self.attn_memory = nn.Linear(memory, units, bias=False)
        self.attn_query = nn.Linear(units, units)
        self.attn_v = nn.Linear(units, 1, bias=False)
        if config.location_kernel:
            self.attn_location_conv = nn.Conv1d(1, config.location_channels, config.location_kernel,
                                                padding=config.location_kernel // 2, bias=False)
            self.attn_location = nn.Linear(config.location_channels, units, bias=False)
        if config.relative_dim:
            self.relative = nn.Embedding(config.attention_back + config.window_ahead + 1, config.relative_dim)
            self.attn_relative = nn.Linear(config.relative_dim, units, bias=False)
        self.out = nn.Sequential(nn.Linear(units + context, units), nn.Tanh(), nn.Linear(units, VOCAB_SIZE))
        if config.frame_loss_weight > 0:
            self.frame_head = nn.Linear(2 * config.encoder_units, N_KEYS)
        if config.onset_loss_weight > 0:
            self.onset_head = nn.Linear(2 * config.encoder_units, N_KEYS)
        self.register_buffer("class_weights", config.class_weights(), persistent=False)
        if config.frame_detector:                      # last: the modules above initialise as without it
            from amtcli.families.framewise_cnn import FramewiseCNNConfig, Transcriber

            n_bins, channels = feature_shape(spec)
            self.detector_norm = nn.BatchNorm2d(channels)
            self.detector = Transcriber(n_bins, channels, FramewiseCNNConfig(
                features=spec, stem_channels=config.detector_stem_channels, model_dim=config.detector_model_dim,
                blocks=config.detector_blocks, dilations=config.detector_dilations))

    # --- encoder -------------------------------------------------------------------------
    def encode(self, audio: torch.Tensor, lengths: torch.Tensor | None = None,
               spectrum: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio (batch, n_samples) -> memory (batch, n_positions, memory dim) and mask
        (batch, n_positions), True on real positions. The memory is the BiLSTM output
        (2 * encoder_units), then with ``frame_readout`` the 88 key probabilities, then
        ``position_dim`` time features. A position averages ``memory_stride`` frames;
        ``lengths`` are in frames (all frames by default). ``spectrum``: ``frontend(audio)``
        when the caller already has it."""
        stride = self.config.memory_stride
        spectrum = self.frontend(audio) if spectrum is None else spectrum
        acoustic = run_acoustic(self.config.acoustic, self.norm, self.acoustic, spectrum)
        n_frames = acoustic.shape[1]
        if self.config.frame_readout:
            keys = torch.sigmoid(self.frame_readout(acoustic.transpose(1, 2)).transpose(1, 2))
            acoustic = torch.cat([acoustic, keys.to(acoustic.dtype)], dim=-1)
        if stride > 1:
            acoustic = nn.functional.avg_pool1d(acoustic.transpose(1, 2), stride, stride, ceil_mode=True).transpose(1, 2)
        memory = self.encoder(acoustic)[0]
        if self.config.frame_readout:
            memory = torch.cat([memory, acoustic[..., -N_KEYS:]], dim=-1)
        n_positions = memory.shape[1]
        if self.config.position_dim:
            seconds = torch.arange(n_positions, device=memory.device, dtype=torch.float32) * (
                stride / self.config.features.frame_rate_hz)
            memory = torch.cat([memory, position_features(seconds, self.config.position_dim)
                                .to(memory.dtype)[None].expand(memory.shape[0], -1, -1)], dim=-1)
        if lengths is None:
            lengths = torch.full((memory.shape[0],), n_frames, device=memory.device)
        positions = (lengths + stride - 1) // stride
        mask = torch.arange(n_positions, device=memory.device)[None, :] < positions[:, None]
        return memory, mask

    # --- decoder -------------------------------------------------------------------------
    def _attend(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor,
                mask: torch.Tensor, previous: torch.Tensor, now: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bahdanau attention: (batch, units) query, the previous step's weights
        (batch, n_positions) and the current time ``now`` (batch,) in 10 ms steps ->
        context (batch, memory [+ relative_dim]) and weights (batch, n_positions)."""
        config = self.config
        if config.attention_window_s and not config.location_kernel:
            return self._attend_window(query, keys, memory, mask, now)
        hidden = keys.float() + self.attn_query(query).float()[:, None, :]
        if config.location_kernel:
            location = self.attn_location_conv(previous.float()[:, None, :]).transpose(1, 2)
            hidden = hidden + self.attn_location(location[:, : keys.shape[1]]).float()
        allowed = mask
        offsets = None
        if config.attention_window_s:
            grid = torch.arange(keys.shape[1], device=keys.device, dtype=torch.float32)
            relative = grid[None, :] - torch.floor(now.float() * config.positions_per_step)[:, None]
            allowed = mask & (relative >= -config.attention_back) & (relative <= config.window_ahead)
            offsets = (relative.clamp(-config.attention_back, config.window_ahead) + config.attention_back).long()
            if config.relative_dim:
                table = self.attn_relative(self.relative.weight).float()          # (n_offsets, units)
                hidden = hidden + table[offsets]
        energy = self.attn_v(torch.tanh(hidden)).squeeze(-1)
        energy = energy.masked_fill(~allowed, MASKED_ENERGY)
        weights = torch.softmax(energy, dim=-1)
        context = torch.bmm(weights[:, None, :].to(memory.dtype), memory).squeeze(1)
        if config.relative_dim:
            relative_context = torch.bmm(weights[:, None, :].to(memory.dtype),
                                         self.relative.weight.to(memory.dtype)[offsets]).squeeze(1)
            context = torch.cat([context, relative_context], dim=-1)
        return context, weights

    def _attend_window(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor,
                       now: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_attend` for a windowed attention without location features, computed on
        the window's positions only (``attention_back`` before the current time to
        ``window_ahead`` after it) instead of the whole memory: the same context, since
        positions outside the window get weight exactly 0 either way (their energies are
        -1e4), for about a quarter of the work on 5 s windows. Weights are returned as
        (batch, n_positions), zero outside the window. The one difference: when no
        position in the window is allowed (the current time past the mask's end, which
        decoding never reaches) the full formula spreads the weights over every position
        and this one over the window."""
        config = self.config
        batch, n_positions, units = keys.shape
        span = config.attention_back + config.window_ahead + 1
        offsets = torch.arange(span, device=keys.device)
        start = torch.floor(now.float() * config.positions_per_step).long() - config.attention_back
        positions = start[:, None] + offsets[None, :]                                   # (batch, span)
        inside = (positions >= 0) & (positions < n_positions)
        index = positions.clamp(0, n_positions - 1)
        allowed = inside & mask.gather(1, index)
        hidden = keys.gather(1, index[:, :, None].expand(-1, -1, units)).float() + \
            self.attn_query(query).float()[:, None, :]
        if config.relative_dim:
            hidden = hidden + self.attn_relative(self.relative.weight).float()[None]       # offsets 0 .. span - 1
        energy = self.attn_v(torch.tanh(hidden)).squeeze(-1).masked_fill(~allowed, MASKED_ENERGY)
        local = torch.softmax(energy, dim=-1) * inside                                  # clamped duplicates: 0
        window = memory.gather(1, index[:, :, None].expand(-1, -1, memory.shape[-1]))
        context = torch.bmm(local[:, None, :].to(memory.dtype), window).squeeze(1)
        if config.relative_dim:
            context = torch.cat([context, local.to(memory.dtype) @ self.relative.weight.to(memory.dtype)], dim=-1)
        weights = torch.zeros(batch, n_positions, dtype=local.dtype, device=local.device)
        return context, weights.scatter_add_(1, index, local)

    def _start(self, memory: torch.Tensor):
        """Initial decoder state and context. The state is (h, c, previous attention
        weights: all on position 0, current time in 10 ms steps: 0, and the three
        :class:`TokenGrammar` tensors of an empty window)."""
        batch = memory.shape[0]
        zeros = memory.new_zeros(batch, self.config.decoder_units)
        weights = memory.new_zeros(batch, memory.shape[1])
        weights[:, 0] = 1.0
        now = memory.new_zeros(batch)
        return ((zeros, zeros.clone(), weights, now, *TokenGrammar.start(batch, memory.device)),
                memory.new_zeros(batch, memory.shape[-1] + self.config.relative_dim))

    def _step(self, previous: torch.Tensor, state, context, keys, memory, mask, constrain: bool = False,
              fusion: Fusion | None = None):
        """One decoder step with input feeding; ``previous`` is the token read at this
        step (a TIME_SHIFT moves the current time, NOTE_ON / NOTE_OFF open and close
        pitches). With ``constrain`` the :class:`TokenGrammar` state follows the tokens and
        the logits of the tokens it forbids are set to -1e9; without it and without
        ``fusion`` (teacher forcing, unconstrained decoding) that state is passed on
        untouched. ``fusion`` adds its weight x :func:`attack_evidence` at the current
        time to the NOTE_ON logits (shallow fusion with the frame detector). Returns
        (logits, state, context, weights)."""
        now = state[3] + shift_steps(previous).to(state[3].dtype)
        tracked = constrain or fusion is not None
        grammar = TokenGrammar.update(*state[4:7], previous, now) if tracked else state[4:7]
        h, c = self.cell(torch.cat([self.embed(previous), context], dim=-1), state[:2])
        context, weights = self._attend(h, keys, memory, mask, state[2], now)
        logits = self.out(torch.cat([h, context], dim=-1))
        if fusion is not None:
            evidence = attack_evidence(fusion.activity, now, grammar[0], self.config.positions_per_step,
                                       before_s=fusion.before_s, after_s=fusion.after_s)
            bias = torch.zeros_like(logits)
            bias[:, NOTE_ON_BASE: NOTE_ON_BASE + N_KEYS] = fusion.weight * evidence.to(logits.dtype)
            logits = logits + bias
        if constrain:
            logits = logits.masked_fill(~TokenGrammar.allowed(*grammar, now), -1e9)
        return logits, (h, c, weights.to(memory.dtype), now, *grammar), context, weights

    def forward(self, audio: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        n_tokens = int((tokens != PAD).sum(dim=1).max()) if tokens.numel() else 0
        tokens = tokens[:, : max(n_tokens, 1)]
        memory, mask = self.encode(audio)
        keys = self.attn_memory(memory)
        state, context = self._start(memory)
        extra = {}
        encoded = memory[..., : 2 * self.config.encoder_units]
        if self.config.frame_loss_weight > 0:
            extra["frame"] = self.frame_head(encoded)
        if self.config.onset_loss_weight > 0:
            extra["onset"] = self.onset_head(encoded)
        previous = torch.full((tokens.shape[0],), SOS, dtype=torch.long, device=tokens.device)
        logits, attention = [], []
        for t in range(tokens.shape[1]):
            step_logits, state, context, weights = self._step(previous, state, context, keys, memory, mask)
            logits.append(step_logits)
            attention.append(weights)
            previous = tokens[:, t]
        return {"logits": torch.stack(logits, dim=1), "tokens": tokens, "attention": torch.stack(attention, dim=1),
                **extra}

    #: Stop reasons, coded in the last column of :meth:`decode_windows`.
    STOP_CODES = ("eos", "length", "loop", "end")

    @torch.no_grad()
    def decode_windows(self, audio: torch.Tensor, beam_width: int = 1, grammar: bool = True,
                       confirm_threshold: float = 0.0, end_threshold: float = 0.0,
                       onset_confirm_threshold: float = 0.0, rise_threshold: float = 0.0, reattack_s: float = 0.0,
                       fusion_weight: float = 0.0, fusion_window_s: tuple[float, float] = (0.02, 0.0)
                       ) -> np.ndarray:
        """Audio windows (batch, n_samples) -> (batch, width + 2) int64: each window's
        tokens padded with PAD to ``width`` (``max_decode_tokens``, or more where
        ``end_threshold`` added NOTE_OFFs), then the number of NOTE_ONs dropped as
        unconfirmed, then its stop reason as an index of STOP_CODES.

        ``grammar``: constrain the tokens with :class:`TokenGrammar`. ``confirm_threshold``
        > 0: drop each NOTE_ON whose key the encoder's frame-activity head does not reach
        that probability for within 40 ms before to 60 ms after it;
        ``onset_confirm_threshold`` > 0: the same test on the encoder's onset-activity
        head; ``rise_threshold`` > 0: a NOTE_ON's key must also have risen by that much in
        the frame activity; ``reattack_s`` > 0: a NOTE_ON that soon after its key's last kept
        one is dropped (:func:`~amtcli.decoding.tokens.confirm_note_ons`). The frame
        activity is :meth:`key_activity`. ``end_threshold`` > 0: end
        each note where the frame-activity head's activity for its key falls below it, if
        that comes before its NOTE_OFF (:func:`~amtcli.decoding.tokens.end_notes_by_activity`).
        ``fusion_weight`` > 0: while decoding, add that weight x :func:`attack_evidence` of
        the frame activity to the NOTE_ON logits (the decoder is pushed toward keys that
        start sounding at its current time; the rules above still apply after), its peak
        taken from ``fusion_window_s`` = (seconds before, seconds after) the current time."""
        uses_activity = confirm_threshold > 0 or end_threshold > 0 or rise_threshold > 0 or fusion_weight > 0
        rules = uses_activity or onset_confirm_threshold > 0 or reattack_s > 0
        spectrum = self.frontend(audio) if rules else None
        encoded = self.encode(audio, spectrum=spectrum) if rules else None
        heard = self.key_activity(spectrum, encoded[0]) if uses_activity else None
        fusion = Fusion(heard, fusion_weight, *fusion_window_s) if fusion_weight > 0 else None
        decoded = (self.greedy(audio, grammar=grammar, encoded=encoded, fusion=fusion) if beam_width <= 1
                   else self.beam(audio, beam_width, grammar=grammar, encoded=encoded, fusion=fusion))
        unconfirmed = [0] * len(decoded)
        if encoded is not None:
            n_windows = encoded[0].shape[0]
            activity = heard.float().cpu().numpy() if heard is not None else [None] * n_windows
            onsets = (self.onset_activity(encoded[0]).float().cpu().numpy() if onset_confirm_threshold > 0
                      else [None] * n_windows)
            positions_per_s = self.config.features.frame_rate_hz / self.config.memory_stride
            for i, result in enumerate(decoded):
                result["tokens"], unconfirmed[i] = confirm_note_ons(result["tokens"], activity[i], confirm_threshold,
                                                                    positions_per_s, onsets=onsets[i],
                                                                    onset_threshold=onset_confirm_threshold,
                                                                    rise=rise_threshold, reattack_s=reattack_s)
                if end_threshold > 0:
                    result["tokens"] = end_notes_by_activity(result["tokens"], activity[i], end_threshold,
                                                             positions_per_s)
        width = max([self.config.max_decode_tokens] + [len(result["tokens"]) for result in decoded])
        out = np.full((len(decoded), width + 2), PAD, dtype=np.int64)
        out[:, -2] = unconfirmed
        for i, result in enumerate(decoded):
            out[i, : len(result["tokens"])] = result["tokens"]
            out[i, -1] = self.STOP_CODES.index(result["stopped"])
        return out

    @property
    def has_frame_activity(self) -> bool:
        """Whether the confirm / rise / end rules have a frame activity to read."""
        return self.config.frame_detector or self.config.frame_readout or hasattr(self, "frame_head")

    def key_activity(self, spectrum: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """The frame activity of the decoding rules, (batch, n_positions, 88)
        probabilities: the ``frame_detector``'s for the windows' spectrum
        (``frontend(audio)``, as :meth:`encode` reads it), max-pooled to memory positions,
        or else :meth:`frame_activity` of their ``memory``."""
        if not self.config.frame_detector:
            return self.frame_activity(memory)
        features = run_acoustic("dilated", self.detector_norm, self.detector.features, spectrum)
        probs = torch.sigmoid(self.detector.frame(features.transpose(1, 2)).transpose(1, 2))
        stride = self.config.memory_stride
        if stride > 1:
            probs = nn.functional.max_pool1d(probs.transpose(1, 2), stride, stride, ceil_mode=True).transpose(1, 2)
        return probs[:, : memory.shape[1]]

    def frame_activity(self, memory: torch.Tensor) -> torch.Tensor:
        """Memory (batch, n_positions, memory dim) -> (batch, n_positions, 88) probability
        that each key sounds: the ``frame_readout`` probabilities in the memory, or else
        the encoder's auxiliary frame head."""
        if self.config.frame_readout:
            start = 2 * self.config.encoder_units
            return memory[..., start: start + N_KEYS]
        if not hasattr(self, "frame_head"):
            raise ConfigError("this seq2seq checkpoint has no frame-activity head (frame_loss_weight = 0), "
                              "so it cannot confirm, end or fuse notes; set confirm_threshold, rise_threshold, "
                              "end_threshold and fusion_weight to 0")
        return torch.sigmoid(self.frame_head(memory[..., : 2 * self.config.encoder_units]))

    def onset_activity(self, memory: torch.Tensor) -> torch.Tensor:
        """Memory (batch, n_positions, memory dim) -> (batch, n_positions, 88) probability
        that a note of each key starts, from the encoder's auxiliary onset head."""
        if not hasattr(self, "onset_head"):
            raise ConfigError("this seq2seq checkpoint has no onset-activity head (onset_loss_weight = 0), "
                              "so it cannot confirm NOTE_ONs by onsets; set onset_confirm_threshold to 0")
        return torch.sigmoid(self.onset_head(memory[..., : 2 * self.config.encoder_units]))

    @torch.no_grad()
    def greedy(self, audio: torch.Tensor, return_attention: bool = False, grammar: bool = True,
               encoded: tuple[torch.Tensor, torch.Tensor] | None = None,
               fusion: Fusion | None = None) -> list[dict]:
        """Decode each window: ``[{"tokens": list[int], "stopped": "eos"|"length"|"loop"|"end",
        "attention": (n_tokens, n_positions) array if asked}]``. ``encoded``: the
        (memory, mask) of :meth:`encode` for ``audio``, if already computed; ``fusion``:
        as in :meth:`_step`, its activity one row per window."""
        memory, mask = encoded if encoded is not None else self.encode(audio)
        keys = self.attn_memory(memory)
        state, context = self._start(memory)
        batch = memory.shape[0]
        end_steps = self._end_steps(mask)
        previous = torch.full((batch,), SOS, dtype=torch.long, device=memory.device)
        outputs: list[list[int]] = [[] for _ in range(batch)]
        attention: list[list[np.ndarray]] = [[] for _ in range(batch)]
        stopped: list[str | None] = [None] * batch
        for _ in range(self.config.max_decode_tokens):
            logits, state, context, weights = self._step(previous, state, context, keys, memory, mask,
                                                         constrain=grammar, fusion=fusion)
            previous = logits.argmax(dim=-1)
            now = state[3].tolist()                                # time before this step's token
            for i, token in enumerate(previous.tolist()):
                if stopped[i] is not None:
                    continue
                if token == EOS:
                    stopped[i] = "eos"
                    continue
                outputs[i].append(token)
                if return_attention:
                    attention[i].append(weights[i].float().cpu().numpy())
                if now[i] + shift_steps_of(token) >= end_steps[i]:
                    stopped[i] = "end"
                elif is_looping(outputs[i]):
                    stopped[i] = "loop"
            if all(s is not None for s in stopped):
                break
        results = []
        for i in range(batch):
            result = {"tokens": outputs[i], "stopped": stopped[i] or "length"}
            if return_attention:
                result["attention"] = np.array(attention[i]).reshape(len(attention[i]), memory.shape[1])
            results.append(result)
        return results

    def _end_steps(self, mask: torch.Tensor) -> list[float]:
        """Each window's length in 10 ms steps, from its (batch, n_positions) mask."""
        return (mask.sum(dim=1).float() / self.config.positions_per_step).tolist()

    @torch.no_grad()
    def beam(self, audio: torch.Tensor, width: int = 4, grammar: bool = True,
             encoded: tuple[torch.Tensor, torch.Tensor] | None = None,
             fusion: Fusion | None = None) -> list[dict]:
        """Beam search per window (length-normalised log-probability), same result format
        as :meth:`greedy` without attention. Every window's live beams step together, one
        decoder call per step for the whole batch. ``encoded``: the (memory, mask) of
        :meth:`encode` for the whole ``audio`` batch, if already computed; ``fusion``: as
        in :meth:`_step`, its activity one row per window."""
        memory, mask = encoded if encoded is not None else self.encode(audio)
        keys = self.attn_memory(memory)
        state, context = self._start(memory)
        end_steps = self._end_steps(mask)
        n_windows = memory.shape[0]
        # a beam: (log p, tokens, row of its decoder state in `state` / `context`, stop reason);
        # once a beam stops its row is stale (it indexes an earlier step's state) and never read
        beams: list[list[tuple]] = [[(0.0, [], i, "")] for i in range(n_windows)]
        cached: tuple[list[int], tuple] | None = None
        for _ in range(self.config.max_decode_tokens):
            live = [(window, beam) for window in range(n_windows) for beam in beams[window] if not beam[3]]
            if not live:
                break
            windows = [window for window, _ in live]
            if cached is None or cached[0] != windows:
                index = torch.tensor(windows, dtype=torch.long, device=memory.device)
                fused = None if fusion is None else fusion._replace(activity=fusion.activity.index_select(0, index))
                cached = (windows, (keys.index_select(0, index), memory.index_select(0, index),
                                    mask.index_select(0, index), fused))
            window_keys, window_memory, window_mask, window_fusion = cached[1]
            rows = torch.tensor([beam[2] for _, beam in live], dtype=torch.long, device=memory.device)
            previous = torch.tensor([beam[1][-1] if beam[1] else SOS for _, beam in live], dtype=torch.long,
                                    device=memory.device)
            logits, state, context, _ = self._step(previous, tuple(x.index_select(0, rows) for x in state),
                                                   context.index_select(0, rows), window_keys, window_memory,
                                                   window_mask, constrain=grammar, fusion=window_fusion)
            top = torch.log_softmax(logits.float(), dim=-1).topk(width, dim=-1)
            values, indices, now = top.values.tolist(), top.indices.tolist(), state[3].tolist()
            candidates: list[list[tuple]] = [[beam for beam in beams[w] if beam[3]] for w in range(n_windows)]
            for row, (window, (score, tokens, _, _)) in enumerate(live):
                for lp, token in zip(values[row], indices[row]):
                    new_tokens = tokens + ([token] if token != EOS else [])
                    if token == EOS:
                        reason = "eos"
                    elif now[row] + shift_steps_of(token) >= end_steps[window]:
                        reason = "end"
                    else:
                        reason = "loop" if is_looping(new_tokens) else ""
                    candidates[window].append((score + lp, new_tokens, row, reason))
            beams = [sorted(found, key=lambda b: -b[0] / max(len(b[1]), 1))[:width] if found else beams[w]
                     for w, found in enumerate(candidates)]
        results = []
        for window_beams in beams:
            best = max(window_beams, key=lambda b: b[0] / max(len(b[1]), 1))
            results.append({"tokens": best[1], "stopped": best[3] or "length"})
        return results


class TokenGrammar:
    """What a window's token sequence may say next, as tensors carried in the decoder
    state (so beams copy them): ``last_on`` (batch, 88) float, the time in 10 ms steps
    of each pitch's latest NOTE_ON (-1e9: none), ``sounding`` (batch, 88) bool, and
    ``seen`` (batch, 88) bool, pitches turned on or off earlier in the window.

    Forbidden:

    * NOTE_ON of a pitch turned on less than ``MIN_REATTACK_STEPS`` (50 ms) ago,
      sounding or not (a decoder that shifts by 10 ms sees the same attack again). A
      NOTE_ON of a pitch that sounds longer is allowed and re-attacks it (forbidding it
      made an ad-hoc look at three validation windows worse: the decoder then said other
      pitches; not benchmarked);
    * NOTE_OFF of a pitch that is not sounding, unless the window has not mentioned it
      yet (it may ring from before the window), and of one turned on at this very step;
    * PAD and SOS.

    Applied when decoding only; teacher-forced training sees the labels as they are.
    """

    MIN_REATTACK_STEPS = 5
    NEVER = -1e9

    @classmethod
    def start(cls, batch: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(last_on, sounding, seen) of an empty window."""
        flags = torch.zeros(batch, N_KEYS, dtype=torch.bool, device=device)
        return torch.full((batch, N_KEYS), cls.NEVER, device=device), flags, flags.clone()

    @staticmethod
    def update(last_on: torch.Tensor, sounding: torch.Tensor, seen: torch.Tensor, token: torch.Tensor,
               now: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """New (last_on, sounding, seen) after reading ``token`` (batch,) at time ``now`` (batch,)."""
        is_on = token < NOTE_OFF_BASE
        is_off = (token >= NOTE_OFF_BASE) & (token < SHIFT_BASE)
        key = torch.where(is_on, token, token - NOTE_OFF_BASE).clamp(0, N_KEYS - 1)
        hit = nn.functional.one_hot(key, N_KEYS).bool() & (is_on | is_off)[:, None]
        turned_on = hit & is_on[:, None]
        last_on = torch.where(turned_on, now.float()[:, None], last_on)
        sounding = (sounding & ~(hit & is_off[:, None])) | turned_on
        return last_on, sounding, seen | hit

    @classmethod
    def allowed(cls, last_on: torch.Tensor, sounding: torch.Tensor, seen: torch.Tensor,
                now: torch.Tensor) -> torch.Tensor:
        """(batch, VOCAB_SIZE) bool: the tokens that may come next."""
        age = now.float()[:, None] - last_on
        on_ok = age >= cls.MIN_REATTACK_STEPS
        off_ok = (sounding & (age > 0)) | ~seen
        rest = torch.ones(last_on.shape[0], VOCAB_SIZE - 2 * N_KEYS, dtype=torch.bool, device=last_on.device)
        rest[:, PAD - SHIFT_BASE] = False
        rest[:, SOS - SHIFT_BASE] = False
        return torch.cat([on_ok, off_ok, rest], dim=1)


def attack_evidence(activity: torch.Tensor, now: torch.Tensor, last_on: torch.Tensor, positions_per_step: float,
                    before_s: float = 0.04, after_s: float = 0.06, back_s: float = 0.2) -> torch.Tensor:
    """How much each key's frame activity rises at the current time: the tensor form of
    the rise test of :func:`~amtcli.decoding.tokens.confirm_note_ons`.

    Args:
        activity: (batch, n_positions, 88) probability that each key sounds at each
            position of the window.
        now: (batch,) current time in 10 ms steps from the window's start.
        last_on: (batch, 88) time in 10 ms steps of each key's latest NOTE_ON
            (:attr:`TokenGrammar.NEVER` for none).
        positions_per_step: activity positions per 10 ms step.

    Returns:
        (batch, 88) float32 in [0, 1]: the key's highest activity within ``before_s``
        before to ``after_s`` after ``now``, minus its lowest over [now - ``back_s``,
        now - ``before_s``), looking back no further than its latest NOTE_ON; with no
        position to look back on, the highest activity itself for a key not yet turned
        on in the window and 0 for one that was. 0 where the span holds no position.
        Unlike the rule, which looks back to the latest NOTE_ON it *kept*, ``last_on``
        is the latest one the decoder emitted, kept by the rules later or not.
    """
    if before_s > back_s:
        raise ValueError(f"before_s ({before_s}) must not exceed back_s ({back_s})")
    steps_per_s = 1.0 / TIME_STEP_S
    per_s = positions_per_step * steps_per_s
    batch, n_positions, _ = activity.shape
    now_s = now.double() / steps_per_s          # float64: float32 puts span ends one position off
    lo = torch.ceil((now_s - before_s) * per_s - 1e-6)                       # first position of the span
    hi = torch.floor((now_s + after_s) * per_s + 1e-6)                      # its last position
    first = torch.ceil((now_s - back_s) * per_s - 1e-6)                     # first position looked back on
    span = int(math.ceil((back_s + after_s) * per_s)) + 2
    positions = first[:, None] + torch.arange(span, dtype=torch.float64, device=activity.device)[None, :]
    inside = (positions >= 0) & (positions < n_positions) & (positions <= hi[:, None])
    index = positions.clamp(0, n_positions - 1).long()
    values = activity.float().gather(1, index[:, :, None].expand(-1, -1, activity.shape[2]))   # (batch, span, 88)
    after = inside & (positions >= lo[:, None])
    peak = values.masked_fill(~after[:, :, None], -math.inf).amax(dim=1)
    attacked = last_on > TokenGrammar.NEVER / 2
    attack_position = torch.ceil(last_on.double() / steps_per_s * per_s - 1e-6)
    before = (inside & (positions < lo[:, None]))[:, :, None] & (positions[:, :, None] >= attack_position[:, None, :])
    floor = values.masked_fill(~before, math.inf).amin(dim=1)
    rise = torch.where(torch.isfinite(floor), peak - floor, torch.where(attacked, torch.zeros_like(peak), peak))
    return torch.nan_to_num(rise, neginf=0.0).clamp(0.0, 1.0)


def shift_steps(tokens: torch.Tensor) -> torch.Tensor:
    """10 ms steps that each token moves time by: k for TIME_SHIFT(k), 0 otherwise (same shape)."""
    is_shift = (tokens >= SHIFT_BASE) & (tokens < EOS)
    return torch.where(is_shift, tokens - SHIFT_BASE + 1, torch.zeros_like(tokens))


def shift_steps_of(token: int) -> int:
    """:func:`shift_steps` for one token id."""
    return token - SHIFT_BASE + 1 if SHIFT_BASE <= token < EOS else 0


def is_looping(tokens: list[int], max_period: int = 8, repeats: int = 4) -> bool:
    """True when the last ``repeats`` blocks of some period <= ``max_period`` are identical,
    contain a note event and no TIME_SHIFT (a decoder stuck in a cycle at one instant).

    A repeating block that moves time on is music (a repeated note, an Alberti bass, a
    trill) and ends at the window's end anyway; flagging it cut off windows of the dense
    generated etudes after a few notes."""
    for period in range(1, max_period + 1):
        span = period * repeats
        if len(tokens) < span:
            break
        if span > period and tokens[-1] != tokens[-1 - period]:
            continue                        # cheap test first: the last token does not repeat
        tail = tokens[-span:]
        block = tail[-period:]
        if all(tail[k * period : (k + 1) * period] == block for k in range(repeats)) and \
                any(t < SHIFT_BASE for t in block) and not any(SHIFT_BASE <= t < EOS for t in block):
            return True
    return False


def window_token_targets(notes, start_s: float, duration_s: float, max_tokens: int,
                         snap_s: float = 0.0) -> np.ndarray:
    """(max_tokens,) int64: the window's tokens (cut to ``max_tokens - 1`` + EOS), PAD after;
    ``snap_s`` as in :func:`~amtcli.decoding.tokens.encode_window`."""
    tokens = encode_window(notes, start_s, duration_s, snap_s)
    if len(tokens) > max_tokens:
        tokens = tokens[: max_tokens - 1] + [EOS]
    out = np.full(max_tokens, PAD, dtype=np.int64)
    out[: len(tokens)] = tokens
    return out


def position_features(seconds: torch.Tensor, dim: int) -> torch.Tensor:
    """(n,) times in seconds -> (n, dim) sin / cos features, periods from 80 ms to about 10 s."""
    periods = 0.08 * (125.0 ** (torch.arange(dim // 2, dtype=torch.float32, device=seconds.device)
                                / max(dim // 2 - 1, 1)))
    angles = 2 * np.pi * seconds[:, None] / periods[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def token_positions(tokens: torch.Tensor, positions_per_step: float) -> torch.Tensor:
    """Where each target token happens, in attention positions.

    Args:
        tokens: (batch, n_tokens) int64 target tokens (TIME_SHIFT(k) advances time by k
            steps of TIME_STEP_S).
        positions_per_step: attention positions per 10 ms time step
            (frame rate * TIME_STEP_S / memory_stride).

    Returns:
        (batch, n_tokens) float: a NOTE_ON / NOTE_OFF sits at its event time and a
        TIME_SHIFT at the time it moves to, so the decoder looks at the next event
        while it chooses how far to shift.
    """
    return torch.cumsum(shift_steps(tokens), dim=1).float() * positions_per_step


def guided_attention_loss(attention: torch.Tensor, tokens: torch.Tensor, positions_per_step: float,
                          sigma: float) -> torch.Tensor:
    """Mean attention mass away from each token's time (after Tachibana et al. 2017).

    ``attention`` (batch, n_tokens, n_positions) from the teacher-forced pass; every
    NOTE_ON / NOTE_OFF / TIME_SHIFT token pays ``sum_j w_j * (1 - exp(-(j - p)^2 / (2 sigma^2)))``
    for its position ``p`` (:func:`token_positions`); EOS and PAD pay nothing.
    """
    target = token_positions(tokens, positions_per_step)
    grid = torch.arange(attention.shape[-1], device=attention.device, dtype=torch.float32)
    penalty = 1.0 - torch.exp(-((grid[None, None, :] - target[..., None]) ** 2) / (2.0 * sigma**2))
    valid = (tokens < EOS).float()
    per_token = (attention.float() * penalty).sum(dim=-1)
    return (per_token * valid).sum() / valid.sum().clamp(min=1.0)


def shift_soft_targets(tokens: torch.Tensor, sigma_steps: float) -> torch.Tensor:
    """(batch, n_tokens) ids -> (batch, n_tokens, VOCAB_SIZE) target distributions:
    one-hot, except that a TIME_SHIFT(k) spreads over TIME_SHIFT(j) with weights
    exp(-(j - k)^2 / (2 sigma^2)), normalised."""
    soft = nn.functional.one_hot(tokens.clamp(0, VOCAB_SIZE - 1), VOCAB_SIZE).float()
    is_shift = (tokens >= SHIFT_BASE) & (tokens < EOS)
    grid = torch.arange(MAX_SHIFT_STEPS, device=tokens.device, dtype=torch.float32)
    k = (tokens - SHIFT_BASE).float()
    bump = torch.exp(-((grid - k[..., None]) ** 2) / (2.0 * sigma_steps**2))
    bump = bump / bump.sum(dim=-1, keepdim=True)
    soft[..., SHIFT_BASE:EOS] = torch.where(is_shift[..., None], bump, soft[..., SHIFT_BASE:EOS])
    return soft


def seq2seq_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                 class_weights: torch.Tensor, guided_attention_weight: float = 0.0,
                 positions_per_step: float = 0.25, sigma: float = 3.0, frame_loss_weight: float = 0.0,
                 memory_stride: int = 2, onset_loss_weight: float = 0.0,
                 shift_sigma_steps: float = 0.0) -> dict[str, torch.Tensor]:
    """Class-weighted token cross-entropy (PAD ignored), mean over weighted tokens, plus
    the weighted guided-attention loss when ``guided_attention_weight`` > 0 and the
    encoder's frame- and onset-activity BCEs (targets max-pooled to memory positions)
    when ``frame_loss_weight`` / ``onset_loss_weight`` > 0. With ``shift_sigma_steps``
    > 0 a TIME_SHIFT(k) target is a Gaussian over the neighbouring shifts
    (:func:`shift_soft_targets`), so a shift off by 10 ms costs less than one off by 1 s."""
    logits, tokens = outputs["logits"], outputs["tokens"]
    weights = class_weights.to(logits.device)
    if shift_sigma_steps > 0:
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        soft = shift_soft_targets(tokens, shift_sigma_steps)
        per_token = -(soft * log_probs).sum(dim=-1)
        token_weights = weights[tokens.clamp(max=VOCAB_SIZE - 1)] * (tokens != PAD).float()
        loss = (per_token * token_weights).sum() / token_weights.sum().clamp(min=1e-8)
    else:
        loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB_SIZE).float(), tokens.reshape(-1),
                                           weight=weights, ignore_index=PAD)
    terms = {"tokens": loss}
    if guided_attention_weight > 0:
        terms["attention"] = guided_attention_weight * guided_attention_loss(
            outputs["attention"], tokens, positions_per_step, sigma)
    for name, weight in (("frame", frame_loss_weight), ("onset", onset_loss_weight)):
        if weight > 0:
            predicted = outputs[name]
            pooled = nn.functional.max_pool1d(targets[name].float().transpose(1, 2), memory_stride, memory_stride,
                                              ceil_mode=True).transpose(1, 2)[:, : predicted.shape[1]]
            terms[name] = weight * nn.functional.binary_cross_entropy_with_logits(predicted.float(), pooled)
    return terms
