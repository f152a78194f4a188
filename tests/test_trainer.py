import pytest
import torch

from paradis.config import RunConfig
from paradis.engine import CheckpointError, load_checkpoint, run_training
from paradis.engine.optim import decay_groups, lr_lambda, make_optimizer
from paradis.models import create_model


def small_config(train_size=256, **training):
    t = {"epochs": 2, "batch_size": 32, "optimizer": {"lr": 0.1}}
    t.update(training)
    return RunConfig.model_validate(
        {
            "model": {"name": "mobilenet_v1_small"},
            "data": {"name": "synthetic", "synthetic_train": train_size, "synthetic_test": 128},
            "training": t,
            "evaluation": {"calibration_batches": 2},
            "device": "cpu",
        }
    )


def test_paradis_run_gives_the_table_with_trained_and_untrained_switches():
    reports = []
    result = run_training(small_config(train_size=512), callback=reports.append)
    rows = {r.switch: r for r in result.table}
    assert list(rows) == ["[1.2]", "[1.0]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]"]
    assert [r.trained for r in rows.values()] == [True, True, True, False, True]
    assert rows["[1.2]"].top1 > 0.5  # 10 classes: chance is 0.1
    assert rows["[4x0.25]"].devices == 4 and rows["[4x0.25]"].max_device_macs * 4 == rows["[4x0.25]"].macs
    assert [r.epoch for r in reports] == [1, 2]
    assert set(reports[-1].metrics) >= {"loss", "acc/1.0", "acc/0.5-0.25-0.25", "loss/1.2", "lr"}
    assert "loss/0.5-0.25-0.25" not in reports[-1].metrics
    assert reports[-1].metrics["loss"] < reports[0].metrics["loss"]


def test_resumed_run_ends_with_the_same_weights(tmp_path):
    cfg = small_config(epochs=3, beta=0.5)
    straight = run_training(cfg, checkpoint_dir=tmp_path / "a")
    stopped = run_training(cfg, checkpoint_dir=tmp_path / "b", callback=lambda r: r.epoch == 1)
    assert stopped.stopped_early and len(stopped.history) == 1
    resumed = run_training(cfg, checkpoint_dir=tmp_path / "b")
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 3


def test_a_checkpoint_of_another_configuration_is_refused_naming_the_keys(tmp_path):
    cfg = small_config(epochs=2)
    run_training(cfg, checkpoint_dir=tmp_path, callback=lambda r: r.epoch == 1)
    edited = cfg.model_copy(update={"training": cfg.training.model_copy(update={"method": "us", "beta": 0.5})})
    with pytest.raises(CheckpointError) as err:
        run_training(edited, checkpoint_dir=tmp_path)  # with method us it once crashed with KeyError
    message = str(err.value)
    assert "was written by another configuration" in message and "--restart" in message
    assert "training.method: 'paradis' -> 'us'" in message and "training.beta: 0.0 -> 0.5" in message
    # what decides only the measurement may change
    measured = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"calibration_batches": 3})})
    assert [h["epoch"] for h in run_training(measured, checkpoint_dir=tmp_path).history] == [1, 2]
    # and --restart (resume=False) trains the edited configuration afresh
    assert run_training(edited, checkpoint_dir=tmp_path, resume=False).history[0]["epoch"] == 1


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    run_training(small_config(epochs=1), checkpoint_dir=tmp_path)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)


def test_us_run_is_evaluated_at_the_widths_matching_paradis_switches():
    result = run_training(small_config(method="us", epochs=1))
    matched = [r for r in result.table if r.matches]
    assert matched, "no corresponding US rows"
    by_ref = {m: r for r in matched for m in r.matches.split("; ")}
    assert by_ref["[1.0]"].switch == "[1.0]"
    # [0.5, 0.5] costs about half of [1.0]: its US match lies between 0.6 and 0.8
    assert 0.6 <= float(by_ref["[0.5, 0.5]"].switch.strip("[]")) <= 0.8
    assert all(r.devices == 1 for r in matched)


def test_individual_run_trains_one_switch_only():
    result = run_training(small_config(method="individual", switches=["[0.5, 0.5]"], epochs=1))
    assert [(r.switch, r.trained) for r in result.table] == [("[0.5, 0.5]", True)]


