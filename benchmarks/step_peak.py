"""Know the limit: this CPU's own peak (a large fp32 GEMM and a large dense convolution in oneDNN, on
all of torch's threads) against where the time of a ParaDiS Wide IPKD training step goes.

The step is the quickstart study's: mobilenet_v1_small on a Fashion-MNIST-shaped batch (1x28x28,
batch 128), switches [1.0], [0.5, 0.5], [4x0.25] distilled from the wide model (wide factor 1.2), SGD
with Nesterov momentum. A few steps run under ``torch.profiler``; each operation's self CPU time goes
to its kind (dense or depthwise convolution, batch norm, elementwise, loss, optimizer, other ops, Python
overhead). A backward operation takes the kind of the forward operation that made its autograd node
(linked by sequence number). Convolution FLOP come from the shapes: 2 * N * Cout * Hout * Wout *
(Cin / groups) * kh * kw forward, and as much again for each gradient the backward computes (input and
weight: 2x forward; the stem's input needs none: 1x).

Rows: each convolution kind's time against its FLOP at the measured convolution peak (the ratio is
how many times the peak time it takes), and the unprofiled step against all its convolution FLOP at
that peak.

    python -m benchmarks.step_peak [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from benchmarks.common import Row, add_common_args, median_time, report
from paradis import create_model
from paradis.config import TrainingConfig
from paradis.engine.optim import make_optimizer
from paradis.methods import make_planner
from paradis.methods.step import train_step

SWITCHES = ["[1.0]", "[0.5, 0.5]", "[4x0.25]"]
DENSE, DEPTHWISE, BN, ELEMENTWISE = "dense conv", "depthwise conv", "batch norm", "elementwise"
LOSS, OPTIMIZER, OTHER, OVERHEAD = "loss/distillation", "optimizer", "other ops", "Python overhead"
KINDS = (DENSE, DEPTHWISE, BN, ELEMENTWISE, LOSS, OPTIMIZER, OTHER, OVERHEAD)
PHASES = ("forward", "backward", "optimizer")
MODEL_LABEL, BACKWARD_LABEL, STEP_LABEL = "step_peak:model.forward", "step_peak:backward", "step_peak:step"
ELEMENTWISE_OPS = {
    f"aten::{op}{suffix}"
    for op in ("relu", "relu6", "clamp", "clamp_min", "hardtanh", "threshold", "add", "sub", "mul", "div")
    for suffix in ("", "_")
}


# --- FLOP counting ------------------------------------------------------------------------------


def conv_kind(weight_shape, groups: int) -> str:
    """Depthwise when every group reads one input channel (and there are several groups), else dense."""
    return DEPTHWISE if groups > 1 and weight_shape[1] == 1 else DENSE


def conv_flops(input_shape, weight_shape, stride, padding, dilation, groups: int) -> int:
    """Forward FLOP of a 2-D convolution: 2 * N * Cout * Hout * Wout * (Cin / groups) * kh * kw."""
    n, cout, cin_per_group = input_shape[0], weight_shape[0], weight_shape[1]
    out_hw = 1
    for size, k, s, p, d in zip(input_shape[2:], weight_shape[2:], stride, padding, dilation):
        out_hw *= (size + 2 * p - d * (k - 1) - 1) // s + 1
    assert cin_per_group * groups == input_shape[1], (input_shape, weight_shape, groups)
    return 2 * n * cout * out_hw * cin_per_group * weight_shape[2] * weight_shape[3]


def event_conv_flops(ev) -> tuple[str, int] | None:
    """``(kind, FLOP)`` of a profiled ``aten::convolution`` (forward) or ``aten::convolution_backward``
    event (forward FLOP times the gradients it computes, input and weight); ``None`` for other events
    and transposed convolutions."""
    shapes, args = ev.input_shapes, ev.concrete_inputs
    if ev.name == "aten::convolution" and not args[6]:
        x, w = shapes[0], shapes[1]
        stride, padding, dilation, groups = args[3], args[4], args[5], args[8]
        factor = 1
    elif ev.name == "aten::convolution_backward" and not args[7]:
        x, w = shapes[1], shapes[2]
        stride, padding, dilation, groups = args[4], args[5], args[6], args[9]
        factor = int(args[10][0]) + int(args[10][1])  # output_mask: grad input, grad weight, grad bias
    else:
        return None
    return conv_kind(w, groups), factor * conv_flops(x, w, stride, padding, dilation, groups)


# --- the machine's peak -------------------------------------------------------------------------


def gemm_peak(n: int, warmup: int, repeats: int) -> float:
    """GFLOP/s of an n x n x n fp32 ``torch.mm`` (2 n^3 FLOP), the median of ``repeats`` calls."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = median_time(lambda: torch.mm(a, b), torch.device("cpu"), warmup=warmup, repeats=repeats)
    return 2 * n**3 / t / 1e9


