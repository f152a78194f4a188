"""Samplers that Tune can save whatever the Optuna release: pickled mid-search, they go on as if never
pickled (state kept) or at least go on (rebuilt from their description)."""

import pickle
import threading

import optuna
import pytest

from orchestration.samplers import RestorableSampler, SamplerSpec, picklable_check

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    c = trial.suggest_categorical("c", ["a", "b", "c"])
    return x + (c == "b"), (1 - x) ** 2


def _run(study, n):
    for _ in range(n):
        trial = study.ask()
        study.tell(trial, _objective(trial))


def _params(study):
    return [(t.params["x"], t.params["c"]) for t in study.trials]


@pytest.mark.parametrize("kind", ["nsga2", "tpe"])
def test_a_pickled_search_continues_exactly_as_an_uninterrupted_one(kind):
    spec = SamplerSpec(kind, seed=3, population_size=4 if kind == "nsga2" else None)
    whole = optuna.create_study(directions=["maximize", "minimize"], sampler=RestorableSampler(spec))
    _run(whole, 14)

    first = optuna.create_study(directions=["maximize", "minimize"], sampler=RestorableSampler(spec))
    _run(first, 6)
    resumed = pickle.loads(pickle.dumps(first))  # what Tune does with its searcher's study
    assert resumed.sampler.restored_from == "state" and resumed.sampler.trials_seen == 6
    _run(resumed, 8)
    assert _params(resumed) == _params(whole)


def test_a_sampler_whose_state_does_not_pickle_is_rebuilt_from_its_description():
    spec = SamplerSpec("nsga2", seed=0, population_size=4)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=RestorableSampler(spec))
    _run(study, 5)
    study.sampler._sampler.unpicklable = lambda: None  # as a future release might hold
    resumed = pickle.loads(pickle.dumps(study))
    assert resumed.sampler.restored_from == "description" and resumed.sampler.trials_seen == 5
    _run(resumed, 6)  # the search goes on from the study's trials, not from its first draws again
    assert len(resumed.trials) == 11 and _params(resumed)[5:] != _params(resumed)[:6]


def test_locks_come_back_as_locks():
    sampler = pickle.loads(pickle.dumps(RestorableSampler(SamplerSpec("nsga2", seed=1))))
    locks = [v for v in vars(sampler._sampler).values() if isinstance(v, type(threading.Lock()))]
    assert all(lock.acquire(blocking=False) and (lock.release() is None) for lock in locks)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown sampler 'cmaes'; known: tpe, nsga2"):
        SamplerSpec("cmaes").build()


class _Searcher:
    def __init__(self):
        self.lock = threading.Lock()


def test_picklable_check_names_the_optuna_release():
    problem = picklable_check(_Searcher())
    assert problem.startswith(f"the Optuna search cannot be saved by Ray Tune with optuna {optuna.__version__} (")
    assert "_thread.lock" in problem
    assert picklable_check(RestorableSampler(SamplerSpec("nsga2"))) is None


def test_a_searcher_tune_cannot_save_is_one_line_before_ray(monkeypatch):
    import orchestration.search
    from orchestration.preflight import check_search, load_study
    from paradis.config import ConfigError

    spec = load_study("studies/search_multiobjective.yaml", smoke=True)
    check_search(spec, "mo.yaml")  # the sampler as built: saved fine

    def unsavable(spec):
        sampler = optuna.samplers.NSGAIISampler(seed=0)
        sampler.some_lock = threading.Lock()  # what optuna 5.1 added to NSGA-II
        return sampler

    monkeypatch.setattr(orchestration.search, "_sampler", unsavable)
    with pytest.raises(ConfigError) as err:
        check_search(spec, "mo.yaml")
    assert str(err.value).startswith("mo.yaml: search: the Optuna search cannot be saved by Ray Tune with optuna ")
    assert "\n" not in str(err.value)
