"""PareCO on Optuna: the proposer learns from its history, the fronts' arithmetic, the searches, and the
pareco and twostage methods in the general training step."""

import pytest

from orchestration.pareco import OptunaProposer, constrained_search, front_search
from orchestration.pareto import hypervolume, non_dominated
from orchestration.run_study import main as run_study_main
from paradis.config import RunConfig, TrainingConfig
from paradis.engine import load_checkpoint, run_training
from paradis.methods import RandomProposer, StageSpace, make_planner
from paradis.methods.step import StepResult
from paradis.switch import Switch, parse_switch
from tests.orchestration.conftest import ROOT

SPACE = StageSpace(num_stages=4, devices=1, widths=(0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0))


def width_sum(s: Switch) -> float:
    return sum(sum(w) for w in s.stage_widths)


def test_proposer_learns_from_its_history():
    """Losses that fall with width and costs that rise with it: the front spans the widths, and after
    feedback the proposer breeds from it. Losses that rise with width: it moves to the narrow end."""
    fed, blind = OptunaProposer(SPACE, seed=3, population_size=8), OptunaProposer(SPACE, seed=3, population_size=8)
    first, last = [], []
    for it in range(40):
        proposals, unfed = fed.propose(2), blind.propose(2)
        if it < 4:
            assert proposals == unfed  # same seed, no feedback yet: the same proposals
        for s in proposals:
            fed.observe(s, loss=width_sum(s), cost=width_sum(s))  # narrow is better in both objectives
        if (it + 1) % 4 == 0:
            fed.refresh()
        (first if it < 4 else last if it >= 30 else []).extend(proposals)
    assert len(fed.study.trials) == 80 and len(blind.study.trials) == 80
    assert sum(t.state.name == "COMPLETE" for t in fed.study.trials) == 80
    assert all(t.state.name == "RUNNING" for t in blind.study.trials)  # told nothing
    mean = lambda ss: sum(width_sum(s) for s in ss) / len(ss)  # noqa: E731
    assert mean(last) < mean(first) - 0.5, (mean(first), mean(last))
    # the proposals after feedback differ from those of the same proposer without it
    assert fed.propose(6) != blind.propose(6)


def test_proposer_tells_only_at_refresh_and_round_trips_its_state():
    p = OptunaProposer(SPACE, seed=0, population_size=4)
    proposals = p.propose(3)
    for k, s in enumerate(proposals):
        p.observe(s, loss=1.0 + k, cost=float(k))
    assert sum(t.state.name == "COMPLETE" for t in p.study.trials) == 0  # held back until refresh
    p.refresh()
    assert sum(t.state.name == "COMPLETE" for t in p.study.trials) == 3
    q = OptunaProposer(SPACE, seed=0, population_size=4)
    q.load_state_dict(p.state_dict())
    assert q.history == p.history
    assert [t.values for t in q.study.trials] == [[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]]
    assert q.front_configurations(3) == p.front_configurations(3)


def test_front_configurations_rank_by_non_domination():
    p = OptunaProposer(SPACE)
    a, b, c, d = (parse_switch(t) for t in ("[0.25]", "[0.5/0.25/0.25/0.25]", "[0.5]", "[1.0]"))
    p.observe(a, loss=2.0, cost=1.0)
    p.observe(b, loss=1.9, cost=2.0)  # on the front
    p.observe(c, loss=2.5, cost=3.0)  # dominated by a and b
    p.observe(d, loss=1.0, cost=10.0)
    assert p.front_configurations(3) == [a, b, d]
    assert p.front_configurations(4) == [a, b, d, c]
    assert p.front_configurations(2, last=2) == [c, d]


def test_hypervolume_of_a_constructed_front():
    front = [(0.2, 0.8), (0.5, 0.9), (1.0, 0.95)]
    ref = (1.0, 0.5)
    # (0.5 - 0.2) x 0.3 + (1.0 - 0.5) x 0.4; the point at the reference cost adds nothing
    assert hypervolume(front, ref) == pytest.approx(0.29)
    # dominated points and points beyond the reference change nothing
    assert hypervolume([*front, (0.6, 0.85), (1.5, 0.99), (0.1, 0.4)], ref) == pytest.approx(0.29)
    assert hypervolume([(0.0, 1.0)], (1.0, 0.0)) == pytest.approx(1.0)
    assert hypervolume([], ref) == 0.0
    # a front that dominates another has the larger hypervolume
    assert hypervolume([(0.2, 0.82), (0.5, 0.9)], ref) > hypervolume([(0.2, 0.8), (0.5, 0.9)], ref)
    assert non_dominated([(0.2, 0.8), (0.6, 0.85), (0.5, 0.9), (0.5, 0.9)]) == [0, 2, 3]


