"""The Ray Tune function trainable of a study, and the Ray Train worker loop for several workers.

Both paths run :class:`paradis.engine.Trainer`; they differ only in how progress is reported
(``ray.tune.report`` in the trial process, ``ray.train.report`` from each DDP worker). A trial whose
method has a front ends with the front step (:mod:`orchestration.fronts`) when the study asks for it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from torch import get_num_threads

from orchestration.cores import CoreShare
from orchestration.faults import maybe_inject
from orchestration.pareco import proposer_for
from orchestration.spec import StudySpec, study_from_data
from orchestration.tracking.callback import FAILED_KEY
from orchestration.trials import run_config_for
from paradis.config import RunConfig
from paradis.engine import DistributedInfo, EpochReport, NonFiniteLoss, Trainer
from paradis.methods import get_method

__all__ = ["FAILED_KEY", "report_metrics", "study_trial", "train_worker"]


def report_metrics(report: EpochReport) -> dict[str, Any]:
    """What a trial reports each epoch: the numeric metrics, and the switch table when evaluated."""
    metrics: dict[str, Any] = dict(report.metrics)
    if report.table is not None:
        metrics["table"] = json.dumps([row.as_dict() for row in report.table])
    return metrics


def scratch_dir(prefix: str) -> Path:
    """A new private folder for one trial's (or DDP worker's) checkpoints in this node's temp folder.

    Tune ends a stopped trial (ASHA, a time budget, a failure) by killing its actor, so the trial's
    ``finally`` may never run: each new folder first removes those of processes that are gone (the
    folder's name carries its process id), so a study leaves no gigabytes behind in ``/tmp``."""
    root = Path(tempfile.gettempdir()) / f"paradis-scratch-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    for old in root.iterdir():
        if not _process_alive(old.name.split("-")[1] if old.name.count("-") >= 2 else ""):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=root))


def _process_alive(pid: str) -> bool:
    if not pid.isdigit():
        return True  # not a folder of ours: left alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def persisted(workdir: Path) -> str:
    """The folder Ray persists at a report: the trial folder's ``checkpoint.pt`` files (hard links, no
    copy), without the ``.prev`` copies the trainer keeps beside them (Ray keeps its own previous
    checkpoints, ``num_to_keep``) or anything else the folder holds."""
    out = workdir.with_name(workdir.name + "-ray")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for ckpt in workdir.rglob("checkpoint.pt"):
        target = out / ckpt.relative_to(workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(ckpt, target)  # the trainer replaces checkpoint.pt by a new file: the link keeps this one
        except OSError:
            shutil.copy2(ckpt, target)
    return str(out)


def _restore(checkpoint, workdir: Path) -> None:
    if checkpoint is not None:
        checkpoint.to_directory(str(workdir))


def study_trial(config: dict[str, Any], spec_data: str, cores: str | None = None) -> None:
    """Ray Tune function trainable: one trial of the study (``spec_data``: the spec's own data;
    ``cores``: the name of the study's core broker, when trials share free cores)."""
    spec = study_from_data(json.loads(spec_data), "spec")
    cfg = run_config_for(spec, config)
    if spec.resources.workers_per_trial > 1:
        _run_with_torch_trainer(spec, cfg)
        return
    from ray import tune

    workdir = scratch_dir("trial")
    cpu0 = time.process_time()  # Tune reuses a trial's process for the next one: count this trial's part
    share = CoreShare(cores, tune.get_context().get_trial_id(), cfg.threads or 1) if cores else None
    threads = share.threads if share is not None else None
    try:
        _restore(tune.get_checkpoint(), workdir)
        if spec.repeats > 1 and "repeat" not in config:  # a searched configuration: its seeds in this trial
            _train_seeds(spec, config, workdir, threads, cpu0)
            return

        def callback(report: EpochReport) -> None:
            cpu = time.process_time() - cpu0
            metrics = {**report_metrics(report), "cpu_seconds": cpu, "threads": get_num_threads()}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(persisted(workdir)))
            maybe_inject(report.epoch)

        proposer = proposer_for(cfg)
        try:
            trainer = Trainer(cfg, checkpoint_dir=workdir, callback=callback, proposer=proposer, threads=threads)
            result = trainer.fit()
        except NonFiniteLoss as err:
            # deterministic: retrying would diverge again. The trial ends, marked failed with the reason.
            tune.report({FAILED_KEY: str(err)})
            return
        if spec.front is not None and get_method(cfg.training.method).front is not None and not result.stopped_early:
            _report_front(spec, config, trainer, proposer, result, workdir, cpu0)
    finally:
        if share is not None:
            share.close()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(workdir.with_name(workdir.name + "-ray"), ignore_errors=True)


def mean_metrics(reports: list[dict[str, Any]]) -> dict[str, float]:
    """The mean over seeds of every numeric metric all of them report."""
    keys = [k for k, v in reports[0].items() if isinstance(v, (int, float)) and all(k in r for r in reports)]
    return {k: sum(float(r[k]) for r in reports) / len(reports) for k in keys}