def conv_peak(batch: int, channels: int, hw: int, warmup: int, repeats: int) -> float:
    """GFLOP/s of a dense 3x3 convolution, channels to channels at hw x hw, channels_last, no grad."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, hw, hw).contiguous(memory_format=torch.channels_last)
    flop = conv_flops(x.shape, conv.weight.shape, (1, 1), (1, 1), (1, 1), 1)
    with torch.no_grad():
        t = median_time(lambda: conv(x), torch.device("cpu"), warmup=warmup, repeats=repeats)
    return flop / t / 1e9


# --- the training step and its profile -----------------------------------------------------------


def make_step(batch: int, channels_last: bool = False):
    """The quickstart study's ParaDiS Wide IPKD step on random Fashion-MNIST-shaped data: ``(step, model)``;
    ``channels_last``: weights and input in NHWC, as the quickstart trains."""
    torch.manual_seed(0)
    cfg = TrainingConfig(
        method="paradis",
        switches=SWITCHES,
        wide_factor=1.2,
        distillation="wide",
        optimizer={"lr": 0.2, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    )
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model("mobilenet_v1_small", num_classes=10, in_chans=1, wide_factor=cfg.wide_factor).train()
    model = model.to(memory_format=layout)
    optimizer = make_optimizer(model, cfg)
    plan = make_planner(cfg).next_plan()
    x, y = torch.randn(batch, 1, 28, 28).contiguous(memory_format=layout), torch.randint(0, 10, (batch,))
    return (lambda: train_step(model, optimizer, x, y, plan)), model


@contextlib.contextmanager
def phase_labels(model: torch.nn.Module):
    """Label the model's forward passes and every ``Tensor.backward`` call for the profiler (the
    optimizer step carries torch's own ``Optimizer.step#`` label); undone on exit."""
    open_ranges = []

    def enter(module, args):
        open_ranges.append(record_function(MODEL_LABEL).__enter__())

    def leave(module, args, out):
        open_ranges.pop().__exit__(None, None, None)

    original = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        with record_function(BACKWARD_LABEL):
            return original(self, *args, **kwargs)

    handles = [model.register_forward_pre_hook(enter), model.register_forward_hook(leave)]
    torch.Tensor.backward = backward
    try:
        yield
    finally:
        torch.Tensor.backward = original
        for h in handles:
            h.remove()


def profile_steps(step, model: torch.nn.Module, steps: int) -> list:
    """The top-level profiler events of ``steps`` labelled steps."""
    with phase_labels(model), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            with record_function(STEP_LABEL):
                step()
    return [e for e in prof.events() if e.name == STEP_LABEL]


# --- attribution ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """Self CPU seconds of one kind per phase, and the FLOP of its convolutions (whole profile)."""

    forward: float = 0.0
    backward: float = 0.0
    optimizer: float = 0.0
    flop: int = 0

    @property
    def total(self) -> float:
        return self.forward + self.backward + self.optimizer


def _find(ev, name: str):
    """``ev`` or its first descendant called ``name``; ``None`` if none is."""
    if ev.name == name:
        return ev
    for child in ev.cpu_children:
        found = _find(child, name)
        if found is not None:
            return found
    return None


def forward_kind(ev) -> str:
    """The kind of an operation the model's forward calls directly."""
    if "conv" in ev.name:
        conv = _find(ev, "aten::convolution")
        if conv is not None:
            return event_conv_flops(conv)[0]
    if "batch_norm" in ev.name:
        return BN
    return ELEMENTWISE if ev.name in ELEMENTWISE_OPS else OTHER


def _kind_of(ev, phase: str, in_model: bool, seq_kinds: dict[int, str]) -> str:
    """The kind of an operation not inside one already classified (and record a forward one's autograd
    sequence number, the last operation with a number being the one that made the node)."""
    if phase == "optimizer":
        return OPTIMIZER
    if phase == "backward":
        return seq_kinds.get(ev.sequence_nr, OTHER) if ev.name.startswith("autograd::engine") else OTHER
    kind = forward_kind(ev) if in_model else LOSS
    if ev.sequence_nr >= 0:
        seq_kinds[ev.sequence_nr] = kind
    return kind


