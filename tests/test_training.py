import pytest
import torch
import torch.nn.functional as F

from paradis import create_model, parse_switch
from paradis.config import TrainingConfig
from paradis.methods import StepPlan, SwitchTask, describe_method, make_planner
from paradis.methods.step import train_step
from paradis.tasks.classification import soft_cross_entropy

S = parse_switch


def plan_of(**kw):
    return make_planner(TrainingConfig(**kw)).next_plan()


def describe(plan):
    return [(str(t.switch), t.target, t.feature_weight, t.track_bn) for t in plan.tasks]


def test_paradis_wide_ipkd_plan_is_algorithm_1():
    plan = plan_of(method="paradis", distillation="wide", beta=0.0)
    assert describe(plan) == [
        ("[1.2]", "labels", 0.0, True),
        ("[1.0]", "teacher", 0.0, True),
        ("[0.5, 0.5]", "teacher", 0.0, True),
        ("[4x0.25]", "teacher", 0.0, True),
    ]
    assert plan.teacher == S("1.2") and plan.feature_ref is None


def test_wide_ipkd_a_distils_the_full_features_into_the_other_switches():
    plan = plan_of(method="paradis", distillation="wide", beta=0.1)
    assert describe(plan)[1:] == [
        ("[1.0]", "teacher", 0.0, True),
        ("[0.5, 0.5]", "teacher", 0.1, True),
        ("[4x0.25]", "teacher", 0.1, True),
    ]
    assert plan.feature_ref == S("[1.0]")
    assert describe_method(TrainingConfig(beta=0.1)) == "ParaDiS Wide IPKD-A beta=0.1"


def test_ipkd_has_no_wide_model_and_no_distillation_trains_on_labels():
    plan = plan_of(method="paradis", distillation="ipkd")
    assert describe(plan)[0] == ("[1.0]", "labels", 0.0, True)
    assert S("1.2") not in plan.switches and plan.teacher == S("[1.0]")
    plan = plan_of(method="paradis", distillation="none")
    assert all(t.target == "labels" for t in plan.tasks) and plan.teacher is None
    assert S("1.2") not in plan.switches
    assert describe_method(TrainingConfig(distillation="none")) == "ParaDiS"
    assert describe_method(TrainingConfig(distillation="ipkd")) == "ParaDiS IPKD"


def test_individual_and_slimmable_plans():
    plan = plan_of(method="individual", switches=["[0.5, 0.5]"])
    assert describe(plan) == [("[0.5, 0.5]", "labels", 0.0, True)]
    plan = plan_of(method="slimmable", switches=["[1.0]", "[0.75]", "[0.5]", "[0.25]"], distillation="wide")
    assert plan.switches == [S(w) for w in ("1.2", "1.0", "0.75", "0.5", "0.25")]


def test_us_sandwich_rule_samples_grid_widths_without_tracking_their_statistics():
    planner = make_planner(TrainingConfig(method="us", us={"num_random": 2}))
    seen = set()
    for _ in range(20):
        plan = planner.next_plan()
        assert plan.switches[:3] == [S("1.2"), S("1.0"), S("0.25")]  # wide teacher, largest, smallest
        for t in plan.tasks[3:]:
            w = t.switch.total
            assert 0.25 < w < 1.0 and abs(w / 0.025 - round(w / 0.025)) < 1e-9
            assert not t.track_bn and t.target == "teacher"
            seen.add(w)
    assert len(seen) > 5
    assert planner.trained_switches == [S("1.2"), S("1.0"), S("0.25")]


def test_plan_order_is_checked():
    with pytest.raises(ValueError, match="has not run before it"):
        StepPlan((SwitchTask(S("0.5"), "teacher"), SwitchTask(S("1.0"), "labels")), teacher=S("1.0"))


# --- what the step trains ------------------------------------------------------------------------
def _model():
    torch.manual_seed(0)
    return create_model("resnet_small", num_classes=10, in_chans=1)


def _grads(model, plan, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    train_step(model, opt, x, y, plan)
    return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}


X, Y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))


def test_without_distillation_the_wide_channels_get_no_gradient():
    model = _model()
    c = model.stem.weight.shape[0]  # 1.2 x 16 = 19 channels, 16 of them in [1.0]
    g = _grads(model, plan_of(distillation="none"), X, Y)
    assert g["stem.weight"][16:c].abs().sum() == 0
    g = _grads(_model(), plan_of(distillation="wide"), X, Y)
    assert g["stem.weight"][16:c].abs().sum() > 0


def test_beta_zero_means_the_mse_term_has_no_effect_and_beta_positive_changes_gradients():
    base = _grads(_model(), plan_of(beta=0.0), X, Y)
    plan = plan_of(beta=0.0)
    no_ref = StepPlan(plan.tasks, plan.teacher, feature_ref=S("[1.0]"))  # features computed, weight 0
    same = _grads(_model(), no_ref, X, Y)
    with_mse = _grads(_model(), plan_of(beta=1.0), X, Y)
    assert all(torch.equal(base[n], same[n]) for n in base)
    assert any(not torch.allclose(base[n], with_mse[n]) for n in base)


def test_step_gradients_equal_the_sum_of_the_papers_losses():
    model = _model().train()
    plan = plan_of(beta=0.5, switches=["[1.0]", "[0.5, 0.5]"])
    got = _grads(model, plan, X, Y)

    ref = _model().train()
    ref.zero_grad()
    wide = ref(X, "1.2")
    F.cross_entropy(wide, Y).backward()
    soft = wide.detach().softmax(-1)
    full, feats = ref(X, "[1.0]", return_features=True)
    soft_cross_entropy(full, soft).backward()
    half, half_feats = ref(X, "[0.5, 0.5]", return_features=True)
    (soft_cross_entropy(half, soft) + 0.5 * F.mse_loss(half_feats, feats.detach())).backward()
    for n, p in ref.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-4, atol=1e-6)


def test_one_optimizer_step_per_iteration_and_non_finite_loss_skips_it():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []
    original = opt.step
    opt.step = lambda *a, **k: (calls.append(1), original(*a, **k))
    res = train_step(model, opt, X, Y, plan_of())
    assert len(calls) == 1 and res.finite and len(res.losses) == 4
    before = {n: p.clone() for n, p in model.named_parameters()}
    res = train_step(model, opt, X * float("nan"), Y, plan_of())
    assert not res.finite and len(calls) == 1
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
