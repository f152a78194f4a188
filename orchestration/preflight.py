"""Checks that need more than the spec's own values, run once before Ray starts: the storage path can
be written, every trial's switches give whole channels in its model, and an Optuna searcher can be
saved by Tune."""

from __future__ import annotations

import os

from paradis.config import ConfigError


def check_storage(spec, source: str) -> None:
    """``storage_path`` is a folder this user can write, or can be created as one."""
    path = spec.resolved_storage_path()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{source}: storage_path: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{source}: storage_path: {probe} is not writable by this user")


def _trial_configs(spec) -> list[tuple[str, object]]:
    from orchestration.spec import _describe, grid_points, run_config_for

    if spec.search.kind == "grid":
        return [(_describe(p), run_config_for(spec, p)) for p in grid_points(spec)]
    out = [("(base)", run_config_for(spec, {}))]
    for key, p in spec.search.space.items():
        out += [(f"search.space.{key}={v!r}", run_config_for(spec, {key: v})) for v in p.values()]
    return out


def check_switches(spec, source: str) -> None:
    """Every trial's trained and evaluated switches fit its model (whole channels in every layer),
    checked on models built on the meta device (no memory, no initialisation cost)."""
    import torch

    from paradis.data.registry import dataset_info
    from paradis.models.registry import create_model
    from paradis.tasks import model_arguments

    models: dict[tuple, object] = {}
    for desc, cfg in _trial_configs(spec):
        args = model_arguments(cfg, dataset_info(cfg.data.name))
        key = tuple(sorted(args.items()))
        if key not in models:
            with torch.device("meta"):
                models[key] = create_model(**args)
        named = [(f"training.switches[{i}]", s) for i, s in enumerate(cfg.training.switches)]
        named += [(f"evaluation.switches[{i}]", s) for i, s in enumerate(cfg.evaluation.switches or [])]
        if cfg.evaluation.target:
            named.append(("evaluation.target", cfg.evaluation.target))
        for where, s in named:
            try:
                models[key].resolve(s)
            except ValueError as err:
                raise ConfigError(f"{source}: trial {desc}: {where}: {err}") from None


def check_search(spec, source: str) -> None:
    """An Optuna search's searcher can be saved by Tune (it pickles it when the Tuner is created and at
    every experiment checkpoint): a release that breaks that is one line here, not a traceback after
    Ray started."""
    if spec.search.kind != "optuna":
        return
    from orchestration.samplers import picklable_check
    from orchestration.search import SEARCHES

    _, searcher = SEARCHES["optuna"].setup(spec)
    problem = picklable_check(searcher)
    if problem:
        raise ConfigError(f"{source}: search: {problem}")


__all__ = ["check_search", "check_storage", "check_switches"]
