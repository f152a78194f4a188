"""One training run: data, model, the method's step every iteration, evaluation, checkpoints.

Pure PyTorch. Progress leaves through a callback (``callback(report) -> stop?``), which is how the
orchestration layer reports to Ray Tune and MLflow; checkpoints are files in ``checkpoint_dir``.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from paradis.config import RunConfig
from paradis.costs import count_macs, profile
from paradis.data import Splits, TensorSplit, load_dataset, make_loader, make_synthetic, subset
from paradis.evaluation import SwitchResult, evaluate_switches, matched_widths
from paradis.models import ParaDiSModel, create_model
from paradis.switch import Switch, parse_switch
from paradis.training import FULL, ConfigProposer, MethodPlanner, describe_method, train_step

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


class NonFiniteLoss(RuntimeError):
    """The loss of a switch became NaN or infinite; training stops rather than corrupt the weights."""


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, corrupted or of another format)."""


@dataclass(frozen=True)
class DistributedInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class EpochReport:
    epoch: int  # epochs completed
    epochs: int
    metrics: dict[str, float]
    table: list[SwitchResult] | None
    checkpoint: Path | None


@dataclass
class TrainResult:
    config: RunConfig
    method: str
    model: ParaDiSModel
    table: list[SwitchResult]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False
    input_size: tuple[int, ...] = ()


Callback = Callable[[EpochReport], "bool | None"]


