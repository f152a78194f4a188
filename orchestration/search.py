"""Search algorithms of a study, one registered entry each: the Tune parameter space and searcher for
``search.kind``, and the first suggestions a dry run shows. A new algorithm is one function pair
here and its registration, as Ray Tune adds a searcher without touching the Tuner."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestration.trials import grid_axes, trial_name
from paradis.registry import Registry
from paradis.util import first_line


class OptunaSpace:
    """Define-by-run search space for OptunaSearch (a class, so that Tune can pickle the searcher)."""

    def __init__(self, space: dict[str, Any]):
        self.space = {k: v.model_dump(exclude_none=True) for k, v in space.items()}

    def __call__(self, trial) -> None:
        for key, p in self.space.items():
            if "choice" in p or "grid" in p:
                trial.suggest_categorical(key, p.get("choice") or p.get("grid"))
            elif "uniform" in p:
                trial.suggest_float(key, *p["uniform"])
            elif "loguniform" in p:
                trial.suggest_float(key, *p["loguniform"], log=True)
            else:
                trial.suggest_int(key, *p["int"])


@dataclass(frozen=True)
class SearchKind:
    name: str
    setup: Callable[..., tuple[dict[str, Any], Any]]  # spec, storage=, study_name= -> (param_space, search_alg)
    describe: Callable[[Any, int], list[str]]  # spec, n -> dry-run lines


def _grid_setup(spec, **_storage):
    from ray import tune

    # the axes the dry run and the checks cross (variants, grid values, repeats: each seed a trial of its own)
    return {key: tune.grid_search(values) for key, values in grid_axes(spec).items()}, None


def _grid_describe(spec, n: int) -> list[str]:
    return []


def _sampler(spec):
    """The spec's sampler, built so that Tune can save it whatever the Optuna release
    (:mod:`orchestration.samplers`)."""
    from orchestration.samplers import RestorableSampler, SamplerSpec

    return RestorableSampler(SamplerSpec(spec.search.sampler, spec.search.seed))


def _optuna_setup(spec, **_storage):
    """OptunaSearch over the spec's space (its own in-memory study, restored by Tune on resume; the
    storage copy is :func:`optuna_recorder`'s)."""
    from ray.tune.search.optuna import OptunaSearch

    objectives = spec.search.objectives
    single = len(objectives) == 1
    searcher = OptunaSearch(
        OptunaSpace(spec.search.space),
        # a searcher with its own space ignores TuneConfig's metric: always give it the objectives
        metric=objectives[0].metric if single else [o.metric for o in objectives],
        mode=objectives[0].mode if single else [o.mode for o in objectives],
        sampler=_sampler(spec),
    )
    return {}, searcher


def _distributions(space: dict) -> dict:
    import optuna.distributions as d

    out = {}
    for key, p in space.items():
        p = p.model_dump(exclude_none=True)
        if "choice" in p or "grid" in p:
            out[key] = d.CategoricalDistribution(p.get("choice") or p.get("grid"))
        elif "uniform" in p:
            out[key] = d.FloatDistribution(*p["uniform"])
        elif "loguniform" in p:
            out[key] = d.FloatDistribution(*p["loguniform"], log=True)
        else:
            out[key] = d.IntDistribution(*p["int"])
    return out


