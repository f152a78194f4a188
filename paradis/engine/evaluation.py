"""Calibrated per-switch evaluation and the paper's tables (Tables 1, 4 and 5)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

from paradis.bn import calibrate_bn
from paradis.costs import SwitchProfile, profile
from paradis.models.base import ParaDiSModel
from paradis.switch import Switch, parse_switch
from paradis.tasks import get_task
from paradis.tasks.classification import accuracy  # noqa: F401  (re-exported: the calibrated top-k measure)


@dataclass(frozen=True)
class SwitchResult:
    """One row of the table."""

    switch: str
    trained: bool
    top1: float | None  # classification; None for super-resolution
    top5: float | None
    macs: int
    max_device_macs: int
    params: int
    devices: int
    matches: str | None = None  # for US / slimmable rows: the ParaDiS switch whose cost this one matches
    psnr: float | None = None  # super-resolution: mean PSNR (dB, Y channel, border = scale)
    baseline_psnr: float | None = None  # super-resolution: bicubic upsampling's PSNR on the same images

    @property
    def score(self) -> float:
        """The table's measure: top-1 accuracy (fraction) or PSNR (dB)."""
        return self.psnr if self.psnr is not None else self.top1

    def as_dict(self) -> dict:
        return asdict(self)


def closest_in_cost(targets: dict[str, int], candidates: dict[str, int]) -> dict[str, str]:
    """For each target (name -> multiply-adds), the candidate whose multiply-adds are closest."""
    return {
        name: min(candidates, key=lambda c: (abs(candidates[c] - macs), candidates[c]))
        for name, macs in targets.items()
    }


def evaluate_switches(
    model: ParaDiSModel,
    switches: Sequence[Switch],
    *,
    calibration: Callable[[], Iterable],
    test_loader: Iterable,
    input_size: Sequence[int],
    trained: Iterable[Switch] = (),
    num_classes: int | None = 10,
    device=None,
    matches: dict[Switch, str] | None = None,
    profiles: dict[Switch, SwitchProfile] | None = None,
    task_type: str = "classification",
) -> list[SwitchResult]:
    """Calibrate BN for each switch on fresh calibration batches (models without BN need none), then
    measure test accuracy, or for ``task_type="super-resolution"`` the PSNR beside bicubic's."""
    trained_set = set(trained)
    task = get_task(task_type)
    has_bn = next(model.bn_layers(), None) is not None
    baseline = task.baseline(test_loader, device=device)
    rows = []
    for s in switches:
        if has_bn:
            calibrate_bn(model, s, calibration(), device=device)
        measured = task.evaluate(model, s, test_loader, device=device, num_classes=num_classes)
        p = (profiles or {}).get(s) or profile(model, s, input_size)
        rows.append(
            SwitchResult(
                switch=str(s),
                trained=s in trained_set,
                top1=measured.get("top1"),
                top5=measured.get("top5"),
                psnr=measured.get("psnr"),
                baseline_psnr=baseline,
                macs=p.macs,
                max_device_macs=p.max_device_macs,
                params=p.params,
                devices=len(s),
                matches=(matches or {}).get(s),
            )
        )
    return rows


def matched_widths(
    model: ParaDiSModel,
    references: Sequence[Switch],
    widths: Sequence[float],
    input_size: Sequence[int],
) -> dict[Switch, str]:
    """For a US or slimmable model: the single width closest in total multiply-adds to each reference
    switch (the paper's "corresponding US switch"), computed from the profiles."""
    ref_costs = {str(r): profile(model, r, input_size).macs for r in references}
    cand = {str(parse_switch(w)): profile(model, w, input_size).macs for w in widths}
    closest = closest_in_cost(ref_costs, cand)
    out: dict[Switch, str] = {}
    for ref, width in closest.items():
        s = parse_switch(width)
        out[s] = f"{out[s]}; {ref}" if s in out else ref
    return out


# --- formatting ------------------------------------------------------------------------------------
COLUMNS = (
    "switch",
    "trained",
    "top1",
    "top5",
    "macs",
    "max_device_macs",
    "params",
    "devices",
    "matches",
    "psnr",
    "baseline_psnr",
)


def table_markdown(rows: Sequence[SwitchResult], title: str | None = None) -> str:
    has_top5 = any(r.top5 is not None for r in rows)
    has_match = any(r.matches for r in rows)
    sr = any(r.psnr is not None for r in rows)
    head = ["switch", "trained", "PSNR (dB)" if sr else "top-1 %"] + (["top-5 %"] if has_top5 else [])
    head += ["MMACs", "max MMACs per device", "params (M)"] + (["cost matches"] if has_match else [])
    lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(head) + " |"]
    lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|")
    for r in rows:
        cells = [r.switch, "yes" if r.trained else "no", f"{r.psnr:.2f}" if sr else f"{100 * r.top1:.2f}"]
        if has_top5:
            cells.append("" if r.top5 is None else f"{100 * r.top5:.2f}")
        cells += [f"{r.macs / 1e6:.2f}", f"{r.max_device_macs / 1e6:.2f}", f"{r.params / 1e6:.3f}"]
        if has_match:
            cells.append(r.matches or "")
        lines.append("| " + " | ".join(cells) + " |")
    baseline = next((r.baseline_psnr for r in rows if r.baseline_psnr is not None), None)
    if baseline is not None:
        lines += ["", f"Bicubic upsampling on the same images: {baseline:.2f} dB (PSNR on Y, border = scale)."]
    return "\n".join(lines)


def table_csv(rows: Sequence[SwitchResult]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    for r in rows:
        writer.writerow(r.as_dict())
    return buf.getvalue()
