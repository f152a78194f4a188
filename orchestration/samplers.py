"""Optuna samplers that Ray Tune can save and restore whatever the Optuna release.

Tune pickles its searcher (with the Optuna study and its sampler) when the Tuner is created and at every
experiment checkpoint. Optuna 5.1's ``NSGAIISampler`` holds a ``threading.Lock``, which does not pickle,
so the search died in ``tune.Tuner(...)``. A :class:`RestorableSampler` is built from a small picklable
description (:class:`SamplerSpec`) and delegates every call to the Optuna sampler built from it; on
pickling it keeps the description, the number of trials it has seen, and the sampler's own state when
that pickles once locks are set aside (the random state included, so a resumed search draws what an
uninterrupted one would). Where a release adds state that does not pickle, it rebuilds the sampler from
its description, reseeded by the number of trials seen: the search still continues from the study's
trials, which Tune restores beside it.
"""

from __future__ import annotations

import pickle
import threading
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.samplers import BaseSampler

KINDS = ("tpe", "nsga2")
_RLOCK_TYPE = type(threading.RLock())
_LOCK_TYPES = (type(threading.Lock()), _RLOCK_TYPE)
_LOCK_MARK = "__paradis_lock__"


@dataclass(frozen=True)
class SamplerSpec:
    """What builds a sampler: its kind, seed and (NSGA-II) population size."""

    kind: str = "tpe"
    seed: int | None = None
    population_size: int | None = None

    def build(self, seed_offset: int = 0) -> BaseSampler:
        if self.kind not in KINDS:
            raise ValueError(f"unknown sampler {self.kind!r}; known: {', '.join(KINDS)}")
        seed = None if self.seed is None else self.seed + seed_offset
        if self.kind == "nsga2":
            extra = {} if self.population_size is None else {"population_size": self.population_size}
            return optuna.samplers.NSGAIISampler(seed=seed, **extra)
        return optuna.samplers.TPESampler(seed=seed)


def _without_locks(obj: Any) -> dict[str, Any] | None:
    """The sampler's attributes with each lock replaced by a mark, or ``None`` where they still do not
    pickle."""
    state = {k: (_LOCK_MARK if isinstance(v, _LOCK_TYPES) else v) for k, v in vars(obj).items()}
    try:
        pickle.dumps(state)
    except Exception:
        return None
    return state


def _with_locks(state: dict[str, Any], template: BaseSampler) -> dict[str, Any]:
    """``state`` with every mark replaced by a fresh lock of the kind ``template`` holds there."""
    out = dict(state)
    for k, v in out.items():
        if isinstance(v, str) and v == _LOCK_MARK:
            out[k] = threading.RLock() if isinstance(getattr(template, k, None), _RLOCK_TYPE) else threading.Lock()
    return out


class RestorableSampler(BaseSampler):
    """An Optuna sampler that pickles as its description and state (see the module's text)."""

    def __init__(self, spec: SamplerSpec):
        self.spec = spec
        self.trials_seen = 0
        self.restored_from = "new"  # "state" or "description" once unpickled (tests and the log read it)
        self._sampler = spec.build()

    # -- pickling ------------------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "trials_seen": self.trials_seen,
            "sampler_state": _without_locks(self._sampler),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.spec = state["spec"]
        self.trials_seen = state["trials_seen"]
        inner = state.get("sampler_state")
        if inner is not None:
            self._sampler = self.spec.build()
            self._sampler.__dict__.update(_with_locks(inner, self._sampler))
            self.restored_from = "state"
        else:
            self._sampler = self.spec.build(seed_offset=self.trials_seen)
            self.restored_from = "description"

    # -- delegation ----------------------------------------------------------------------------------------
    def __str__(self) -> str:
        return f"Restorable{self._sampler.__class__.__name__}"

    def infer_relative_search_space(self, study, trial):
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._sampler.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.trials_seen += 1
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()


def picklable_check(searcher: Any) -> str | None:
    """``None`` when Tune can save ``searcher``; else one line naming the Optuna release and the error."""
    try:
        pickle.dumps(searcher)
    except Exception as err:
        return (
            f"the Optuna search cannot be saved by Ray Tune with optuna {optuna.__version__} "
            f"({type(err).__name__}: {err}); install the tested versions: bash scripts/setup.sh"
        )
    return None


__all__ = ["KINDS", "RestorableSampler", "SamplerSpec", "picklable_check"]
