"""Where a deploy command's trained model comes from: a checkpoint file, or an MLflow trial run."""

from __future__ import annotations

import argparse
import tempfile

from paradis.deploy import ExportError, TrainedModel, load_trained
from paradis.deploy.trained import accuracy_from_metrics
from paradis.util import first_line

# a trial run's trained model: the model alone (tracking.checkpoints final), else the full checkpoint
MODEL_ARTIFACTS = ("checkpoint/model.pt", "checkpoint/checkpoint.pt")


def load_from_mlflow(run_id: str, tracking_uri: str | None = None, **kwargs) -> TrainedModel:
    """The trained model of a tracked trial run (:data:`MODEL_ARTIFACTS`), with the run's
    ``acc/<switch>`` metrics as accuracies; read through the tracking interface."""
    from orchestration.tracking import open_tracker, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    tracker = open_tracker(uri, experiment="")
    try:
        metrics = tracker.run_metrics(run_id)
    except Exception as err:
        raise ExportError(f"MLflow run {run_id!r} not found in {uri}: {first_line(err, 200)}") from None
    with tempfile.TemporaryDirectory(prefix="paradis-deploy-") as d:
        path, errors = None, []
        for artifact in MODEL_ARTIFACTS:
            try:
                path = tracker.download(run_id, artifact, d)
                break
            except Exception as err:
                errors.append(first_line(err, 120))
        if path is None:
            raise ExportError(
                f"MLflow run {run_id!r} has no trained model ({' or '.join(MODEL_ARTIFACTS)}; with "
                "tracking.checkpoints none it logs none; an Optuna trial with repeats logs one per seed, "
                "checkpoint/seed<k>/model.pt: download one and pass it as --checkpoint): "
                f"{errors[-1]}"
            )
        trained = load_trained(path, accuracy=accuracy_from_metrics(metrics), **kwargs)
    trained.source = f"mlflow run {run_id} ({uri})"
    return trained


def load_source(args: argparse.Namespace) -> TrainedModel:
    """The trained model a command names: ``--run-id`` (MLflow) or ``--checkpoint``."""
    kwargs = {"model_name": args.model, "input_size": args.input_size}
    if args.wide_factor is not None:
        kwargs["wide_factor"] = args.wide_factor
    if args.run_id:
        return load_from_mlflow(args.run_id, args.tracking_uri, **kwargs)
    return load_trained(args.checkpoint, **kwargs)
