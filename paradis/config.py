"""Typed configuration of one training run, read from YAML with ``yaml.safe_load`` only.

Unknown keys are rejected, and every error names the file and the key path
(``run.yaml: training.beta: must be >= 0 (got -1)``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from paradis.datasets import DATASETS, DEFAULT_VAL_IMAGES, SKIMAGE_PHOTOS, SR_DATASETS
from paradis.switch import Switch, parse_switch

Method = Literal["paradis", "us", "slimmable", "individual", "pareco", "twostage"]
Distillation = Literal["none", "ipkd", "wide"]


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the source and the key path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _switch(value: Any) -> str:
    return str(parse_switch(value))


SwitchStr = Annotated[str, Field(description="a switch in the paper's notation")]


SR_MODELS = ("wdsr", "wdsr_small")  # image-to-image models, for task super-resolution
BUILTIN_MODELS = ("mobilenet_v1", "mobilenet_v1_small", "resnet18", "resnet50", "resnet_small", *SR_MODELS)
Task = Literal["classification", "super-resolution"]


class ModelConfig(Strict):
    name: str = "mobilenet_v1_small"

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v in BUILTIN_MODELS:
            return v
        registry = sys.modules.get("paradis.models.registry")  # models registered in this process
        known = sorted(set(BUILTIN_MODELS) | set(registry.list_models() if registry else ()))
        if v not in known:
            raise ValueError(f"unknown model {v!r}; known models: {', '.join(known)}")
        return v


class SRDataConfig(Strict):
    """Super-resolution data (``skimage-photos``, ``div2k``): scale, patches and held-out images."""

    scale: Literal[2, 3, 4] = 2
    patch_size: int = Field(32, ge=8, le=512, description="side of the low-resolution training patches")
    patch_stride: int | None = Field(None, ge=1, le=512, description="skimage-photos: grid step (default: patch)")
    max_patches_per_image: int = Field(128, gt=0, le=100_000, description="skimage-photos")
    patches_per_image: int = Field(16, gt=0, le=100_000, description="div2k: random patches per image and epoch")
    val_images: list[str] = Field(
        default_factory=lambda: list(DEFAULT_VAL_IMAGES),
        description="skimage-photos: the held-out photographs (no training patch comes from them)",
    )
    eval_patch: int | None = Field(
        None, ge=8, le=4096, description="skimage-photos: evaluate on LR patches of this side (default: whole images)"
    )

    @field_validator("val_images")
    @classmethod
    def _photos(cls, v: list[str]) -> list[str]:
        unknown = [n for n in v if n not in SKIMAGE_PHOTOS]
        if unknown or not v:
            raise ValueError(f"val_images {v} must name some of the photographs {', '.join(SKIMAGE_PHOTOS)}")
        return v


class DataConfig(Strict):
    name: str = "fashion-mnist"
    root: str | None = Field(None, description="data folder; Fashion-MNIST defaults to Debian's")
    train_subset: int | None = Field(None, gt=0, le=100_000_000)
    test_subset: int | None = Field(None, gt=0, le=100_000_000)
    num_workers: int = Field(0, ge=0, le=256)
    image_size: int = Field(224, ge=8, le=1024, description="imagenet crops")
    synthetic_train: int = Field(512, gt=0, le=1_000_000)
    synthetic_test: int = Field(256, gt=0, le=1_000_000)
    sr: SRDataConfig = Field(default_factory=SRDataConfig)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(f"unknown data set {v!r}; known: {', '.join(DATASETS)}")
        return v


class OptimizerConfig(Strict):
    """SGD with Nesterov momentum, as in the paper; Adam (``momentum`` is its beta1) for WDSR."""

    name: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0, le=100)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(1e-4, ge=0, le=1)


class ScheduleConfig(Strict):
    """``linear``: to zero (MobileNet v1); ``step``: divide by 1/gamma at ``milestones`` (ResNet-50)."""

    kind: Literal["linear", "step", "cosine", "constant"] = "linear"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0, le=1)
    warmup_epochs: float = Field(0.0, ge=0, le=1000)

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(m <= 0 for m in v) or v != sorted(set(v)):
            raise ValueError(f"milestones {v} must be positive epochs in increasing order")
        return v


class USConfig(Strict):
    """Universally slimmable sampling (sandwich rule): largest, smallest and ``num_random`` widths."""

    min_width: float = Field(0.25, gt=0, le=1)
    max_width: float = Field(1.0, gt=0, le=2)
    num_random: int = Field(2, ge=0, le=64)
    grid: float = Field(0.025, gt=0, le=1, description="random widths are multiples of this")

    @model_validator(mode="after")
    def _ordered(self) -> USConfig:
        if self.min_width > self.max_width:
            raise ValueError(f"min_width {self.min_width} is larger than max_width {self.max_width}")
        return self


class ParecoConfig(Strict):
    """PareCO and TwoStage (per-stage widths): every iteration trains the largest and the smallest
    configuration and ``num_sampled`` configurations with one width per stage and sub-network, drawn
    from ``min_width`` to ``max_width`` in steps of ``grid``. PareCO draws them from a multi-objective
    proposer over (loss, multiply-adds) that learns from their losses and is refreshed every
    ``refresh_every`` iterations; TwoStage draws them uniformly at random."""

    devices: int = Field(1, ge=1, le=16, description="sub-networks of every configuration (1: slimmable)")
    min_width: float = Field(0.25, gt=0, le=4)
    max_width: float = Field(1.0, gt=0, le=4)
    grid: float = Field(0.125, gt=0, le=1, description="stage widths are multiples of this")
    num_sampled: int = Field(2, ge=0, le=64, description="M: sampled configurations per iteration")
    refresh_every: int = Field(10, ge=1, le=1_000_000, description="tau: iterations between proposer refreshes")
    proposer_seed: int = Field(0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _ordered(self) -> ParecoConfig:
        if self.min_width > self.max_width:
            raise ValueError(f"min_width {self.min_width} is larger than max_width {self.max_width}")
        return self

    def width_grid(self) -> list[float]:
        steps = round((self.max_width - self.min_width) / self.grid)
        return sorted({round(self.min_width + k * self.grid, 6) for k in range(steps + 1)} | {self.max_width})


DEFAULT_PARADIS_SWITCHES = ["[1.0]", "[0.5, 0.5]", "[4x0.25]"]
PAPER_TABLE_SWITCHES = ["[1.2]", "[1.0]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]"]
_DEFAULT_DISTILLATION: dict[str, Distillation] = {
    "paradis": "wide",
    "us": "wide",
    "slimmable": "none",
    "individual": "none",
    "pareco": "ipkd",
    "twostage": "ipkd",
}


class TrainingConfig(Strict):
    method: Method = "paradis"
    switches: list[SwitchStr] = Field(default_factory=lambda: list(DEFAULT_PARADIS_SWITCHES))
    distillation: Distillation | None = Field(
        None, description="none | ipkd (from [1.0]) | wide (from the wide model); default per method"
    )
    wide_factor: float = Field(1.2, ge=1.0, le=4.0)
    beta: float = Field(0.0, ge=0, le=1e4, description="weight of the activation-distillation MSE")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    epochs: int = Field(1, gt=0, le=100_000)
    batch_size: int = Field(128, gt=0, le=1_000_000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    us: USConfig = Field(default_factory=USConfig)
    pareco: ParecoConfig = Field(default_factory=ParecoConfig)
    max_steps_per_epoch: int | None = Field(None, gt=0, description="cut epochs short (smoke runs)")

    @field_validator("switches", mode="before")
    @classmethod
    def _parse_switches(cls, v: Any) -> Any:
        if not isinstance(v, list):
            raise ValueError(f"switches must be a list of switches, got {v!r}")
        if not v:
            raise ValueError("switches is empty: train at least one switch")
        return [_switch(s) for s in v]

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.distillation is None:
            object.__setattr__(self, "distillation", _DEFAULT_DISTILLATION[self.method])
        for i, s in enumerate(self.switches):
            if parse_switch(s).total_exact > parse_switch(self.wide_factor).total_exact:
                raise ValueError(
                    f"switches[{i}]: switch {s} spans width {parse_switch(s).total:g}, wider than the wide "
                    f"factor {self.wide_factor:g}"
                )
        if len(set(self.switches)) != len(self.switches):
            raise ValueError(f"switches {self.switches} lists a switch twice")
        if self.method == "individual":
            if len(self.switches) != 1:
                raise ValueError(f"method individual trains exactly one switch, got {len(self.switches)}")
            if self.distillation != "none":
                raise ValueError("method individual trains on the labels alone: distillation must be none")
        if self.method == "slimmable" and any(not parse_switch(s).is_single for s in self.switches):
            raise ValueError("method slimmable trains single-width switches such as [0.5], not lists")
        if self.method in ("pareco", "twostage"):
            p = self.pareco
            if p.devices * p.max_width > self.wide_factor:
                raise ValueError(
                    f"pareco: {p.devices} device(s) of max_width {p.max_width:g} span more than the wide factor "
                    f"{self.wide_factor:g}"
                )
            if self.beta > 0:
                raise ValueError(f"method {self.method} does not distil features: beta must be 0")
        if self.method == "us" and self.us.max_width > self.wide_factor:
            raise ValueError(f"us.max_width {self.us.max_width} is wider than the wide factor {self.wide_factor}")
        if self.beta > 0 and self.method != "us" and "[1.0]" not in self.switches:
            raise ValueError("beta > 0 distils the [1.0] features, but [1.0] is not among the switches")
        for m in self.schedule.milestones:
            if m >= self.epochs and self.schedule.kind == "step":
                raise ValueError(f"schedule.milestones: epoch {m} is not before the last epoch {self.epochs}")
        return self

    def parsed_switches(self) -> list[Switch]:
        return [parse_switch(s) for s in self.switches]


class EvaluationConfig(Strict):
    switches: list[SwitchStr] | None = Field(
        None,
        description="switches to evaluate; default: the teacher, the trained switches and [0.5, 0.25, 0.25]",
    )
    calibration_batches: int = Field(20, gt=0, le=100_000)
    calibration_batch_size: int | None = Field(None, gt=0, le=1_000_000)
    every: int = Field(1, ge=0, le=100_000, description="evaluate every N epochs (0: only at the end)")
    target: SwitchStr | None = Field(
        None,
        description="the switch a deployment would use, reported as acc/target and device_macs/target; "
        "default [1.0] if evaluated, else the first trained switch",
    )
    match_switches: list[SwitchStr] = Field(
        default_factory=lambda: list(PAPER_TABLE_SWITCHES),
        description="US and slimmable models are also evaluated at the widths closest in cost to these",
    )

    @field_validator("target", mode="before")
    @classmethod
    def _parse_target(cls, v: Any) -> Any:
        return None if v is None else _switch(v)

    @field_validator("switches", "match_switches", mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, list) or not v:
            raise ValueError(f"expected a non-empty list of switches, got {v!r}")
        return [_switch(s) for s in v]


class RunConfig(Strict):
    """One training run: model, data, training and evaluation, for a classification or a
    super-resolution task."""

    task: Task = "classification"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, gt=0, le=1024, description="torch intra-op threads")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: train under bfloat16 autocast (weights, BN statistics and the optimizer stay fp32)"
    )
    channels_last: bool = Field(False, description="NHWC activations and weights (faster convolutions on CPU and GPU)")

    @model_validator(mode="before")
    @classmethod
    def _sr_defaults(cls, data: Any) -> Any:
        """Super-resolution trains without distillation unless asked (the paper saw it hurt), and so
        without a wide model: the network allocates no channels beyond ``[1.0]`` (WDSR's 64 at most)."""
        if isinstance(data, dict) and data.get("task") == "super-resolution":
            training = data.get("training", {})
            if isinstance(training, dict) and training.get("distillation") is None:
                training = {**training, "distillation": "none"}
            if isinstance(training, dict) and training.get("distillation") != "wide":
                training = {"wide_factor": 1.0, **training}
            data = {**data, "training": training}
        return data

    @model_validator(mode="after")
    def _task_fits(self) -> RunConfig:
        sr_data, sr_model = self.data.name in SR_DATASETS, self.model.name in SR_MODELS
        if self.task == "super-resolution":
            if not sr_data:
                raise ValueError(
                    f"data.name: task super-resolution needs an image-pair data set ({', '.join(SR_DATASETS)}), "
                    f"got {self.data.name!r}"
                )
            if not sr_model:
                raise ValueError(
                    f"model.name: task super-resolution needs an image-to-image model ({', '.join(SR_MODELS)}), "
                    f"got {self.model.name!r}"
                )
        elif sr_data or sr_model:
            what = f"data set {self.data.name!r}" if sr_data else f"model {self.model.name!r}"
            raise ValueError(f"task: {what} is for task super-resolution, but task is {self.task!r}")
        return self

    @model_validator(mode="after")
    def _eval_switches_fit(self) -> RunConfig:
        named = [(f"evaluation.switches[{i}]", s) for i, s in enumerate(self.evaluation.switches or [])]
        if self.evaluation.target is not None:
            named.append(("evaluation.target", self.evaluation.target))
        for where, s in named:
            if parse_switch(s).total_exact > parse_switch(self.training.wide_factor).total_exact:
                raise ValueError(f"{where}: switch {s} is wider than the wide factor {self.training.wide_factor:g}")
        return self


# --- loading ---------------------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from ``path`` (safe loading, duplicate keys rejected)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise ConfigError(f"{p}: cannot read: {err.strerror or err}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{p}: not valid YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{p}: the file is empty; expected a mapping of settings")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top, got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: list[str], source: str = "--set") -> dict:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars or lists)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source} {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"{source} {item!r}: cannot read the value {raw!r}") from None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{source} {item!r}: {part} is not a section")
            node = nxt
        node[parts[-1]] = value
    return data


def format_validation_error(err: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem: ``source: key.path: message (got value)``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        nested = re.match(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): (.*)$", msg)
        if nested and e["type"].startswith("value_error"):  # a check of a whole section names its key
            loc, msg = f"{loc}.{nested.group(1)}" if loc else nested.group(1), nested.group(2)
        got = "" if e["type"] in ("extra_forbidden", "missing") else f" (got {e.get('input')!r})"
        if e["type"].startswith("value_error") or e["type"] == "assertion_error":
            got = ""
        lines.append(f"{source}: {loc or '(top)'}: {msg}{got}")
    return "\n".join(lines)


def validate(model: type[BaseModel], data: dict, source: str, prefix: str = ""):
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, prefix).splitlines()[0]) from None


def load_run_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> RunConfig:
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    return validate(RunConfig, data, str(path) if path is not None else "config")
