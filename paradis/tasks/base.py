"""Tasks (torch-free to import): what a model is trained and measured on. A task is one registered
object: its losses, its measure (metric prefix, table heading, cell format), its evaluator and its
baseline, and the defaults it implies for a run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from paradis.registry import Registry


@dataclass(frozen=True)
class Objective:
    """What a task trains on: the loss to the ground truth, the loss to the teacher's target and how
    the teacher's output becomes that target."""

    label_loss: Callable[[Any, Any], Any]
    teacher_loss: Callable[[Any, Any], Any]
    teacher_target: Callable[[Any], Any]


class Task:
    """Base of the tasks; subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    measure: ClassVar[str]  # metric prefix: "acc" (a fraction) or "psnr" (dB)
    heading: ClassVar[str]  # the measure's column heading in tables
    long_heading: ClassVar[str]  # under a study table
    default_distillation: ClassVar[str | None] = None  # None: the method's default
    distils_only_from_wide: ClassVar[bool] = False  # without wide distillation the model is [1.0] wide

    def objective(self, *, label_smoothing: float = 0.0) -> Objective:
        raise NotImplementedError

    def evaluate(self, model, switch, loader: Iterable, *, device=None, num_classes: int | None = None) -> dict:
        """``{"top1": ..., "top5": ...}`` or ``{"psnr": ...}`` of a calibrated switch over ``loader``."""
        raise NotImplementedError

    def baseline(self, loader: Iterable, *, device=None) -> float | None:
        """A reference measure on the same images (bicubic upsampling's PSNR), or ``None``."""
        return None

    def cell(self, value: float) -> str:
        """A measure as a table shows it."""
        raise NotImplementedError

    def model_kwargs(self, cfg, info) -> dict:
        """What a model of this task is built with beyond its name, width, input channels and
        rounding, from a run configuration ``cfg`` and its data set's metadata ``info``."""
        return {}

    def plotted(self, value: float) -> float:
        return value


TASKS: Registry[Task] = Registry("task")


def register_task(cls: type[Task]) -> type[Task]:
    """Register a task class under its ``name``; a name is registered once."""
    TASKS.add(cls.name, cls())
    return cls


def get_task(name: str) -> Task:
    return TASKS.get(name)


def list_tasks() -> list[str]:
    return TASKS.names()


def model_arguments(cfg, info) -> dict[str, Any]:
    """The registry arguments of a run's model (``create_model(**model_arguments(cfg, info))``): its
    name, wide factor and rounding from the run configuration ``cfg``, its input channels from the data
    set's metadata ``info``, and what its task adds (a classifier's classes, a super-resolution model's
    scale). The trainer, the checks before a study starts and deploy's model arguments agree with it."""
    args = {
        "name": cfg.model.name,
        "wide_factor": cfg.training.wide_factor,
        "in_chans": info.input_size[0],
        "rounding": cfg.model.rounding,
    }
    args.update(get_task(cfg.task).model_kwargs(cfg, info))
    return args
