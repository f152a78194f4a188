"""Command line: ``python -m paradis profile MODEL ...`` and ``python -m paradis train --config FILE``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from paradis.costs import format_profiles, profile
from paradis.models import create_model, list_models
from paradis.switch import parse_switch

DEFAULT_SWITCHES = ("1.2", "[1.0]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]", "[8x0.125]")


def _profile(args: argparse.Namespace) -> int:
    model = create_model(
        args.model, num_classes=args.num_classes, wide_factor=args.wide_factor, in_chans=args.input_size[0]
    )
    switches = [parse_switch(s) for s in args.switches]
    rows = [profile(model, s, args.input_size) for s in switches]
    size = "x".join(str(v) for v in args.input_size)
    print(f"{args.model}, {args.num_classes} classes, input {size}, wide factor {args.wide_factor:g}\n")
    print(format_profiles(rows))
    return 0


def _train(args: argparse.Namespace) -> int:
    from paradis.config import load_run_config
    from paradis.engine import run_training
    from paradis.engine.evaluation import table_csv, table_markdown

    cfg = load_run_config(args.config, args.set)
    result = run_training(
        cfg,
        checkpoint_dir=args.checkpoint_dir,
        resume=not args.restart,
        log=lambda line: print(line, flush=True),
    )
    title = f"{result.method}, {cfg.model.name} on {cfg.data.name}, {result.seconds:.0f} s"
    print()
    print(table_markdown(result.table, title))
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text(table_markdown(result.table, title) + "\n")
        (out / "table.csv").write_text(table_csv(result.table))
        (out / "history.json").write_text(json.dumps(result.history, indent=1))
        torch.save(result.model.state_dict(), out / "model.pt")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paradis", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile", help="multiply-adds and parameters of each switch, in total and per device")
    p.add_argument("model", choices=list_models())
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--input-size", type=int, nargs=3, default=(1, 28, 28), metavar=("C", "H", "W"))
    p.add_argument("--wide-factor", type=float, default=1.2)
    p.add_argument("--switches", nargs="+", default=list(DEFAULT_SWITCHES))
    p.set_defaults(fn=_profile)
    t = sub.add_parser("train", help="one training run from a config file (for debugging; studies use Ray)")
    t.add_argument("--config", help="YAML run configuration (model, data, training, evaluation)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    t.add_argument("--checkpoint-dir", help="save a checkpoint every epoch here, and resume from it")
    t.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--output", help="write table.md, table.csv, history.json and model.pt here")
    t.set_defaults(fn=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ValueError as err:
        print(f"paradis {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