def _walk(ev, phase: str, in_model: bool, kind: str | None, seq_kinds: dict, tallies: dict) -> None:
    """Add ``ev``'s self time (and convolution FLOP) to its kind, then walk its children in time order."""
    if ev.name.startswith("Optimizer."):
        phase, kind = "optimizer", OPTIMIZER
    elif ev.name == BACKWARD_LABEL:
        phase = "backward"
    elif ev.name == MODEL_LABEL:
        in_model = True
    elif kind is None and not ev.name.startswith("step_peak:"):
        kind = _kind_of(ev, phase, in_model, seq_kinds)
    tally = tallies[kind or OVERHEAD]
    setattr(tally, phase, getattr(tally, phase) + ev.self_cpu_time_total / 1e6)
    conv = event_conv_flops(ev)
    if conv is not None:
        tallies[conv[0]].flop += conv[1]
    for child in sorted(ev.cpu_children, key=lambda e: e.time_range.start):
        _walk(child, phase, in_model, kind, seq_kinds, tallies)


def attribute(step_events: list) -> dict[str, Tally]:
    """Per-kind tallies summed over the profiled steps."""
    tallies = {k: Tally() for k in KINDS}
    seq_kinds: dict[int, str] = {}
    for ev in sorted(step_events, key=lambda e: e.time_range.start):
        _walk(ev, "forward", False, None, seq_kinds, tallies)
    return tallies


# --- the report ----------------------------------------------------------------------------------


def table(tallies: dict[str, Tally], steps: int, peak: float) -> list[str]:
    """Readable lines: per kind its ms per step by phase, share of the step, GFLOP/s, fraction of peak."""
    step_s = sum(t.total for t in tallies.values()) / steps
    head = f"{'kind':<18} {'fwd ms':>8} {'bwd ms':>8} {'opt ms':>8} {'ms/step':>8} {'share':>6} "
    lines = [head + f"{'GFLOP/step':>10} {'GFLOP/s':>8} {'of peak':>8}"]
    for kind, t in tallies.items():
        ms = [v / steps * 1e3 for v in (t.forward, t.backward, t.optimizer, t.total)]
        line = f"{kind:<18} " + " ".join(f"{v:8.2f}" for v in ms) + f" {t.total / steps / step_s:6.1%}"
        if t.flop:
            rate = t.flop / t.total / 1e9
            line += f" {t.flop / steps / 1e9:10.3f} {rate:8.1f} {rate / peak:8.1%}"
        lines.append(line)
    flop = sum(t.flop for t in tallies.values())
    lines.append(f"{'step (profiled)':<18} {'':>26} {step_s * 1e3:8.2f} {1:6.1%} {flop / steps / 1e9:10.3f}")
    return lines


def rows_for(tallies: dict[str, Tally], steps: int, step_s: float, case: str, peaks: dict) -> list[Row]:
    """Each convolution kind against its FLOP at the convolution peak, and the unprofiled step against
    all its convolution FLOP at that peak."""
    peak, rows = peaks["conv_gflops"] * 1e9, []
    for kind in (DENSE, DEPTHWISE):
        t = tallies[kind]
        if t.flop:
            rows.append(
                Row("step_peak", case, kind, t.total / steps, "at conv peak", t.flop / steps / peak, extra=peaks)
            )
    flop = sum(t.flop for t in tallies.values()) / steps
    rows.append(Row("step_peak", case, "whole step", step_s, "its conv FLOP at peak", flop / peak, extra=peaks))
    return rows


def run(args: argparse.Namespace) -> list[Row]:
    warmup, repeats = (1, 3) if args.quick else (2, 5)
    n, (cb, cc) = (256, (4, 32)) if args.quick else (2048, (64, 128))
    peaks = {"gemm_gflops": gemm_peak(n, warmup, repeats), "conv_gflops": conv_peak(cb, cc, 28, warmup, repeats)}
    print(f"peak on {torch.get_num_threads()} threads: GEMM {n}^3 fp32 {peaks['gemm_gflops']:.1f} GFLOP/s, ", end="")
    print(f"conv b{cb} {cc}->{cc} 3x3 28x28 NHWC {peaks['conv_gflops']:.1f} GFLOP/s")
    batch = 8 if args.quick else args.batch
    step, model = make_step(batch, args.channels_last)
    step_s = median_time(step, torch.device("cpu"), warmup=warmup + 1, repeats=repeats)
    steps = 1 if args.quick else args.steps
    tallies = attribute(profile_steps(step, model, steps))
    case = f"mobilenet_v1_small b{batch} wide IPKD" + (" NHWC" if args.channels_last else "")
    print(f"\n{case} {' '.join(SWITCHES)}: {step_s * 1e3:.1f} ms per step unprofiled")
    print("\n".join(table(tallies, steps, peaks["conv_gflops"])))
    return rows_for(tallies, steps, step_s, case, peaks)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (default 3)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC weights and input (as the quickstart)")
    args = parser.parse_args(argv)
    if args.device != "cpu" or args.bf16:
        print("step_peak measures fp32 on the CPU only: skipped")
        return []
    rows = run(args)
    report(rows, args, "ParaDiS training step against this CPU's peak")
    return rows


if __name__ == "__main__":
    main()
