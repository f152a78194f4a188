"""The Ray Tune function trainable of a study, and the Ray Train worker loop for several workers.

Both paths run :func:`paradis.trainer.run_training`; they differ only in how progress is reported
(``ray.tune.report`` in the trial process, ``ray.train.report`` from each DDP worker).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from orchestration.faults import maybe_inject
from orchestration.pareco import proposer_for
from orchestration.spec import StudySpec, run_config_for
from paradis.config import RunConfig
from paradis.trainer import DistributedInfo, EpochReport, NonFiniteLoss, run_training

FAILED_KEY = "failed_reason"


def report_metrics(report: EpochReport) -> dict[str, Any]:
    """What a trial reports each epoch: the numeric metrics, and the switch table when evaluated."""
    metrics: dict[str, Any] = dict(report.metrics)
    if report.table is not None:
        metrics["table"] = json.dumps([row.as_dict() for row in report.table])
    return metrics


def _restore(checkpoint, workdir: Path) -> None:
    if checkpoint is not None:
        checkpoint.to_directory(str(workdir))


def study_trial(config: dict[str, Any], spec_json: str) -> None:
    """Ray Tune function trainable: one trial of the study."""
    spec = StudySpec.model_validate_json(spec_json)
    cfg = run_config_for(spec, config)
    if spec.resources.workers_per_trial > 1:
        _run_with_torch_trainer(spec, cfg)
        return
    from ray import tune

    workdir = Path(tempfile.mkdtemp(prefix="paradis-trial-"))
    try:
        _restore(tune.get_checkpoint(), workdir)

        def callback(report: EpochReport) -> None:
            tune.report(report_metrics(report), checkpoint=tune.Checkpoint.from_directory(str(workdir)))
            maybe_inject(report.epoch)

        try:
            run_training(cfg, checkpoint_dir=workdir, callback=callback, proposer=proposer_for(cfg))
        except NonFiniteLoss as err:
            # deterministic: retrying would diverge again. The trial ends, marked failed with the reason.
            tune.report({FAILED_KEY: str(err)})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train worker loop (DDP: gloo on CPU, nccl on GPU)."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = RunConfig.model_validate(config["run"])
    workdir = Path(tempfile.mkdtemp(prefix=f"paradis-rank{rank}-"))
    try:
        _restore(ray.train.get_checkpoint(), workdir)

        def callback(report: EpochReport) -> None:
            checkpoint = ray.train.Checkpoint.from_directory(str(workdir)) if rank == 0 else None
            ray.train.report(report_metrics(report), checkpoint=checkpoint)
            maybe_inject(report.epoch, rank)

        run_training(
            cfg,
            checkpoint_dir=workdir,
            callback=callback,
            distributed=DistributedInfo(rank=rank, world_size=world),
            device=ray.train.torch.get_device(),
            proposer=proposer_for(cfg),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