def test_front_search_and_constrained_search_respect_their_objectives():
    evaluations = []

    def evaluate(s):
        evaluations.append(s)
        return width_sum(s) / 4  # wider is more accurate

    found = front_search(SPACE, evaluate, width_sum, trials=12, seed=0, population_size=4)
    assert len(found) == len(set(evaluations)) == len({s for s, _, _ in found})  # each evaluated once
    two = StageSpace(num_stages=3, devices=2, widths=(0.125, 0.25, 0.375, 0.5))

    def busiest(s):
        return max(sum(w) for w in s.stage_widths)

    best, acc, feasible = constrained_search(
        two, lambda s: width_sum(s) / 6, busiest, budget=1.0, trials=30, seed=0, startup=8
    )
    assert best is not None and len(best) == 2 and busiest(best) <= 1.0
    assert all(busiest(s) <= 1.0 for s, _, _ in feasible)
    assert acc == max(a for _, a, _ in feasible)


def test_planner_sandwich_and_feedback_every_tau():
    cfg = TrainingConfig(method="pareco", pareco={"num_sampled": 2, "refresh_every": 3})
    proposer = OptunaProposer(StageSpace.from_config(cfg, 4), seed=0, population_size=4)
    costs = []
    planner = make_planner(cfg, num_stages=4, proposer=proposer, cost=lambda s: costs.append(s) or width_sum(s))
    assert planner.trained_switches == [parse_switch("[1.0]"), parse_switch("[0.25]")]
    for it in range(3):
        plan = planner.next_plan()
        assert plan.switches[:2] == [parse_switch("[1.0]"), parse_switch("[0.25]")]
        assert plan.teacher == parse_switch("[1.0]") and all(t.target == "teacher" for t in plan.tasks[1:])
        sampled = plan.switches[2:]
        assert all(not t.track_bn for t in plan.tasks[2:])  # sampled: BN calibrated after training
        planner.observe(StepResult(losses={s: 1.0 + it for s in plan.switches}))
        told = sum(t.state.name == "COMPLETE" for t in proposer.study.trials)
        assert told == (6 if it == 2 else 0)
    assert len(proposer.history) >= len(sampled)
    with pytest.raises(ValueError, match="needs a multi-objective proposer"):
        make_planner(cfg, num_stages=4, cost=width_sum)
    two = make_planner(TrainingConfig(method="twostage"), num_stages=4, cost=width_sum)
    assert isinstance(two.proposer, RandomProposer)


def test_pareco_run_trains_resumes_and_keeps_the_proposer_history(tmp_path):
    cfg = RunConfig.model_validate(
        {
            "model": {"name": "mobilenet_v1_small"},
            "data": {"name": "synthetic", "synthetic_train": 128, "synthetic_test": 64},
            "training": {
                "method": "pareco",
                "epochs": 2,
                "batch_size": 32,
                "pareco": {"num_sampled": 2, "refresh_every": 2},
            },
            "evaluation": {"calibration_batches": 1, "every": 0},
            "device": "cpu",
        }
    )
    space = StageSpace.from_config(cfg.training, 4)
    proposer = OptunaProposer(space, seed=0, population_size=4)
    result = run_training(cfg, checkpoint_dir=tmp_path, proposer=proposer)
    assert [r.switch for r in result.table] == ["[1.0]", "[0.25]"]
    assert len(proposer.history) >= 8 * 1  # 8 steps, at least one new configuration each
    assert all(c > 0 for _, _, c in proposer.history)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert len(state["planner"]["proposer"]["history"]) == len(proposer.history)
    again = OptunaProposer(space, seed=0, population_size=4)
    run_training(cfg, checkpoint_dir=tmp_path, proposer=again)  # nothing left to train: restores only
    assert again.history == proposer.history


def test_pareco_options_are_checked():
    with pytest.raises(ValueError, match=r"2 device\(s\) of max_width 1 span more than the wide factor 1.2"):
        TrainingConfig(method="pareco", pareco={"devices": 2, "max_width": 1.0})
    with pytest.raises(ValueError, match=r"min_width 0\.5 is larger than max_width 0\.25"):
        TrainingConfig(method="twostage", pareco={"min_width": 0.5, "max_width": 0.25})
    assert TrainingConfig(method="pareco").pareco.width_grid() == [0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    space = StageSpace.from_config(TrainingConfig(method="pareco", pareco={"devices": 2, "max_width": 0.5}), 3)
    assert space.largest == parse_switch("[0.5, 0.5]") and space.smallest == parse_switch("[0.25, 0.25]")
    s = space.switch([0.25, 0.5, 0.25, 0.5, 0.5, 0.5])
    assert s == parse_switch("[0.25/0.5/0.25, 0.5]") and space.values(s) == [0.25, 0.5, 0.25, 0.5, 0.5, 0.5]


def test_pareco_study_spec_dry_run_and_errors(tmp_path, capsys):
    for spec in ("studies/pareco.yaml", "studies/paper/pareco_imagenet.yaml"):
        assert run_study_main([str(ROOT / spec), "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "pareco: PareCO IPKD (front)" in out and "twostage: TwoStage IPKD (front)" in out
        assert "slimmable: US IPKD (front)" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "studies/pareco.yaml").read_text().replace("num_sampled: 2,", "num_sampled: -1,", 1))
    assert run_study_main([str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training.pareco.num_sampled" in err[0], err
    bad.write_text((ROOT / "studies/pareco.yaml").read_text().replace("variant: pareco-2dev", "variant: nope"))
    assert run_study_main([str(bad), "--dry-run"]) == 2
    assert "distributable.variant: 'nope' is not one of search.variants" in capsys.readouterr().err
