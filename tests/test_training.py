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


@pytest.mark.parametrize("name", ["mobilenet_v1_small", "resnet_small"])
def test_a_channels_last_step_equals_the_nchw_step(name):
    """NHWC (``channels_last``, the quickstart's layout: about 30 % faster a step on one CPU thread) is a
    layout, not another computation: one Wide IPKD-A step gives the same losses, gradients, running
    statistics and updated weights, in float64."""
    cfg = TrainingConfig(
        method="paradis", switches=["[1.0]", "[0.5, 0.5]", "[4x0.25]"], wide_factor=1.2, distillation="wide", beta=0.1
    )
    plan = make_planner(cfg).next_plan()
    size = (1, 28, 28) if name.startswith("mobilenet") else (3, 32, 32)
    torch.manual_seed(0)
    x, y = torch.randn(16, *size, dtype=torch.float64), torch.randint(0, 10, (16,))
    out = []
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(1)
        model = create_model(name, num_classes=10, in_chans=size[0], wide_factor=1.2).double().train()
        model = model.to(memory_format=layout)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
        res = train_step(model, opt, x.contiguous(memory_format=layout), y, plan)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        out.append((res.losses, grads, model.state_dict()))
    (loss_a, grad_a, state_a), (loss_b, grad_b, state_b) = out
    assert loss_a.keys() == loss_b.keys() and all(loss_a[s] == pytest.approx(loss_b[s], rel=1e-10) for s in loss_a)
    assert grad_a.keys() == grad_b.keys() and len(grad_a) > 10
    for n in grad_a:
        torch.testing.assert_close(grad_a[n], grad_b[n], rtol=1e-9, atol=1e-11, msg=n)
    assert state_a.keys() == state_b.keys()
    for n in state_a:
        torch.testing.assert_close(state_a[n], state_b[n].contiguous(), rtol=1e-9, atol=1e-11, msg=n)
