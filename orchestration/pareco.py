"""PareCO's multi-objective parts on Optuna: the training-time proposer and the searches of a trained
network (TwoStage's front search, the distributable search under a per-device budget). The front
arithmetic is :mod:`orchestration.pareto`.

The training step itself stays in :mod:`paradis.methods`; it receives :class:`OptunaProposer`
through ``run_training(..., proposer=...)``, so that ``paradis`` never imports Optuna.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from orchestration.pareto import dominates
from paradis.methods import StageSpace, get_method
from paradis.models.registry import model_info
from paradis.switch import Switch, parse_switch

optuna.logging.set_verbosity(optuna.logging.WARNING)

SAMPLERS = ("nsga2", "tpe")


def make_sampler(kind: str, seed: int, *, population_size: int = 16):
    """NSGA-II or multi-objective TPE, seeded; ``population_size`` is NSGA-II's generation and TPE's
    number of random start-up trials."""
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=population_size, multivariate=True)
    raise ValueError(f"unknown sampler {kind!r}; known: {', '.join(SAMPLERS)}")


def _suggest(trial: optuna.trial.BaseTrial, space: StageSpace) -> Switch:
    return space.switch([trial.suggest_categorical(name, list(space.widths)) for name in space.names])


def _distributions(space: StageSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    return {name: optuna.distributions.CategoricalDistribution(list(space.widths)) for name in space.names}


# --- the training-time proposer ----------------------------------------------------------------------
class OptunaProposer:
    """PareCO's proposer over (training loss, multiply-adds), both minimized, on Optuna ask/tell.

    Each proposal is an asked trial. The losses the training step measures are held back and told to
    the study at :meth:`refresh` (every tau iterations), so the sampler's picture of the front is
    refreshed at that rhythm; the sampler (NSGA-II by default) then breeds new configurations from the
    non-dominated ones, i.e. it targets points along the current front. The history of observations
    is the proposer's state: a checkpoint restores the study by re-adding it.
    """

    def __init__(self, space: StageSpace, *, sampler: str = "nsga2", seed: int = 0, population_size: int = 16):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
        self.space = space
        self.sampler_kind, self.seed, self.population_size = sampler, seed, population_size
        self.study = self._new_study()
        self.history: list[tuple[str, float, float]] = []  # (switch, loss, cost), in order observed
        self._pending: dict[Switch, list[optuna.trial.Trial]] = {}  # asked, not yet observed
        self._waiting: list[tuple[optuna.trial.Trial, float, float]] = []  # observed, told at refresh
        self._told = 0  # history entries already told to the study

    def _new_study(self) -> optuna.Study:
        sampler = make_sampler(self.sampler_kind, self.seed, population_size=self.population_size)
        return optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)

    def propose(self, n: int) -> list[Switch]:
        out = []
        for _ in range(n):
            trial = self.study.ask()
            s = _suggest(trial, self.space)
            self._pending.setdefault(s, []).append(trial)
            out.append(s)
        return out

    def observe(self, switch: Switch, loss: float, cost: float) -> None:
        self.history.append((str(switch), float(loss), float(cost)))
        self._waiting.extend((t, float(loss), float(cost)) for t in self._pending.pop(switch, []))

    def refresh(self) -> None:
        for trial, loss, cost in self._waiting:
            self.study.tell(trial, [loss, cost])
        self._waiting = []
        self._told = len(self.history)

    def state_dict(self) -> dict:
        return {"history": [list(h) for h in self.history], "told": self._told}

    def load_state_dict(self, state: dict) -> None:
        """A fresh study holding the told part of the history as completed trials."""
        self.history = [(str(s), float(loss), float(c)) for s, loss, c in state["history"]]
        self._told = int(state.get("told", len(self.history)))
        self.study = self._new_study()
        self._pending, self._waiting = {}, []
        dists = _distributions(self.space)
        for s, loss, cost in self.history[: self._told]:
            params = dict(zip(self.space.names, self.space.values(parse_switch(s))))
            self.study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, values=[loss, cost]))

    def front_configurations(self, count: int, *, last: int | None = None) -> list[Switch]:
        """Up to ``count`` distinct configurations of the history, best non-domination layers first
        (layer by layer over (loss, cost), ties by cost); ``last`` keeps only the latest observations
        (the losses of early iterations belong to weights long gone)."""
        entries = self.history[-last:] if last else list(self.history)
        best: dict[str, tuple[float, float]] = {}
        for s, loss, cost in entries:  # a configuration seen several times keeps its latest loss
            best[s] = (loss, cost)
        remaining = [(s, loss, cost) for s, (loss, cost) in best.items()]
        chosen: list[Switch] = []
        while remaining and len(chosen) < count:
            layer = [p for p in remaining if not any(dominates(q[1:], p[1:]) for q in remaining)]
            for s, _, _ in sorted(layer, key=lambda p: p[2]):
                if len(chosen) < count:
                    chosen.append(parse_switch(s))
            remaining = [p for p in remaining if p not in layer]
        return chosen


def proposer_for(cfg) -> OptunaProposer | None:
    """The proposer a run trains with, when its method needs one (``training.pareco.proposer``,
    ``proposer_population``, ``proposer_seed``); ``None`` otherwise."""
    if not get_method(cfg.training.method).needs_proposer:
        return None
    p = cfg.training.pareco
    space = StageSpace.from_config(cfg.training, model_info(cfg.model.name).num_stages)
    return OptunaProposer(space, sampler=p.proposer, seed=p.proposer_seed, population_size=p.proposer_population)


# --- searches of a trained network -------------------------------------------------------------------
def front_search(
    space: StageSpace,
    evaluate: Callable[[Switch], float],
    cost: Callable[[Switch], float],
    *,
    trials: int,
    sampler: str = "nsga2",
    seed: int = 0,
    population_size: int = 8,
) -> list[tuple[Switch, float, float]]:
    """TwoStage's second stage: a multi-objective study of (validation accuracy, cost) over the stage
    widths; returns every distinct configuration evaluated as ``(switch, accuracy, cost)``."""
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=make_sampler(sampler, seed, population_size=population_size)
    )
    seen: dict[Switch, tuple[float, float]] = {}
    for _ in range(trials):
        trial = study.ask()
        s = _suggest(trial, space)
        if s not in seen:
            seen[s] = (evaluate(s), cost(s))
        study.tell(trial, list(seen[s]))
    return [(s, acc, c) for s, (acc, c) in seen.items()]


def constrained_search(
    space: StageSpace,
    evaluate: Callable[[Switch], float],
    device_cost: Callable[[Switch], float],
    budget: float,
    *,
    trials: int,
    seed: int = 0,
    startup: int = 8,
) -> tuple[Switch | None, float, list[tuple[Switch, float, float]]]:
    """The distributable search: the per-stage widths of a ``space.devices``-device switch with the
    best validation accuracy whose busiest device costs at most ``budget`` multiply-adds (TPE with
    Optuna's constraint handling; configurations over budget are never evaluated). Returns the best
    feasible switch (``None`` if none was found), its accuracy and every feasible evaluation."""
    # Optuna 5: constraints set on the trial (feasible when <= 0) guide the sampler.
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    seen: dict[Switch, float] = {}
    for _ in range(trials):
        trial = study.ask()
        s = _suggest(trial, space)
        c = device_cost(s)
        trial.set_constraint("per_device_macs_over_budget", c - budget)
        if c > budget:
            study.tell(trial, 0.0)
            continue
        if s not in seen:
            seen[s] = evaluate(s)
        study.tell(trial, seen[s])
    if not seen:
        return None, 0.0, []
    best = max(seen, key=lambda s: (seen[s], -device_cost(s)))
    return best, seen[best], [(s, a, device_cost(s)) for s, a in seen.items()]
