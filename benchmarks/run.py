"""Run every benchmark (or the ones named), each printing its own table of ratios.

python -m benchmarks.run                      # all, on CPU (about 10 minutes on 2 cores)
python -m benchmarks.run switch_execution     # one
python -m benchmarks.run --device cuda --json results.json
"""

from __future__ import annotations

import argparse
import importlib

from benchmarks.common import add_common_args, report

BENCHMARKS = (
    "switch_execution",
    "training_step",
    "step_peak",
    "calibration",
    "data_loading",
    "orchestration_overhead",
    "deploy_pool",
    "onnx_runtime",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
    common = ["--device", args.device] + ["--quick"] * args.quick + ["--bf16"] * args.bf16
    common += ["--json", args.json] if args.json else []
    rows = []
    for name in args.names or BENCHMARKS:
        result = importlib.import_module(f"benchmarks.{name}").main(common)
        if isinstance(result, int) and result != 0:
            raise SystemExit(result)
        rows += result if isinstance(result, list) else []
    args.json = None  # each benchmark wrote its own rows
    report(rows, args, "summary")


if __name__ == "__main__":
    main()