def mean_table(tables: list[list[dict]]) -> list[dict]:
    """Rows of the first seed's table with each measure averaged over seeds and every seed's score
    kept (``scores``)."""
    out = []
    for rows in zip(*tables):
        row = dict(rows[0])
        for key in ("top1", "top5", "psnr"):
            if row.get(key) is not None:
                row[key] = sum(r[key] for r in rows) / len(rows)
        row["scores"] = [r["psnr"] if r.get("psnr") is not None else r["top1"] for r in rows]
        out.append(row)
    return out


def _train_seeds(spec: StudySpec, config: dict, workdir: Path, threads=None, cpu0: float = 0.0) -> None:
    """One searched configuration trained with ``repeats`` seeds, epoch by epoch; the searcher and the
    scheduler see the mean over seeds."""
    from ray import tune

    cfgs = [run_config_for(spec, {**config, "repeat": k}) for k in range(spec.repeats)]
    trainers = [
        Trainer(c, checkpoint_dir=workdir / f"seed{k}", proposer=proposer_for(c), threads=threads)
        for k, c in enumerate(cfgs)
    ]
    done = [t.start() for t in trainers]
    try:
        for epoch in range(min(done), cfgs[0].training.epochs):
            reports = [t.run_epoch(epoch) if epoch >= d else None for t, d in zip(trainers, done)]
            metrics = mean_metrics([r.metrics if r else t.history[epoch] for r, t in zip(reports, trainers)])
            out: dict[str, Any] = {**metrics, "repeats": spec.repeats, "cpu_seconds": time.process_time() - cpu0}
            if all(r is not None and r.table is not None for r in reports):
                out["table"] = json.dumps(mean_table([[row.as_dict() for row in r.table] for r in reports]))
            tune.report(out, checkpoint=tune.Checkpoint.from_directory(persisted(workdir)))
            maybe_inject(epoch + 1)
    except NonFiniteLoss as err:
        tune.report({FAILED_KEY: str(err)})


def _report_front(
    spec: StudySpec, config: dict, trainer: Trainer, proposer, result, workdir: Path, cpu0: float
) -> None:
    """The end-of-trial front step, reported once more with the final table and the checkpoint."""
    from ray import tune

    from orchestration.fronts import select_front

    name = config.get("variant") or tune.get_context().get_trial_name()
    front = select_front(spec, name, trainer, proposer, log=trainer.log)
    final = {
        "epoch": trainer.t.epochs,
        "table": json.dumps([row.as_dict() for row in result.table]),
        "front": json.dumps(front.as_dict()),
        "hypervolume": front.hypervolume,
        "cpu_seconds": time.process_time() - cpu0,
    }
    tune.report(final, checkpoint=tune.Checkpoint.from_directory(persisted(workdir)))


def _run_with_torch_trainer(spec: StudySpec, cfg: RunConfig) -> None:
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    res = spec.resources
    per_worker = {"CPU": res.cpus_per_worker}
    if res.gpus_per_worker:
        per_worker["GPU"] = res.gpus_per_worker
    trial_id = tune.get_context().get_trial_id()
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"run": cfg.model_dump(mode="json")},
        scaling_config=ray.train.ScalingConfig(
            num_workers=res.workers_per_trial,
            use_gpu=res.gpus_per_worker > 0,
            resources_per_worker=per_worker,
        ),
        run_config=ray.train.RunConfig(
            # a fixed name per trial: a retried or restored trial resumes this run's checkpoints
            name=f"train_{trial_id}",
            storage_path=str(spec.resolved_storage_path()),
            failure_config=ray.train.FailureConfig(max_failures=max(spec.failure.max_failures, 0)),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def _all_ranks_cpu_seconds(device) -> float:
    """The CPU seconds of every worker's process together (every rank reports the same epoch)."""
    import torch
    import torch.distributed as dist

    cpu = torch.tensor([time.process_time()], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(cpu)
    return float(cpu.item())


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train worker loop (DDP: gloo on CPU, nccl on GPU)."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = RunConfig.model_validate(config["run"])
    workdir = scratch_dir(f"rank{rank}")
    device = ray.train.torch.get_device()
    try:
        _restore(ray.train.get_checkpoint(), workdir)

        def callback(report: EpochReport) -> None:
            checkpoint = ray.train.Checkpoint.from_directory(persisted(workdir)) if rank == 0 else None
            metrics = {**report_metrics(report), "cpu_seconds": _all_ranks_cpu_seconds(device)}
            ray.train.report(metrics, checkpoint=checkpoint)
            maybe_inject(report.epoch, rank)

        Trainer(
            cfg,
            checkpoint_dir=workdir,
            callback=callback,
            distributed=DistributedInfo(rank=rank, world_size=world),
            device=device,
            proposer=proposer_for(cfg),
        ).fit()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(workdir.with_name(workdir.name + "-ray"), ignore_errors=True)
