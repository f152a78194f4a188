"""Deployment of a trained switch across devices (pure PyTorch): the trained model (trained), the
manifest (manifest), per-device export (export) and loading (load), the device worker that the Ray
pool wraps, and the planner with its per-switch table (planner, table) and latency tables (latency);
edge formats (ONNX, int8 ONNX, ExecuTorch) in :mod:`paradis.deploy.onnx`, whose runtimes are imported
only when used."""

from paradis.deploy.export import export_switch
from paradis.deploy.files import ExportError
from paradis.deploy.load import (
    evaluate_export,
    load_artifact,
    load_fusion,
    load_program,
    load_state,
    load_subnetwork,
    read_manifest,
    verify_export,
)
from paradis.deploy.manifest import Manifest
from paradis.deploy.onnx import EdgeOptions
from paradis.deploy.planner import Device, Plan, PlanError, SwitchOption, best_fallback, parse_device, plan
from paradis.deploy.table import read_table, switch_table
from paradis.deploy.timing import measure_latency
from paradis.deploy.trained import TrainedModel, load_trained
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