def test_schedules():
    cfg = small_config(epochs=10, schedule={"kind": "linear"})
    f = lr_lambda(cfg, 100)
    assert f(0) == 1.0 and f(500) == 0.5 and f(1000) == 0.0
    cfg = small_config(epochs=10, schedule={"kind": "step", "milestones": [3, 6]})
    f = lr_lambda(cfg, 100)
    assert f(299) == 1.0 and f(300) == pytest.approx(0.1) and f(600) == pytest.approx(0.01)
    cfg = small_config(epochs=10, schedule={"kind": "constant", "warmup_epochs": 1})
    f = lr_lambda(cfg, 100)
    assert f(0) == pytest.approx(0.01) and f(99) == 1.0 and f(500) == 1.0


def test_us_nets_decay_rule_spares_depthwise_bn_and_biases():
    model = create_model("mobilenet_v1_small", num_classes=10, in_chans=1)
    everything = decay_groups(model, 1e-4, "all")
    assert len(everything) == 1 and len(everything[0]["params"]) == len(list(model.parameters()))
    decayed, plain = decay_groups(model, 1e-4, "us-nets")
    assert plain["weight_decay"] == 0.0 and decayed["weight_decay"] == 1e-4
    names = {id(p): n for n, p in model.named_parameters()}
    depthwise = {id(m.weight) for m in model.modules() if getattr(m, "depthwise", False)}
    decayed_ids = {id(q) for q in decayed["params"]}
    assert depthwise and not depthwise & decayed_ids
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(
        p.ndim == 1 or id(p) in depthwise for p in plain["params"]
    ), [names[id(p)] for p in plain["params"] if p.ndim > 1 and id(p) not in depthwise]
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    # the stem reads one channel, like a depthwise kernel, and is still decayed (US-Nets' shape rule is not)
    assert any(p.shape[1] == 1 and id(p) not in depthwise for p in decayed["params"])
    # a step without gradient changes the decayed weights only
    cfg = small_config(optimizer={"lr": 0.1, "momentum": 0.0, "weight_decay": 0.1, "decay": "us-nets"})
    opt = make_optimizer(model, cfg.training)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {names[id(p)] for p in decayed["params"]}


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one_then_to_scratch(tmp_path, capsys):
    cfg = small_config(epochs=2)
    run_training(cfg, checkpoint_dir=tmp_path, callback=lambda r: r.epoch == 1)
    run_training(cfg, checkpoint_dir=tmp_path)  # ends after epoch 2; epoch 1's checkpoint is kept as .prev
    latest, prev = tmp_path / "checkpoint.pt", tmp_path / "checkpoint.prev.pt"
    assert torch.load(prev, weights_only=True)["epoch"] == 1
    latest.write_bytes(latest.read_bytes()[:500])
    logs = []
    resumed = run_training(small_config(epochs=2), checkpoint_dir=tmp_path, log=logs.append)
    assert any("cannot be read" in line for line in logs)
    assert any("after epoch 1" in line for line in logs)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for f in (latest, prev):
        f.write_bytes(b"garbage")
    logs.clear()
    fresh = run_training(small_config(epochs=1), checkpoint_dir=tmp_path, log=logs.append)
    assert any("starts from scratch" in line for line in logs)
    assert len(fresh.history) == 1


def test_bf16_autocast_follows_the_fp32_loss():
    base = small_config(train_size=256, epochs=1)
    plain = run_training(base)
    mixed = run_training(RunConfig.model_validate({**base.model_dump(), "precision": "bf16"}))
    assert next(mixed.model.parameters()).dtype == torch.float32  # autocast leaves the weights in fp32
    # same data, same seed: the per-switch training losses differ by bf16 rounding only
    a, b = plain.history[0], mixed.history[0]
    switch_losses = [k for k in a if k.startswith("loss/")]
    assert len(switch_losses) == 4
    for key in switch_losses:
        assert b[key] == pytest.approx(a[key], rel=0.05), key
    assert a["loss"] != b["loss"]  # and bf16 was really used


def test_channels_last_keeps_weights_and_activations_in_nhwc():
    cfg = small_config(train_size=64, epochs=1, max_steps_per_epoch=2)
    cfg = RunConfig.model_validate({**cfg.model_dump(), "model": {"name": "resnet_small"}, "channels_last": True})
    result = run_training(cfg)
    conv = result.model.blocks[0].conv2  # a 3x3 convolution: the two layouts differ
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    seen = []
    conv.register_forward_hook(lambda m, args, out: seen.append(out.is_contiguous(memory_format=torch.channels_last)))
    result.model(torch.randn(2, 1, 28, 28).contiguous(memory_format=torch.channels_last), "[0.5, 0.5]")
    assert seen == [True]


