"""One training run: :class:`Trainer` builds the run from its configuration and ``fit`` runs the loop.

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
from paradis.data.splits import Splits, make_loader
from paradis.engine.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    check_checkpoint_dir,
    check_resumable,
    check_same_run,
    load_resumable,
    save_checkpoint,
)
from paradis.engine.evaluation import SwitchResult, evaluate_switches, matched_widths
from paradis.engine.metrics import loss_key, table_metrics
from paradis.engine.optim import make_optimizer, make_scheduler
from paradis.engine.setup import build_model, cost_of, evaluation_switches, load_splits, prepare_data, select_device
from paradis.methods import describe_method, get_method, make_planner
from paradis.methods.step import train_step
from paradis.models import ParaDiSModel
from paradis.switch import Switch, parse_switch
from paradis.tasks import get_task
from paradis.util import first_line


class NonFiniteLoss(RuntimeError):
    """The loss of a switch became NaN or infinite; training stops rather than corrupt the weights."""


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
    trainer: Trainer | None = field(default=None, repr=False)  # its data, planner and loaders


Callback = Callable[[EpochReport], "bool | None"]


class Trainer:
    """Everything one run needs, built in order (seed, data, model, method, evaluation, optimizer),
    and :meth:`fit`, the loop: train an epoch, evaluate when due, checkpoint, report."""

    def __init__(
        self,
        cfg: RunConfig,
        *,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = True,
        callback: Callback | None = None,
        distributed: DistributedInfo | None = None,
        splits: Splits | None = None,
        log: Callable[[str], None] | None = None,
        device: torch.device | None = None,
        proposer=None,
        threads: Callable[[], int] | None = None,
    ):
        """``threads``: polled between steps, the intra-op threads the run may use now (a study's trial
        takes cores other trials left free); ``None`` keeps ``cfg.threads``."""
        self.started = time.perf_counter()
        self.threads = threads
        self.cfg, self.t, self.callback = cfg, cfg.training, callback
        self.dist = distributed or DistributedInfo()
        self.log = log or _stderr
        self.device = device if device is not None else select_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(self.t.seed)
        random.seed(self.t.seed)
        self.data = prepare_data(cfg, splits or load_splits(cfg))
        self.input_size = tuple(self.data.info.input_size)
        self.model = build_model(cfg, self.data.info).to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.method = get_method(self.t.method)
        cost = cost_of(cfg, self.model, self.input_size)
        self.planner = make_planner(self.t, num_stages=self.model.num_stages, proposer=proposer, cost=cost)
        self._set_up_evaluation()
        self._set_up_loaders()
        self._set_up_optimization()
        if checkpoint_dir is not None:
            check_checkpoint_dir(checkpoint_dir)
        self.ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        self.resume = resume
        self.history: list[dict[str, float]] = []

    # --- set-up ---------------------------------------------------------------------------------
    def _set_up_evaluation(self) -> None:
        t, model = self.t, self.model
        self.eval_switches, self.target = evaluation_switches(self.cfg, self.planner)
        for s in self.eval_switches:
            model.resolve(s)
        self.matches: dict[Switch, str] = {}
        if self.method.matches_cost:
            widths = self.method.match_widths(t, self.planner)
            refs = [parse_switch(s) for s in self.cfg.evaluation.match_switches]
            refs = [r for r in refs if r.total <= t.wide_factor]
            self.matches = matched_widths(model, refs, widths, self.input_size)
            self.eval_switches += [s for s in self.matches if s not in self.eval_switches]
        self.trained = self.method.trained(t, self.planner)
        self.task = get_task(self.cfg.task)

    def _set_up_loaders(self) -> None:
        t, d, dev = self.t, self.cfg.data, self.device
        self.train_loader = make_loader(
            self.data.train,
            t.batch_size,
            shuffle=True,
            seed=t.seed,
            drop_last=True,
            num_workers=d.num_workers,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            device=dev,
        )
        self.steps_per_epoch = min(len(self.train_loader), t.max_steps_per_epoch or len(self.train_loader))
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"training.batch_size {t.batch_size} is larger than the training split ({len(self.data.train)} samples)"
            )
        self.eval_bs = self.cfg.evaluation.calibration_batch_size or t.batch_size
        self.test_loader = self.loader(self.data.test)

    def loader(self, split):
        """An evaluation loader of ``split`` (in order, the evaluation batch size, the run's device)."""
        return make_loader(
            split, self.eval_bs, shuffle=False, num_workers=self.cfg.data.num_workers, device=self.device
        )

    def calibration(self):
        """Fresh calibration batches (the same images every time)."""
        for i, batch in enumerate(self.loader(self.data.calibration)):
            if i >= self.cfg.evaluation.calibration_batches:
                break
            yield batch

    def _set_up_optimization(self) -> None:
        self.train_model: torch.nn.Module = self.model
        if self.dist.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, broadcast_buffers=False
            )
        self.optimizer = make_optimizer(self.model, self.t)
        self.scheduler = make_scheduler(self.optimizer, self.cfg, self.steps_per_epoch)
        use_bf16 = self.cfg.precision == "bf16"
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if use_bf16 else None

    # --- checkpoints ----------------------------------------------------------------------------
    def _restore(self) -> int:
        """Load the newest readable checkpoint, if any and asked; the epochs it completed."""
        if self.ckpt_path is None or not self.resume:
            return 0
        # on the CPU: the RNG states must stay there; load_state_dict moves weights and optimizer state
        state = load_resumable(self.ckpt_path, "cpu", self.log)
        if state is None:
            return 0
        check_resumable(state, self.ckpt_path)
        check_same_run(state, self.cfg.model_dump(mode="json"), self.ckpt_path)
        if state["epoch"] > self.t.epochs:
            raise CheckpointError(f"checkpoint {str(self.ckpt_path)!r}: epoch {state['epoch']} of {self.t.epochs}")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.planner.load_state_dict(state["planner"])
            torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
            raise CheckpointError(
                f"checkpoint {str(self.ckpt_path)!r} cannot be restored into this run: {first_line(err, 200)}"
            ) from None
        self.history = list(state["history"])
        self.log(f"resumed from {self.ckpt_path.parent} after epoch {int(state['epoch'])}")
        return int(state["epoch"])

    def _save(self, epoch: int) -> None:
        if self.ckpt_path is None or not self.dist.is_main:
            return
        save_checkpoint(
            self.ckpt_path,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "planner": self.planner.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
                "history": self.history,
                "config": self.cfg.model_dump(mode="json"),
            },
        )

    # --- the loop -------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch of the method's steps; the epoch's metrics (mean loss per trained switch)."""
        start = time.perf_counter()
        self.model.train()
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(epoch)
        if hasattr(getattr(self.train_loader, "sampler", None), "set_epoch"):
            self.train_loader.sampler.set_epoch(epoch)
        sums: dict[Switch, float] = {}
        counts: dict[Switch, int] = {}
        for step, (x, y) in enumerate(self.train_loader):
            if step >= self.steps_per_epoch:
                break
            if self.cfg.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            self._follow_threads()
            res = train_step(
                self.train_model,
                self.optimizer,
                x,
                y,
                self.planner.next_plan(),
                label_smoothing=self.t.label_smoothing,
                task_type=self.cfg.task,
                autocast=self.autocast,
            )
            self.planner.observe(res)
            if not res.finite:
                bad = ", ".join(f"{s} ({v})" for s, v in res.losses.items() if not math.isfinite(v))
                raise NonFiniteLoss(f"loss became non-finite at epoch {epoch + 1}, step {step + 1}: {bad}")
            for s, v in res.losses.items():
                sums[s] = sums.get(s, 0.0) + v
                counts[s] = counts.get(s, 0) + 1
            self.scheduler.step()
        seconds = time.perf_counter() - start
        samples = self.steps_per_epoch * self.t.batch_size * self.dist.world_size
        out = {
            "epoch": epoch + 1,
            "loss": sum(sums[s] / counts[s] for s in sums),
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_seconds": seconds,
            "samples_per_second": samples / max(seconds, 1e-9),
        }
        out.update({loss_key(s): sums[s] / counts[s] for s in sums if s in self.trained})
        return out

    def _follow_threads(self) -> None:
        if self.threads is not None and (n := self.threads()) != torch.get_num_threads():
            torch.set_num_threads(n)

    def evaluate(self) -> list[SwitchResult]:
        """Calibrate BN for every evaluated switch and measure it on the test split."""
        return evaluate_switches(
            self.model,
            self.eval_switches,
            calibration=self.calibration,
            test_loader=self.test_loader,
            input_size=self.input_size,
            trained=self.trained,
            num_classes=self.data.info.num_classes,
            device=self.device,
            matches=self.matches,
            task_type=self.cfg.task,
        )

    def _due(self, epoch: int) -> bool:
        every = self.cfg.evaluation.every
        return epoch + 1 == self.t.epochs or bool(every and (epoch + 1) % every == 0)

    def start(self) -> int:
        """Resume from the checkpoint when there is one; the epochs already completed."""
        return self._restore()

    def run_epoch(self, epoch: int) -> EpochReport:
        """Train epoch ``epoch`` (0-based), evaluate when due, record, checkpoint and log it."""
        metrics = self.train_epoch(epoch)
        table = None
        if self._due(epoch):
            eval_start = time.perf_counter()
            table = self.evaluate()
            metrics.update(table_metrics(table, self.task.measure, self.target))
            metrics["eval_seconds"] = time.perf_counter() - eval_start
        self.history.append(metrics)
        self._save(epoch + 1)
        self._log_epoch(epoch, metrics)
        return EpochReport(epoch + 1, self.t.epochs, metrics, table, self.ckpt_path if self.dist.is_main else None)

    def result(self, table: list[SwitchResult] | None = None, stopped: bool = False) -> TrainResult:
        """The run's result; its table is evaluated now unless given."""
        return TrainResult(
            config=self.cfg,
            method=describe_method(self.t),
            model=self.model,
            table=table if table is not None else self.evaluate(),
            history=self.history,
            seconds=time.perf_counter() - self.started,
            stopped_early=stopped,
            input_size=self.input_size,
            trainer=self,
        )

    def fit(self) -> TrainResult:
        """Train (resuming from the checkpoint when there is one), evaluating when due; the callback
        sees every epoch's report and may stop the run."""
        report, stopped = None, False
        for epoch in range(self.start(), self.t.epochs):
            report = self.run_epoch(epoch)
            if self.callback is not None and self.callback(report):
                stopped = epoch + 1 < self.t.epochs
                break
        # resumed after the last epoch, or stopped before an evaluation: evaluate now
        return self.result(report.table if report is not None else None, stopped)

    def _log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        measured = " ".join(
            f"{k.split('/', 1)[1]}={v:.4f}" for k, v in metrics.items() if k.startswith(("acc/", "psnr/"))
        )
        self.log(
            f"epoch {epoch + 1}/{self.t.epochs} loss={metrics['loss']:.4f} {measured} ({metrics['epoch_seconds']:.1f}s)"
        )


def run_training(cfg: RunConfig, **kwargs) -> TrainResult:
    """Train per ``cfg`` (:class:`Trainer` takes the keyword arguments); resume from
    ``checkpoint_dir`` if it holds a checkpoint and ``resume``. ``device`` overrides ``cfg.device``."""
    return Trainer(cfg, **kwargs).fit()


def _stderr(line: str) -> None:
    print(f"[paradis] {line}", file=sys.stderr, flush=True)


__all__ = ["DistributedInfo", "EpochReport", "NonFiniteLoss", "TrainResult", "Trainer", "run_training"]
