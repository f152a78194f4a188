"""Model registry: what each model is (:class:`ModelInfo`, readable without torch) beside how to build it.

Like timm's pretrained configurations and torchvision's weight metadata, every entry states its task,
input channels and size, number of stages and default wide factor, so that a study is checked, a
deployment describes its inputs and a proposer sizes its search space without building a model.
The built-in families are listed here with the dotted path of their builder, imported on first use;
``register_model`` adds a model from user code and, as torchvision does, refuses a name twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, TypeVar

from paradis.registry import Registry

CLASSIFICATION = "classification"
SUPER_RESOLUTION = "super-resolution"


@dataclass(frozen=True)
class ModelInfo:
    """Metadata of a registered model. ``num_classes`` is the default number of classes of a
    classifier and ``None`` for an image-to-image model (its output has the input's channels)."""

    name: str
    builder: str | Callable[..., Any] = field(repr=False)  # "module:function", or the function itself
    task: str = CLASSIFICATION
    in_chans: int = 3
    input_size: tuple[int, int, int] = (3, 224, 224)  # C, H, W of the inputs it was designed for
    num_stages: int = 1  # stages a per-stage switch gives widths for
    default_wide_factor: float = 1.2
    num_classes: int | None = 1000
    description: str = ""

    def build_fn(self) -> Callable[..., Any]:
        if callable(self.builder):
            return self.builder
        module, name = self.builder.split(":")
        return getattr(import_module(module), name)


_MN, _RN, _WD = "paradis.models.mobilenet_v1", "paradis.models.resnet", "paradis.models.wdsr"
MODELS: Registry[ModelInfo] = Registry("model")
for _info in (
    ModelInfo("mobilenet_v1", f"{_MN}:mobilenet_v1", num_stages=5, description="MobileNet v1, 224x224 ImageNet"),
    ModelInfo(
        "mobilenet_v1_small",
        f"{_MN}:mobilenet_v1_small",
        in_chans=1,
        input_size=(1, 28, 28),
        num_stages=4,
        num_classes=10,
        description="MobileNet v1 for 28x28 and 32x32 inputs (Fashion-MNIST, CIFAR)",
    ),
    ModelInfo("resnet50", f"{_RN}:resnet50", num_stages=4, description="ResNet-50 (torchvision's at [1.0])"),
    ModelInfo("resnet18", f"{_RN}:resnet18", num_stages=4, description="ResNet-18 (torchvision's at [1.0])"),
    ModelInfo(
        "resnet_small",
        f"{_RN}:resnet_small",
        in_chans=1,
        input_size=(1, 28, 28),
        num_stages=3,
        num_classes=10,
        description="CIFAR-style bottleneck ResNet for 28x28 and 32x32 inputs",
    ),
    ModelInfo(
        "wdsr",
        f"{_WD}:wdsr",
        task=SUPER_RESOLUTION,
        input_size=(3, 48, 48),
        default_wide_factor=1.0,
        num_classes=None,
        description="WDSR x2 (64 channels, 8 blocks), the paper's appendix D",
    ),
    ModelInfo(
        "wdsr_small",
        f"{_WD}:wdsr_small",
        task=SUPER_RESOLUTION,
        input_size=(3, 32, 32),
        default_wide_factor=1.0,
        num_classes=None,
        description="WDSR x2 reduced for CPU runs (32 channels, 4 blocks)",
    ),
):
    MODELS.add(_info.name, _info)
F = TypeVar("F", bound=Callable[..., Any])


def register_model(fn: F | None = None, /, **metadata: Any):
    """Register a model builder under its function name, as ``@register_model`` or with metadata,
    ``@register_model(task="super-resolution", input_size=(3, 48, 48), num_classes=None)``; a second
    registration of a name is an error."""

    def add(f: F) -> F:
        name = metadata.pop("name", f.__name__)
        MODELS.add(name, ModelInfo(name, f, **metadata))
        return f

    return add(fn) if fn is not None else add


def list_models(task: str | None = None) -> list[str]:
    return MODELS.names(lambda info: task is None or info.task == task)


def model_info(name: str) -> ModelInfo:
    """The metadata of a registered model; an unknown name lists the known ones."""
    return MODELS.get(name)


def create_model(
    name: str, *, num_classes: int | None = None, wide_factor: float | None = None, rounding: str = "paradis", **kwargs
):
    """Build a registered model: ``create_model("mobilenet_v1", num_classes=1000)``. ``num_classes``
    and ``wide_factor`` default to the entry's; an image-to-image model takes no ``num_classes``;
    ``rounding="us-nets"`` turns single widths into channels as US-Nets does."""
    info = model_info(name)
    if info.num_classes is None:
        if num_classes is not None:
            raise ValueError(f"model {name!r} is an image-to-image ({info.task}) model: it takes no num_classes")
    else:
        num_classes = info.num_classes if num_classes is None else num_classes
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes {num_classes!r} must be a positive integer")
        kwargs["num_classes"] = num_classes
    kwargs["wide_factor"] = info.default_wide_factor if wide_factor is None else wide_factor
    model = info.build_fn()(**kwargs)
    return model.set_rounding(rounding) if rounding != "paradis" else model