# --- checkpoints -----------------------------------------------------------------------------------
def previous_checkpoint(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically, keeping the previous checkpoint beside the new one: a crash mid-write, or a
    file damaged later, still leaves a good checkpoint to resume from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    if path.exists():
        os.replace(path, previous_checkpoint(path))
    os.replace(tmp, path)


def load_resumable(path: Path, map_location, log: Callable[[str], None]) -> dict | None:
    """The newest readable checkpoint: ``path``, else the previous one, else ``None`` (start afresh).
    A damaged file is reported, never retried in a loop."""
    for candidate in (path, previous_checkpoint(path)):
        if not candidate.exists():
            continue
        try:
            return load_checkpoint(candidate, map_location=map_location)
        except CheckpointError as err:
            log(f"warning: {err}; trying an older checkpoint")
    if path.exists() or previous_checkpoint(path).exists():
        log(f"warning: no readable checkpoint in {path.parent}; training starts from scratch")
    return None


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a paradis checkpoint of format {CHECKPOINT_FORMAT}")
    return state


# --- set-up ----------------------------------------------------------------------------------------
def select_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but CUDA is not available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_splits(cfg: RunConfig) -> Splits:
    d = cfg.data
    if d.name == "synthetic":
        return make_synthetic(train_size=d.synthetic_train, test_size=d.synthetic_test, seed=cfg.training.seed)
    if d.name == "imagenet":
        return load_dataset("imagenet", d.root, image_size=d.image_size)
    if cfg.task == "super-resolution":
        from paradis.sr_data import load_sr_dataset

        return load_sr_dataset(d.name, d.root, d.sr, seed=cfg.training.seed)
    return load_dataset(d.name, d.root)


def default_eval_switches(cfg: RunConfig, planner: MethodPlanner) -> list[Switch]:
    if cfg.evaluation.switches is not None:
        return [parse_switch(s) for s in cfg.evaluation.switches]
    switches = list(dict.fromkeys(planner.trained_switches))
    extra = parse_switch("[0.5, 0.25, 0.25]")
    if cfg.training.method == "paradis" and extra not in switches and extra.total <= cfg.training.wide_factor:
        switches.append(extra)
    return sorted(switches, key=lambda s: (-s.total, -s.widths[0], len(s)))


def build_model(cfg: RunConfig, splits: Splits) -> ParaDiSModel:
    info = splits.info
    model = create_model(
        cfg.model.name,
        num_classes=info.num_classes,
        wide_factor=cfg.training.wide_factor,
        in_chans=info.input_size[0],
        **({"scale": cfg.data.sr.scale} if cfg.task == "super-resolution" else {}),
    )
    for i, s in enumerate(cfg.training.switches):
        try:
            model.resolve(s)
        except ValueError as err:
            raise ValueError(f"training.switches[{i}]: {err}") from None
    return model


def lr_lambda(cfg: RunConfig, steps_per_epoch: int) -> Callable[[int], float]:
    t = cfg.training
    total = max(1, t.epochs * steps_per_epoch)
    warmup = t.schedule.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        epoch = step / steps_per_epoch
        if t.schedule.kind == "linear":
            f = max(0.0, 1.0 - step / total)
        elif t.schedule.kind == "step":
            f = t.schedule.gamma ** sum(epoch >= m for m in t.schedule.milestones)
        elif t.schedule.kind == "cosine":
            f = 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        else:
            f = 1.0
        if warmup > 0 and step < warmup:
            f *= (step + 1) / warmup
        return f

    return factor


# --- the run ---------------------------------------------------------------------------------------
def run_training(
    cfg: RunConfig,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = True,
    callback: Callback | None = None,
    distributed: DistributedInfo | None = None,
    splits: Splits | None = None,
    log: Callable[[str], None] | None = None,
    device: torch.device | None = None,
    proposer: ConfigProposer | None = None,
) -> TrainResult:
    """Train per ``cfg``; resume from ``checkpoint_dir`` if it holds a checkpoint and ``resume``.

    ``device`` overrides ``cfg.device`` (a distributed worker's own GPU, say)."""
    started = time.perf_counter()
    dist = distributed or DistributedInfo()
    device = device if device is not None else select_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t = cfg.training
    torch.manual_seed(t.seed)
    random.seed(t.seed)
    splits = splits or load_splits(cfg)
    model = build_model(cfg, splits).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else None
    planner = MethodPlanner(t, num_stages=model.num_stages, proposer=proposer, cost=_cost_of(cfg, model, splits))
    eval_switches = default_eval_switches(cfg, planner)
    if cfg.evaluation.target is not None:
        target = parse_switch(cfg.evaluation.target)
    else:
        target = FULL if FULL in eval_switches else t.parsed_switches()[0]
    if target not in eval_switches:
        eval_switches.append(target)
    for s in eval_switches:
        model.resolve(s)
    input_size = splits.info.input_size
    matches: dict[Switch, str] = {}
    if t.method in ("us", "slimmable"):
        widths = planner.us_widths() if t.method == "us" else [s.total for s in t.parsed_switches()]
        refs = [parse_switch(s) for s in cfg.evaluation.match_switches if parse_switch(s).total <= t.wide_factor]
        matches = matched_widths(model, refs, widths, input_size)
        eval_switches += [s for s in matches if s not in eval_switches]

    train_split = subset(splits.train, cfg.data.train_subset, t.seed)
    test_split = subset(splits.test, cfg.data.test_subset, t.seed)
    train_loader = make_loader(
        train_split,
        t.batch_size,
        shuffle=True,
        seed=t.seed,
        drop_last=True,
        num_workers=cfg.data.num_workers,
        rank=dist.rank,
        world_size=dist.world_size,
        device=device,
    )
    steps_per_epoch = len(train_loader)
    if t.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, t.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise ValueError(
            f"training.batch_size {t.batch_size} is larger than the training split ({len(train_split)} samples)"
        )
    eval_bs = cfg.evaluation.calibration_batch_size or t.batch_size
    calib_split = _calibration_split(train_split, cfg.evaluation.calibration_batches * eval_bs, t.seed)
    test_loader = make_loader(test_split, eval_bs, shuffle=False, num_workers=cfg.data.num_workers, device=device)

    def calibration():
        loader = make_loader(calib_split, eval_bs, shuffle=False, num_workers=cfg.data.num_workers, device=device)
        for i, batch in enumerate(loader):
            if i >= cfg.evaluation.calibration_batches:
                break
            yield batch

    train_model: torch.nn.Module = model
    if dist.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
    opt_cfg = t.optimizer
    if opt_cfg.name == "adam":
        optimizer = torch.optim.Adam(
            model.parameters(), lr=opt_cfg.lr, betas=(opt_cfg.momentum, 0.999), weight_decay=opt_cfg.weight_decay
        )
    else:
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=opt_cfg.lr,
            momentum=opt_cfg.momentum,
            nesterov=opt_cfg.nesterov and opt_cfg.momentum > 0,
            weight_decay=opt_cfg.weight_decay,
        )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, steps_per_epoch))

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    start_epoch, history, table = 0, [], None
    state = None
    if ckpt_path is not None and resume:
        state = load_resumable(ckpt_path, device, log or _stderr)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        planner.load_state_dict(state["planner"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        (log or _stderr)(f"resumed from {ckpt_path.parent} after epoch {start_epoch}")

    method = describe_method(t)
    stopped = False

    def evaluate() -> list[SwitchResult]:
        return evaluate_switches(
            model,
            eval_switches,
            calibration=calibration,
            test_loader=test_loader,
            input_size=input_size,
            trained=trained,
            num_classes=splits.info.num_classes,
            device=device,
            matches=matches,
            task_type=cfg.task,
        )

    trained = set(planner.trained_switches)
    if t.method == "us":  # every width of the grid is sampled during training
        trained |= {parse_switch(w) for w in planner.us_widths()}
    for epoch in range(start_epoch, t.epochs):
        epoch_start = time.perf_counter()
        model.train()
        train_loader.set_epoch(epoch) if hasattr(train_loader, "set_epoch") else None
        if hasattr(getattr(train_loader, "sampler", None), "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        sums: dict[Switch, float] = {}
        counts: dict[Switch, int] = {}
        steps = 0
        for x, y in train_loader:
            if steps >= steps_per_epoch:
                break
            if cfg.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            plan = planner.next_plan()
            res = train_step(
                train_model,
                optimizer,
                x,
                y,
                plan,
                label_smoothing=t.label_smoothing,
                task_type=cfg.task,
                autocast=autocast,
            )
            planner.observe(res)
            if not res.finite:
                bad = ", ".join(f"{s} ({v})" for s, v in res.losses.items() if not math.isfinite(v))
                raise NonFiniteLoss(f"loss became non-finite at epoch {epoch + 1}, step {steps + 1}: {bad}")
            for s, v in res.losses.items():
                sums[s] = sums.get(s, 0.0) + v
                counts[s] = counts.get(s, 0) + 1
            scheduler.step()
            steps += 1
        train_seconds = time.perf_counter() - epoch_start
        metrics: dict[str, float] = {
            "epoch": epoch + 1,
            "loss": sum(sums[s] / counts[s] for s in sums),
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_seconds": train_seconds,
            "samples_per_second": steps * t.batch_size * dist.world_size / max(train_seconds, 1e-9),
        }
        for s in sums:
            if s in trained:
                metrics[f"loss/{s.slug}"] = sums[s] / counts[s]
        last = epoch + 1 == t.epochs
        every = cfg.evaluation.every
        table = None
        if last or (every and (epoch + 1) % every == 0):
            eval_start = time.perf_counter()
            table = evaluate()
            measure = "psnr" if cfg.task == "super-resolution" else "acc"  # PSNR in dB, accuracy a fraction
            for row in table:
                slug = parse_switch(row.switch).slug
                metrics[f"{measure}/{slug}"] = row.score
                if row.top5 is not None:
                    metrics[f"top5/{slug}"] = row.top5
                if row.baseline_psnr is not None:
                    metrics["psnr/bicubic"] = row.baseline_psnr
                if parse_switch(row.switch) == target:
                    metrics[f"{measure}/target"] = row.score
                    metrics["device_macs/target"] = row.max_device_macs
                    metrics["macs/target"] = row.macs
            metrics["eval_seconds"] = time.perf_counter() - eval_start
        history.append(metrics)
        if ckpt_path is not None and dist.is_main:
            save_checkpoint(
                ckpt_path,
                {
                    "format": CHECKPOINT_FORMAT,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "planner": planner.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "epoch": epoch + 1,
                    "history": history,
                    "config": cfg.model_dump(mode="json"),
                },
            )
        if log:
            accs = " ".join(
                f"{k.split('/', 1)[1]}={v:.4f}" for k, v in metrics.items() if k.startswith(("acc/", "psnr/"))
            )
            log(f"epoch {epoch + 1}/{t.epochs} loss={metrics['loss']:.4f} {accs} ({train_seconds:.1f}s)")
        if callback is not None:
            report = EpochReport(epoch + 1, t.epochs, metrics, table, ckpt_path if dist.is_main else None)
            if callback(report):
                stopped = not last
                break

    if table is None:  # resumed after the last epoch, or stopped before an evaluation
        table = evaluate()
    return TrainResult(
        config=cfg,
        method=method,
        model=model,
        table=table,
        history=history,
        seconds=time.perf_counter() - started,
        stopped_early=stopped,
        input_size=tuple(input_size),
    )


def _cost_of(cfg: RunConfig, model: ParaDiSModel, splits: Splits) -> Callable[[Switch], float] | None:
    """PareCO's cost objective: multiply-adds in total (one device), else of the busiest device."""
    if cfg.training.method not in ("pareco", "twostage"):
        return None
    cache: dict[Switch, float] = {}
    per_device = cfg.training.pareco.devices > 1

    @torch.no_grad()
    def fused_macs(s: Switch) -> float:
        # One fused forward pass counts what the extracted sub-networks of profile() count together
        # (tests/test_costs.py), at a twentieth of the time; BN uses batch statistics and keeps none.
        device = next(model.parameters()).device
        x = torch.zeros(2, *splits.info.input_size, device=device)
        was_training = model.training
        model.train()
        try:
            return count_macs(lambda: model(x, s, bn_update="none")) / 2
        finally:
            model.train(was_training)

    def cost(s: Switch) -> float:
        if s not in cache:
            cache[s] = float(profile(model, s, splits.info.input_size).max_device_macs) if per_device else fused_macs(s)
        return cache[s]

    return cost


def _stderr(line: str) -> None:
    print(f"[paradis] {line}", file=sys.stderr, flush=True)


def _calibration_split(train_split, count: int, seed: int):
    """A fixed random subset of the training split, without training augmentation."""
    part = subset(train_split, count, seed + 17)
    if isinstance(part, TensorSplit):
        return TensorSplit(part.images, part.labels, part.mean, part.std, augment=False)
    return part
