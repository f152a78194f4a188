"""Typed configuration of one training run (torch-free). Unknown keys are rejected; the allowed
models, data sets, tasks and methods are those of their registries, and every error names the key
path (``run.yaml: training.beta: must be >= 0 (got -1)``).

:class:`RunConfig` is the run section that ``paradis train`` reads and that every study extends
(``orchestration.spec.StudySpec``): it is declared once, here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from paradis.data.folders import DEFAULT_VAL_IMAGES, SKIMAGE_PHOTOS
from paradis.data.registry import dataset_info, list_datasets
from paradis.methods import get_method
from paradis.models.registry import list_models, model_info
from paradis.switch import Switch, parse_switch
from paradis.tasks import get_task, list_tasks

Distillation = Literal["none", "ipkd", "wide"]


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the source and the key path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, v: Any, info) -> Any:
        """``epochs: true`` is a mistake, not 1 epoch: a number field takes no true/false."""
        if isinstance(v, bool) and info.field_name in cls.model_fields:
            annotation = str(cls.model_fields[info.field_name].annotation)
            if ("int" in annotation or "float" in annotation) and "bool" not in annotation:
                raise ValueError(f"expected a number, got {v}")
        return v


def _switch(value: Any) -> str:
    return str(parse_switch(value))


SwitchStr = Annotated[str, Field(description="a switch in the paper's notation")]


class ModelConfig(Strict):
    name: str = "mobilenet_v1_small"
    rounding: Literal["paradis", "us-nets"] | None = Field(
        None,
        description="how single widths become channels: paradis (floor(C*w + 1/2), shared by all switches) or "
        "us-nets (make_divisible(C*w, 8), as US-Nets' code); default: the method's (us-nets for us and slimmable)",
    )

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        model_info(v)  # an unknown name lists the registered ones
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
    holdout: int | None = Field(
        None, gt=0, le=100_000_000, description="training images held out (never trained on) for selection steps"
    )
    sr: SRDataConfig = Field(default_factory=SRDataConfig)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        dataset_info(v)  # an unknown name lists the registered ones
        return v


class OptimizerConfig(Strict):
    """SGD with Nesterov momentum, as in the paper; Adam (``momentum`` is its beta1) for WDSR."""

    name: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0, le=100)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(1e-4, ge=0, le=1)
    decay: Literal["all", "us-nets"] = Field(
        "all",
        description="decayed parameters: all, or us-nets (no decay on depthwise convolutions, BN, biases)",
    )


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
    proposer: Literal["nsga2", "tpe"] = Field("nsga2", description="PareCO: the multi-objective sampler proposing")
    proposer_population: int = Field(16, ge=2, le=10_000, description="PareCO: the proposer's NSGA-II population")

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


class TrainingConfig(Strict):
    method: str = Field("paradis", description="a registered method (paradis.methods)")
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

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        get_method(v)  # an unknown name lists the registered ones
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        method = get_method(self.method)
        if self.distillation is None:
            object.__setattr__(self, "distillation", method.default_distillation)
        for i, s in enumerate(self.switches):
            if parse_switch(s).total_exact > parse_switch(self.wide_factor).total_exact:
                raise ValueError(
                    f"switches[{i}]: switch {s} spans width {parse_switch(s).total:g}, wider than the wide "
                    f"factor {self.wide_factor:g}"
                )
        if len(set(self.switches)) != len(self.switches):
            raise ValueError(f"switches {self.switches} lists a switch twice")
        method.validate(self)
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

    task: str = Field("classification", description="a registered task (paradis.tasks)")
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

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        get_task(v)  # an unknown name lists the registered ones
        return v

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """A task may default the distillation (super-resolution trains without it unless asked: the
        paper saw it hurt), and without wide distillation such a model allocates no channels beyond
        ``[1.0]`` (WDSR's 64 at most)."""
        if not isinstance(data, dict) or data.get("task") not in list_tasks():
            return data
        task = get_task(data["task"])
        training = data.get("training", {})
        if not isinstance(training, dict):
            return data
        if task.default_distillation and training.get("distillation") is None:
            training = {**training, "distillation": task.default_distillation}
        if task.distils_only_from_wide and training.get("distillation") != "wide":
            training = {"wide_factor": 1.0, **training}
        return {**data, "training": training}

    @model_validator(mode="after")
    def _rounding(self) -> RunConfig:
        """An unset rounding follows the method: the baselines as their authors built them."""
        if self.model.rounding is None:
            object.__setattr__(self.model, "rounding", get_method(self.training.method).rounding)
        return self

    @model_validator(mode="after")
    def _task_fits(self) -> RunConfig:
        for key, entry in (("model.name", model_info(self.model.name)), ("data.name", dataset_info(self.data.name))):
            if entry.task != self.task:
                fitting = list_models(self.task) if key == "model.name" else list_datasets(self.task)
                raise ValueError(
                    f"{key}: {entry.name!r} is for task {entry.task}, but task is {self.task!r} "
                    f"(for {self.task}: {', '.join(fitting)})"
                )
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
