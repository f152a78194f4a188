"""Deploy a trained switch across devices: a device pool on Ray actors, and the command line.

::

    python -m orchestration.deploy export --checkpoint ckpt/checkpoint.pt --switch "[0.5, 0.5]" --output out/
    python -m orchestration.deploy export --run-id 1a2b3c --switch "[4x0.25]" --output out/ --format onnx
    python -m orchestration.deploy plan --checkpoint ckpt/ --device a:1.0 --device b:0.5 --budget-ms 5 \\
        --measure-batch 64
    python -m orchestration.deploy serve-bench --checkpoint ckpt/ --switch "[0.5, 0.25, 0.25]" --switch "[0.5, 0.5]"
    python -m orchestration.deploy verify out/

:mod:`~orchestration.deploy.pool` is the device pool (:class:`DevicePool`, :class:`DeviceFailure`),
:mod:`~orchestration.deploy.cli` the parser and :func:`main`, :mod:`~orchestration.deploy.commands` the
commands, :mod:`~orchestration.deploy.checks` the checks of their values, and
:mod:`~orchestration.deploy.sources` where a trained model comes from. Ray is imported only when used.
"""

from orchestration.deploy.cli import build_parser, main
from orchestration.deploy.pool import DeviceFailure, DevicePool
from orchestration.deploy.sources import load_from_mlflow

__all__ = ["DeviceFailure", "DevicePool", "build_parser", "load_from_mlflow", "main"]