def optuna_recorder(spec, storage: str, study_name: str):
    """A Tune callback that records every ended trial of an Optuna search in the Optuna study
    ``study_name`` of ``storage`` (once each, keyed by the Tune trial id, also across ``--resume``), so
    that ``optuna-dashboard`` and ``optuna.load_study`` open the search."""
    import optuna
    from ray import tune

    objectives = spec.search.objectives
    directions = ["maximize" if o.mode == "max" else "minimize" for o in objectives]
    distributions = _distributions(spec.search.space)

    class OptunaRecorder(tune.Callback):
        def _study(self):
            return optuna.create_study(
                storage=storage, study_name=study_name, directions=directions, load_if_exists=True
            )

        def _record(self, trial, failed: bool) -> None:
            study = self._study()
            if any(t.user_attrs.get("tune_trial_id") == trial.trial_id for t in study.get_trials(deepcopy=False)):
                return
            last = trial.last_result or {}
            values = [last.get(o.metric) for o in objectives]
            state = optuna.trial.TrialState.COMPLETE
            if failed or any(not isinstance(v, (int, float)) for v in values):
                state, values = optuna.trial.TrialState.FAIL, None
            params = {k: trial.config[k] for k in distributions if k in trial.config}
            study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions={k: distributions[k] for k in params},
                    values=values,
                    state=state,
                    user_attrs={"tune_trial_id": trial.trial_id},
                )
            )

        def _record_or_warn(self, trial, failed: bool) -> None:
            # the Optuna copy is for browsing: a storage that fails mid-study (gone, full, locked) must not
            # raise into Tune, which would end the study and throw away its trained trials
            try:
                self._record(trial, failed)
            except Exception as err:
                print(
                    f"[paradis] warning: trial {trial.trial_id} not recorded in the Optuna study {study_name}: "
                    f"{first_line(err, 200)} (the study goes on; MLflow keeps every trial)",
                    file=sys.stderr,
                )

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._record_or_warn(trial, failed=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._record_or_warn(trial, failed=True)

    return OptunaRecorder()


def optuna_storage(spec, tracking_uri: str) -> str | None:
    """The Optuna storage of an Optuna search: ``search.storage``, else ``PARADIS_OPTUNA_STORAGE``,
    else an sqlite file beside an sqlite MLflow store (``optuna.db``); ``None`` for a grid search."""
    import os

    if spec.search.kind != "optuna":
        return None
    if spec.search.storage or os.environ.get("PARADIS_OPTUNA_STORAGE"):
        return spec.search.storage or os.environ["PARADIS_OPTUNA_STORAGE"]
    if tracking_uri.startswith("sqlite:////"):
        return tracking_uri.rsplit("/", 1)[0] + "/optuna.db"
    return None


def first_suggestions(spec, n: int) -> list[dict[str, Any]]:
    """What the sampler suggests before any feedback (shown by ``--dry-run``)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize" if o.mode == "max" else "minimize" for o in spec.search.objectives]
    study = optuna.create_study(directions=directions, sampler=_sampler(spec))
    space = OptunaSpace(spec.search.space)
    out = []
    for _ in range(n):
        trial = study.ask()
        space(trial)
        out.append(dict(trial.params))
    return out


def _optuna_describe(spec, n: int) -> list[str]:
    s = spec.search
    objs = ", ".join(f"{o.mode} {o.metric}" for o in s.objectives)
    lines = [f"{s.samples} trial(s) suggested by Optuna ({s.sampler}, seed {s.seed}) to {objs}, over:"]
    lines += [f"  {key}: {p.kind} {p.values()}" for key, p in s.space.items()]
    lines.append("first suggestions (before any feedback):")
    for i, params in enumerate(first_suggestions(spec, min(s.samples, n))):
        lines.append(f"  trial {i}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    return lines


SEARCHES: Registry[SearchKind] = Registry("search kind")
for _kind in (SearchKind("grid", _grid_setup, _grid_describe), SearchKind("optuna", _optuna_setup, _optuna_describe)):
    SEARCHES.add(_kind.name, _kind)


def tune_trial_name(trial) -> str:
    return trial_name(trial.config, trial.trial_id)


def tune_trial_dirname(trial) -> str:
    """The trial's name as a folder name (searched values may hold spaces and brackets)."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", tune_trial_name(trial))[:120]


def tune_setup(spec, **storage):
    """``(param_space, TuneConfig)`` for the spec's search and scheduler."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    search, sched = spec.search, spec.scheduler
    objectives = search.objectives
    single = len(objectives) == 1
    asha_own_metric = sched.kind == "asha" and not (
        single and objectives[0].metric == sched.metric and objectives[0].mode == sched.mode
    )
    tune_metric = dict(metric=objectives[0].metric, mode=objectives[0].mode) if single and not asha_own_metric else {}
    scheduler = None
    if sched.kind == "asha":
        own = dict(metric=sched.metric, mode=sched.mode) if asha_own_metric else {}
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=spec.training.epochs,
            grace_period=sched.grace_period,
            reduction_factor=sched.reduction_factor,
            **own,
        )
    space, searcher = SEARCHES[search.kind].setup(spec, **storage)
    tune_config = tune.TuneConfig(
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=search.samples,
        time_budget_s=search.time_budget_s,
        max_concurrent_trials=spec.resources.max_concurrent_trials,
        trial_name_creator=tune_trial_name,
        trial_dirname_creator=tune_trial_dirname,
        # one-worker trials train in the trial process: reusing it saves a process start and the import
        # of torch per trial (benchmarks/orchestration_overhead.py)
        reuse_actors=spec.resources.workers_per_trial == 1,
        **tune_metric,
    )
    return space, tune_config
