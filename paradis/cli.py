"""Command line: ``python -m paradis profile MODEL ...`` and ``python -m paradis train --config FILE``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from paradis.costs import format_profiles, profile
from paradis.models import create_model, list_models, model_info
from paradis.switch import parse_switch

DEFAULT_SWITCHES = ("1.2", "[1.0]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]", "[8x0.125]")


def _profile(args: argparse.Namespace) -> int:
    info = model_info(args.model)  # defaults: the input, classes and wide factor the model is made for
    size = tuple(args.input_size or info.input_size)
    kwargs = {"wide_factor": args.wide_factor or info.default_wide_factor, "in_chans": size[0]}
    if info.num_classes is not None:
        kwargs["num_classes"] = args.num_classes or info.num_classes
    model = create_model(args.model, **kwargs)
    rows = [profile(model, parse_switch(s), size) for s in args.switches]
    classes = f"{kwargs['num_classes']} classes" if "num_classes" in kwargs else info.task
    print(f"{args.model}, {classes}, input {'x'.join(map(str, size))}, wide factor {kwargs['wide_factor']:g}\n")
    print(format_profiles(rows))
    return 0


OUTPUT_FILES = ("table.md", "table.csv", "history.json", "model.pt")


def _size(text: str) -> int:
    """A positive image dimension (``--input-size``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:50]!r} is not a whole number") from None
    if not 1 <= value <= 8192:
        raise argparse.ArgumentTypeError(f"{value} must be between 1 and 8192")
    return value


def _classes(text: str) -> int:
    value = _size(text)
    if value > 1_000_000:
        raise argparse.ArgumentTypeError(f"{value} classes is more than 1000000")
    return value


def _train(args: argparse.Namespace) -> int:
    from paradis.config import load_run_config
    from paradis.engine import run_training
    from paradis.engine.checkpoint import check_writable_dir, torch_bytes
    from paradis.engine.evaluation import table_csv, table_markdown
    from paradis.util import write_atomically

    cfg = load_run_config(args.config, args.set)
    if args.output:  # before the first step: a bad place for the results must not cost the training
        out = check_writable_dir(args.output, "--output")
        taken = [n for n in OUTPUT_FILES if (out / n).exists() and not (out / n).is_file()]
        if taken:
            raise ValueError(f"--output {str(out)!r}: {', '.join(taken)} there is not a file")
    if args.checkpoint_dir:
        check_writable_dir(args.checkpoint_dir, "--checkpoint-dir")
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
        files = {
            "table.md": (table_markdown(result.table, title) + "\n").encode(),
            "table.csv": table_csv(result.table).encode(),
            "history.json": json.dumps(result.history, indent=1).encode(),
            "model.pt": torch_bytes(result.model.state_dict()),
        }
        for name, data in files.items():
            write_atomically(out / name, data)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paradis", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile", help="multiply-adds and parameters of each switch, in total and per device")
    p.add_argument("model", choices=list_models())
    p.add_argument("--num-classes", type=_classes, help="default: the model's (registry metadata)")
    p.add_argument("--input-size", type=_size, nargs=3, metavar=("C", "H", "W"), help="default: the model's")
    p.add_argument("--wide-factor", type=float, help="default: the model's (1.2; 1.0 for super-resolution)")
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
    except (ValueError, RuntimeError, OSError) as err:  # CheckpointError, NonFiniteLoss, an unwritable file
        text = " ".join(str(err).split())
        print(f"paradis {args.command}: error: {text[:1000]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        folder = getattr(args, "checkpoint_dir", None)
        how = f"; the last checkpoint in {folder} resumes it" if folder else " (no --checkpoint-dir: nothing kept)"
        print(f"paradis {args.command}: error: interrupted{how}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