def test_per_stage_switches_join_the_evaluation_table():
    cfg = small_config(train_size=128, epochs=1, max_steps_per_epoch=2)
    data = cfg.model_dump()
    found = "[0.25/0.5/0.5/0.75, 0.25/0.25/0.5/0.25]"  # e.g. from the distributable search
    data["evaluation"]["switches"] = ["[1.0]", "[0.5, 0.5]", found]
    result = run_training(RunConfig.model_validate(data))
    rows = {r.switch: r for r in result.table}
    assert list(rows) == ["[1.0]", "[0.5, 0.5]", found]
    assert rows[found].devices == 2 and not rows[found].trained
    assert rows[found].max_device_macs < rows["[0.5, 0.5]"].max_device_macs
    assert "acc/0.25_0.5_0.5_0.75-0.25_0.25_0.5_0.25" in result.history[-1]


def test_damaged_checkpoints_are_kept_aside_never_overwritten(tmp_path):
    cfg = small_config(epochs=1)
    run_training(cfg, checkpoint_dir=tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage, but somebody's")
    logs = []
    run_training(cfg, checkpoint_dir=tmp_path, log=logs.append)
    aside = list(tmp_path.glob("checkpoint.pt.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"garbage, but somebody's"
    assert any("kept the damaged checkpoint.pt as" in line for line in logs)


def test_a_checkpoint_folder_that_is_a_file_is_refused_before_training(tmp_path):
    blocker = tmp_path / "ckpt"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint folder .* is a file, not a folder"):
        run_training(small_config(epochs=1), checkpoint_dir=blocker)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A checkpoint after epoch 1 of 3 (the second adversarial pass's resumes change one part of it)."""
    folder = tmp_path_factory.mktemp("one-epoch")
    run_training(small_config(epochs=3), checkpoint_dir=folder, callback=lambda r: r.epoch == 1)
    return folder


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda s: s.pop("optimizer"), "optimizer is NoneType, not dict"),
        (lambda s: s.pop("planner"), "planner is NoneType, not dict"),
        (lambda s: s.update(history=5), "history is int, not list"),
        (lambda s: s.update(model=[1, 2]), "model is list, not dict"),
        (lambda s: s.update(torch_rng=torch.zeros(3)), "torch_rng or epoch"),
        (lambda s: s.update(epoch=-2), "torch_rng or epoch (-2)"),
        (lambda s: s.update(epoch=10**6), "epoch 1000000 of 3"),
        (lambda s: s.update(scheduler={}), "cannot be restored into this run"),
        (lambda s: s["model"].update({k: v[:1] for k, v in list(s["model"].items())[:1]}), "cannot be restored"),
    ],
)
def test_a_checkpoint_that_loads_but_is_malformed_is_one_error_naming_it(one_epoch, tmp_path, change, needle):
    import shutil

    folder = tmp_path / "ck"
    shutil.copytree(one_epoch, folder)
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    change(state)
    torch.save(state, folder / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=f"checkpoint '{folder / 'checkpoint.pt'}'") as err:
        run_training(small_config(epochs=3), checkpoint_dir=folder)
    assert needle in str(err.value)


def test_a_folder_where_a_save_moves_files_is_refused_before_training(one_epoch, tmp_path):
    import shutil

    folder = tmp_path / "ck"
    shutil.copytree(one_epoch, folder)
    (folder / "checkpoint.prev.pt").unlink(missing_ok=True)
    (folder / "checkpoint.prev.pt" / "sub").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"checkpoint\.prev\.pt is a folder; no checkpoint can be saved"):
        run_training(small_config(epochs=3), checkpoint_dir=folder)


def test_ctrl_c_during_paradis_train_is_one_line_saying_how_to_resume(tmp_path):
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "paradis", "train", "--set", "model.name=mobilenet_v1_small"]
    cmd += ["--set", "data.name=synthetic", "--set", "training.epochs=200", "--set", "threads=1"]
    cmd += ["--set", "data.synthetic_train=256", "--set", "data.synthetic_test=64"]
    cmd += ["--checkpoint-dir", str(tmp_path / "ck")]
    # a shell starts background jobs with SIGINT ignored, and Python then installs no handler for it
    # (CI runs the suite so): the child gets SIGINT's default back, as in a terminal
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in proc.stdout:  # interrupt once it trains, not while it imports
        if "epoch 1/200" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    lines = err.strip().splitlines()
    assert lines[-1] == f"paradis train: error: interrupted; the last checkpoint in {tmp_path / 'ck'} resumes it"
    assert "Traceback" not in err
