"""Checkpoints: a folder with ``config.json`` + ``model.safetensors`` (+ ``README.md``).

This is the layout the Hugging Face Hub serves. ``config.json`` holds the family
name and the family's config dict; weights load with strict key checking. No
pickles, no class names evaluated from files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from amtcli.atomic import atomic_path
from amtcli.errors import ConfigError, ModelError
from amtcli.model_files import sha256_of
from amtcli.options import DecodeOptions, FeatureSpec, WindowSpec

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FamilySpec:
    """How to build a family's model, features and training loss from its config dict.

    ``loss(config)`` returns the loss function ``(outputs, targets) -> {term: scalar}``.
    ``note_targets(config)``, when given, returns ``(notes, start_s, duration_s) ->
    {name: array}``: extra per-crop targets made from the crop's notes (token
    sequences); ``teacher_forced`` models are called as ``model(audio, targets["tokens"])``.
    """

    name: str
    build: Callable[[dict], nn.Module]
    features: Callable[[dict], FeatureSpec]
    loss: Callable[[dict], Callable[[dict, dict], dict]]
    note_targets: Callable[[dict], Callable] | None = None
    teacher_forced: bool = False


def _onf() -> FamilySpec:
    from functools import partial

    from amtcli.families.onsets_frames import OnsetsFrames, OnsetsFramesConfig, onsets_frames_loss

    return FamilySpec(
        "onf",
        lambda cfg: OnsetsFrames(OnsetsFramesConfig.from_dict(cfg)),
        lambda cfg: OnsetsFramesConfig.from_dict(cfg).features,
        lambda cfg: partial(onsets_frames_loss,
                            harmonic_negative_weight=OnsetsFramesConfig.from_dict(cfg).harmonic_negative_weight),
    )


def _cnn() -> FamilySpec:
    from functools import partial

    from amtcli.families.framewise_cnn import FramewiseCNN, FramewiseCNNConfig, framewise_cnn_loss

    return FamilySpec(
        "cnn",
        lambda cfg: FramewiseCNN(FramewiseCNNConfig.from_dict(cfg)),
        lambda cfg: FramewiseCNNConfig.from_dict(cfg).features,
        lambda cfg: partial(framewise_cnn_loss,
                            harmonic_negative_weight=FramewiseCNNConfig.from_dict(cfg).harmonic_negative_weight),
    )


def _ctc() -> FamilySpec:
    from functools import partial

    from amtcli.families.ctc import CTCConfig, CTCTranscriber, ctc_loss_terms

    def loss(cfg: dict):
        config = CTCConfig.from_dict(cfg)
        return partial(ctc_loss_terms, max_tokens=config.max_tokens, frame_loss_weight=config.frame_loss_weight,
                       alignment_loss_weight=config.alignment_loss_weight)

    return FamilySpec(
        "ctc",
        lambda cfg: CTCTranscriber(CTCConfig.from_dict(cfg)),
        lambda cfg: CTCConfig.from_dict(cfg).features,
        loss,
    )


def _seq2seq() -> FamilySpec:
    from functools import partial

    from amtcli.families.seq2seq import Seq2SeqConfig, Seq2SeqTranscriber, seq2seq_loss, window_token_targets

    def loss(cfg: dict):
        config = Seq2SeqConfig.from_dict(cfg)
        return partial(seq2seq_loss, class_weights=config.class_weights(),
                       guided_attention_weight=config.guided_attention_weight,
                       positions_per_step=config.positions_per_step,
                       sigma=config.guided_attention_sigma, frame_loss_weight=config.frame_loss_weight,
                       memory_stride=config.memory_stride, onset_loss_weight=config.onset_loss_weight,
                       shift_sigma_steps=config.shift_sigma_steps)

    def note_targets(cfg: dict):
        config = Seq2SeqConfig.from_dict(cfg)
        return lambda notes, start_s, duration_s: {
            "tokens": window_token_targets(notes, start_s, duration_s, config.max_target_tokens,
                                           config.target_snap_s)}

    return FamilySpec(
        "seq2seq",
        lambda cfg: Seq2SeqTranscriber(Seq2SeqConfig.from_dict(cfg)),
        lambda cfg: Seq2SeqConfig.from_dict(cfg).features,
        loss,
        note_targets,
        teacher_forced=True,
    )


_FAMILIES: dict[str, Callable[[], FamilySpec]] = {"onf": _onf, "cnn": _cnn, "ctc": _ctc, "seq2seq": _seq2seq}


def family_names() -> list[str]:
    """Names of the model families this version can build."""
    return sorted(_FAMILIES)


def get_family(name: str) -> FamilySpec:
    if name not in _FAMILIES:
        raise ModelError(f"unknown model family {name!r}; known: {', '.join(family_names())}")
    return _FAMILIES[name]()


@dataclass
class LoadedModel:
    """A model ready for inference.

    Attributes:
        name: registry name or folder the weights came from.
        family: family name ("onf", ...).
        module: the torch module, in eval mode, on ``device``.
        features: its FeatureSpec (sample rate, frame rate).
        config: the family config dict from config.json.
        device: torch device the module lives on.
        decode: decoding thresholds tuned for this checkpoint (config.json "decode"),
            used unless the caller gives its own.
        window_s, hop_s: inference windowing in seconds (config.json "windowing";
            10 s windows with a 5 s hop unless the checkpoint says otherwise, e.g. a
            model whose receptive field is much shorter than the 2.5 s margins).
    """

    name: str
    family: str
    module: nn.Module
    features: FeatureSpec
    config: dict
    device: torch.device
    decode: DecodeOptions = DecodeOptions()
    window_s: float = 10.0
    hop_s: float = 5.0


def save_checkpoint(folder: str | os.PathLike, family: str, config: dict, module: nn.Module,
                    extra: dict[str, Any] | None = None, overwrite: bool = True) -> Path:
    """Write ``config.json`` and ``model.safetensors`` atomically into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE, overwrite=overwrite) as tmp:
        save_file(state, str(tmp), metadata={"family": family})
        digest = sha256_of(tmp)
    payload = {"format_version": FORMAT_VERSION, "family": family, "config": config,
               "weights_sha256": digest, **(extra or {})}
    with atomic_path(folder / CONFIG_FILE, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def read_config(folder: Path) -> dict:
    """Parse and check ``config.json`` of a checkpoint folder."""
    path = folder / CONFIG_FILE
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{folder}: not a checkpoint folder (no {CONFIG_FILE})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable config ({exc})") from None
    if not isinstance(payload, dict) or "family" not in payload or "config" not in payload:
        raise ModelError(f"{path}: config must have 'family' and 'config' keys")
    return payload


def read_weights(path: Path, missing_message: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; ModelError with ``missing_message`` when it is
    absent, with the reader's reason when it is unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise ModelError(missing_message) from None
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{path}: unreadable weights ({exc})") from None


def copy_weights(module: nn.Module, folder: str | os.PathLike, prefixes: tuple[str, ...]) -> int:
    """Copy the weights under ``prefixes`` (dotted parameter-name prefixes) from the
    checkpoint in ``folder`` into ``module``; returns how many tensors were copied.
    ``"target=source"`` copies the source's ``source.*`` into this model's ``target.*``
    (e.g. ``"acoustic=transcriber"``).

    Raises ModelError when the checkpoint is unreadable, a prefix matches nothing in
    either model, or a shape differs.
    """
    weights = Path(folder) / WEIGHTS_FILE
    source = read_weights(weights, f"[init] checkpoint {folder} not found (no {WEIGHTS_FILE} there); "
                                   "train that checkpoint first or fix the path in the recipe")
    target = module.state_dict()
    copied = {}
    for entry in prefixes:
        prefix, _, source_prefix = entry.partition("=")
        source_prefix = source_prefix or prefix
        names = [k for k in target if k == prefix or k.startswith(prefix + ".")]
        if not names:
            raise ModelError(f"[init] module {prefix!r} is not in this model")
        for name in names:
            source_name = source_prefix + name[len(prefix):]
            if source_name not in source:
                raise ModelError(f"{weights}: has no {source_name!r} for [init] module {entry!r}")
            if source[source_name].shape != target[name].shape:
                raise ModelError(f"{weights}: {source_name!r} is {tuple(source[source_name].shape)}, "
                                 f"this model needs {tuple(target[name].shape)}")
            copied[name] = source[source_name]
    module.load_state_dict(copied, strict=False)
    return len(copied)


def load_checkpoint(folder: str | os.PathLike, device: torch.device | str = "cpu", name: str | None = None) -> LoadedModel:
    """Build the model described by ``folder`` and load its weights strictly."""
    folder = Path(folder)
    payload = read_config(folder)
    family = get_family(payload["family"])
    try:
        module = family.build(payload["config"])
        features = family.features(payload["config"])
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{folder / CONFIG_FILE}: config does not fit family {family.name!r} ({exc})") from None
    weights = folder / WEIGHTS_FILE
    expected = payload.get("weights_sha256")
    if expected is not None and weights.is_file() and sha256_of(weights) != expected:
        raise ModelError(f"{weights}: sha256 does not match the one in {CONFIG_FILE} (damaged or replaced); "
                         "copy the checkpoint again or retrain it")
    state = read_weights(weights, f"{folder}: no {WEIGHTS_FILE}")
    for tensor_name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelError(f"{weights}: tensor {tensor_name!r} holds NaN or infinite values (a damaged "
                             "checkpoint); copy it again or retrain it")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"{weights}: weights do not match the config ({first})") from None
    try:
        decode = DecodeOptions(**payload.get("decode", {}))
    except (TypeError, ConfigError) as exc:
        raise ModelError(f"{folder / CONFIG_FILE}: bad 'decode' section ({exc})") from None
    rules = (decode.confirm_threshold > 0 or decode.end_threshold > 0 or decode.rise_threshold > 0
             or decode.fusion_weight > 0)
    if rules and not getattr(module, "has_frame_activity", False):
        raise ModelError(f"{folder / CONFIG_FILE}: confirm_threshold, end_threshold, rise_threshold and "
                         "fusion_weight need a "
                         "seq2seq model with a frame-activity head; set them to 0 in the 'decode' section")
    if decode.onset_confirm_threshold > 0 and not (hasattr(module, "onset_activity")
                                                   and hasattr(module, "onset_head")):
        raise ModelError(f"{folder / CONFIG_FILE}: onset_confirm_threshold needs a seq2seq model with an "
                         "onset-activity head; set it to 0 in the 'decode' section")
    if decode.onset_support > 0 and (getattr(module, "OUTPUT", "frames") != "frames"
                                     or "onset" not in getattr(module, "CHANNELS", ())):
        raise ModelError(f"{folder / CONFIG_FILE}: onset_support needs a frame model with an onset head (onf, or "
                         "cnn with onset_readout); "
                         "set it to 0 in the 'decode' section")
    windowing = payload.get("windowing", {})
    try:
        window_s, hop_s = float(windowing.get("window_s", 10.0)), float(windowing.get("hop_s", 5.0))
        WindowSpec.from_seconds(features, window_s, hop_s)
    except (TypeError, ValueError, AttributeError, ConfigError) as exc:
        raise ModelError(f"{folder / CONFIG_FILE}: bad 'windowing' section ({exc})") from None
    device = torch.device(device)
    module.to(device).eval()
    return LoadedModel(name or folder.name, family.name, module, features, payload["config"], device, decode,
                       window_s, hop_s)
