"""Training recipes: a TOML file -> a frozen, validated :class:`TrainConfig`."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from amtcli.datasets.augment import AugmentConfig
from amtcli.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how they are cut.

    Attributes:
        dataset: MusicNet-layout folder (``<split>_data`` + ``<split>_labels``).
        train_split, validation_split: split names inside it.
        crop_s: training crop length in seconds (a whole number of frames).
        batch_size: crops per optimizer step (per process under torchrun).
        validation_files: how many validation recordings to score at each evaluation.
        validation_max_s: seconds of each validation recording that are scored.
        augment: augment training crops (with the recipe's ``[augment]`` settings,
            the loader's mild defaults where it is silent).
        reattack_gap_frames: end a note's frame target this many frames before a
            same-pitch re-attack (frame-only models; 0 keeps the labels as they are).
    """

    dataset: str = ""
    train_split: str = "train"
    validation_split: str = "validation"
    crop_s: float = 5.0
    batch_size: int = 8
    validation_files: int = 12
    validation_max_s: float = 30.0
    augment: bool = True
    reattack_gap_frames: int = 0


@dataclass(frozen=True)
class OptimConfig:
    """Adam with a learning-rate schedule and gradient clipping (between backward and step).

    Attributes:
        lr_schedule: "step" (multiply by ``lr_decay_rate`` every ``lr_decay_every``
            steps) or "plateau" (ReduceLROnPlateau on validation note-onset F1: multiply
            by ``lr_decay_rate`` after ``plateau_patience`` evaluations without a gain).
            Evaluations at F1 0 (a CTC model still emitting only blanks) neither cut
            the rate nor count towards early stopping.
        micro_batches: gradient accumulation: each batch is run in this many parts
            whose gradients add up before the one clipped step.
    """

    lr: float = 6e-4
    weight_decay: float = 0.0
    steps: int = 3000
    clip_grad_norm: float = 3.0
    lr_schedule: str = "step"
    lr_decay_every: int = 1000
    lr_decay_rate: float = 0.5
    plateau_patience: int = 2
    micro_batches: int = 1

    def __post_init__(self) -> None:
        if self.micro_batches < 1:
            raise ConfigError("micro_batches must be at least 1")
        if self.lr_schedule not in ("step", "plateau"):
            raise ConfigError(f"lr_schedule must be 'step' or 'plateau', got {self.lr_schedule!r}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Intervals in optimizer steps.

    Attributes:
        early_stop_patience: stop after this many evaluations without a better
            validation note-onset F1 (0 never stops early) ...
        min_steps: ... but never before this many steps.
    """

    eval_every: int = 250
    log_every: int = 10
    threads: int = 1
    early_stop_patience: int = 0
    min_steps: int = 0


@dataclass(frozen=True)
class InitConfig:
    """Warm start: copy some modules' weights from another checkpoint before training.

    Attributes:
        checkpoint: checkpoint folder (``config.json`` + ``model.safetensors``), relative
            paths from the working directory; empty: random initialisation.
        modules: parameter-name prefixes to copy (e.g. ``["norm", "acoustic"]``); every
            prefix must match weights of the same shapes in both models.
        freeze: keep the copied modules as copied: their parameters get no gradient and
            their batch-norm layers stay in inference mode (running statistics fixed), so
            only the other modules train.
    A resumed run restores its own weights instead.
    """

    checkpoint: str = ""
    modules: tuple[str, ...] = ()
    freeze: bool = False

    def frozen_prefixes(self) -> tuple[str, ...]:
        """This model's parameter-name prefixes that stay frozen (targets of ``modules``)."""
        return tuple(entry.partition("=")[0] for entry in self.modules) if self.freeze else ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", tuple(self.modules))
        if self.checkpoint and not self.modules:
            raise ConfigError("[init] checkpoint needs the modules to copy (e.g. modules = [\"acoustic\"])")
        if self.freeze and not (self.checkpoint and self.modules):
            raise ConfigError("[init] freeze = true needs a checkpoint and the modules to copy and freeze")


@dataclass(frozen=True)
class TrainConfig:
    """A whole recipe. ``windowing`` ({"window_s", "hop_s"}) is written into every
    checkpoint's config.json for inference; empty means the default 10 s / 5 s.
    ``init`` holds one warm start per ``[init]`` table (``[[init]]`` tables for several
    source checkpoints), applied in order."""

    family: str
    name: str
    model: dict = field(default_factory=dict)
    windowing: dict = field(default_factory=dict)
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    init: tuple[InitConfig, ...] = ()
    augment: AugmentConfig = AugmentConfig()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optim.steps <= 0 or self.data.batch_size <= 0 or self.schedule.eval_every <= 0:
            raise ConfigError("steps, batch_size and eval_every must be positive")
        if self.optim.clip_grad_norm <= 0:
            raise ConfigError("clip_grad_norm must be positive")


def _section(cls, data: dict, name: str):
    if not isinstance(data, dict):
        raise ConfigError(f"recipe [{name}] must be a table of keys, got {data!r}")
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"recipe [{name}] has unknown keys: {', '.join(sorted(unknown))}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"recipe [{name}]: {exc}") from None


def _inits(raw, recipe_dir: Path) -> tuple[InitConfig, ...]:
    """One ``[init]`` table or an array of ``[[init]]`` tables -> the warm starts that
    copy something (an empty table is none). A relative checkpoint path is taken from
    the recipe's folder when a checkpoint is there, else from the working directory
    (where training reports it missing, naming the path)."""
    from dataclasses import replace

    tables = raw if isinstance(raw, list) else [raw]
    inits = tuple(_section(InitConfig, table, "init") for table in tables)
    resolved = []
    for init in inits:
        if not init.checkpoint:
            continue
        path = Path(init.checkpoint)
        candidates = [path] if path.is_absolute() else [recipe_dir / path, path]
        found = next((c for c in candidates if (c / "model.safetensors").is_file()), candidates[-1])
        resolved.append(replace(init, checkpoint=str(found)))
    return tuple(resolved)


def load_recipe(path: str | Path, overrides: dict[str, dict] | None = None) -> TrainConfig:
    """Read a recipe TOML; ``overrides`` maps section -> {key: value} (from CLI flags)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: recipe not found") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: invalid recipe ({exc})") from None
    for section, values in (overrides or {}).items():
        if not isinstance(raw.setdefault(section, {}), dict):
            raise ConfigError(f"{path}: recipe [{section}] must be a table of keys, got {raw[section]!r}")
        raw[section].update({k: v for k, v in values.items() if v is not None})
    if "family" not in raw:
        raise ConfigError(f"{path}: recipe needs a top-level 'family'")
    data = raw.get("data", {})
    if raw.get("augment") and isinstance(data, dict) and not data.get("augment", True):
        raise ConfigError(f"{path}: the [augment] section has no effect with [data] augment = false; "
                          "remove the section or set augment = true")
    return TrainConfig(
        family=raw["family"],
        name=raw.get("name", raw["family"]),
        model=raw.get("model", {}),
        windowing=raw.get("windowing", {}),
        data=_section(DataConfig, raw.get("data", {}), "data"),
        optim=_section(OptimConfig, raw.get("optim", {}), "optim"),
        schedule=_section(ScheduleConfig, raw.get("schedule", {}), "schedule"),
        init=_inits(raw.get("init", {}), path.parent),
        augment=_section(AugmentConfig, raw.get("augment", {}), "augment"),
        seed=int(raw.get("seed", 0)),
    )
