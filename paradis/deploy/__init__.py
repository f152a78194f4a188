"""Deployment of a trained switch across devices (pure PyTorch): per-device export and manifest,
loading, the device worker that the Ray pool wraps, and the planner; edge formats (ONNX, int8 ONNX,
ExecuTorch) in :mod:`paradis.deploy.onnx`, whose runtimes are imported only when used."""

from paradis.deploy.export import (
    ExportError,
    Manifest,
    TrainedModel,
    evaluate_export,
    export_switch,
    load_artifact,
    load_fusion,
    load_program,
    load_state,
    load_subnetwork,
    load_trained,
    read_manifest,
    switch_table,
    verify_export,
)
from paradis.deploy.onnx import EdgeOptions
from paradis.deploy.planner import Device, Plan, PlanError, SwitchOption, best_fallback, parse_device, plan, read_table
from paradis.deploy.timing import measure_latency
from paradis.deploy.worker import DeviceWorker, PartMissing

__all__ = [
    "Device",
    "DeviceWorker",
    "EdgeOptions",
    "ExportError",
    "Manifest",
    "PartMissing",
    "Plan",
    "PlanError",
    "SwitchOption",
    "TrainedModel",
    "best_fallback",
    "evaluate_export",
    "export_switch",
    "load_artifact",
    "load_fusion",
    "load_program",
    "load_state",
    "load_subnetwork",
    "load_trained",
    "measure_latency",
    "parse_device",
    "plan",
    "read_manifest",
    "read_table",
    "switch_table",
    "verify_export",
]
