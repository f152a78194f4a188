"""What a run is built from: its device, data splits, model, evaluation switches and cost model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from paradis.costs import count_macs, profile
from paradis.data.registry import dataset_info
from paradis.data.splits import Splits, holdout, subset, without_augmentation
from paradis.methods import FULL, get_method
from paradis.models import ParaDiSModel, create_model
from paradis.switch import Switch, parse_switch
from paradis.tasks import model_arguments


def select_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but CUDA is not available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_splits(cfg) -> Splits:
    """The registered data set of ``cfg.data``, loaded by its registry entry."""
    return dataset_info(cfg.data.name).load(cfg.data.root, cfg.data, cfg.training.seed)


@dataclass
class RunData:
    """The splits one run uses: training (with its augmentation), held-out validation (``None``
    without ``data.holdout``), test, and the fixed calibration images (training images, unaugmented)."""

    info: object
    train: object
    val: object | None
    test: object
    calibration: object


def prepare_data(cfg, splits: Splits) -> RunData:
    d, seed = cfg.data, cfg.training.seed
    val = None
    if d.holdout:
        train, val = holdout(splits.train, d.train_subset, d.holdout, seed)
    else:
        train = subset(splits.train, d.train_subset, seed)
    test = subset(splits.test, d.test_subset, seed)
    per_batch = cfg.evaluation.calibration_batch_size or cfg.training.batch_size
    calibration = without_augmentation(subset(train, cfg.evaluation.calibration_batches * per_batch, seed + 17))
    return RunData(splits.info, train, val, test, calibration)


def build_model(cfg, info) -> ParaDiSModel:
    """The run's model for data set ``info``; every trained switch must fit it (whole channels)."""
    model = create_model(**model_arguments(cfg, info))
    for i, s in enumerate(cfg.training.switches):
        try:
            model.resolve(s)
        except ValueError as err:
            raise ValueError(f"training.switches[{i}]: {err}") from None
    return model


def evaluation_switches(cfg, planner) -> tuple[list[Switch], Switch]:
    """The switches to evaluate (``evaluation.switches``, else the method's choice) and the target:
    ``evaluation.target``, else ``[1.0]`` if evaluated, else the first trained switch."""
    method = get_method(cfg.training.method)
    if cfg.evaluation.switches is not None:
        switches = [parse_switch(s) for s in cfg.evaluation.switches]
    else:
        switches = method.evaluated(cfg.training, planner)
    if cfg.evaluation.target is not None:
        target = parse_switch(cfg.evaluation.target)
    else:
        target = FULL if FULL in switches else cfg.training.parsed_switches()[0]
    if target not in switches:
        switches.append(target)
    return switches, target


def cost_of(cfg, model: ParaDiSModel, input_size) -> Callable[[Switch], float] | None:
    """A per-stage method's cost objective: multiply-adds in total (one device), else of the busiest
    device; ``None`` for methods that need none."""
    if not get_method(cfg.training.method).needs_cost:
        return None
    cache: dict[Switch, float] = {}
    per_device = cfg.training.pareco.devices > 1

    @torch.no_grad()
    def fused_macs(s: Switch) -> float:
        # One fused forward pass counts what the extracted sub-networks of profile() count together
        # (tests/test_costs.py), at a twentieth of the time; BN uses batch statistics and keeps none.
        device = next(model.parameters()).device
        x = torch.zeros(2, *input_size, device=device)
        was_training = model.training
        model.train()
        try:
            return count_macs(lambda: model(x, s, bn_update="none")) / 2
        finally:
            model.train(was_training)

    def cost(s: Switch) -> float:
        if s not in cache:
            cache[s] = float(profile(model, s, input_size).max_device_macs) if per_device else fused_macs(s)
        return cache[s]

    return cost
