"""Checks and verdicts: a check is the statement ``a - b  op  bound`` about per-seed differences of
two accuracies, paired by repeat index; a claim is *reproduced* when every check holds at 2.5 %
one-sided (an intersection-union test, 5 % split between two looks), *not reproduced* when Holm's
correction over its checks still finds one failing, and *inconclusive* otherwise."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from orchestration.report.seeds import (
    Pairs,
    SeedValues,
    interval95,
    mean_sd,
    paired,
)

VERDICTS = ("reproduced", "not reproduced", "inconclusive")

# The level of a claim's verdict: 5 % overall, split between at most two looks at the data (the pilot
# seeds, then one round of extra seeds by ``orchestration.report decide``): 2.5 % at each look.
ALPHA = 0.05
LOOKS = 2
ALPHA_LOOK = ALPHA / LOOKS


@dataclass
class Check:
    """The statement ``a - b  op  bound`` (points) over paired seeds."""

    what: str
    switch: str
    a: SeedValues | dict[int, float]
    b: SeedValues | dict[int, float]
    op: str  # ">=" or "<="
    bound: float  # points
    studies: tuple[str, ...] = ()  # the studies whose seeds it pairs (where extra seeds would go)

    @property
    def pairs(self) -> Pairs:
        return paired(self.a, self.b, scale=100.0)

    @property
    def diffs(self) -> list[float]:
        return list(self.pairs.diffs)

    def interval(self) -> tuple[float, float, float]:
        d = self.diffs
        return interval95(d) if d else (math.nan, math.nan, math.nan)

    def p_values(self) -> tuple[float, float]:
        """One-sided Student's t p-values over the paired seeds: ``(holds, fails)``, the evidence that
        the statement holds (against its negation) and that it fails (against it). ``(1, 1)`` with
        fewer than two seeds."""
        from scipy.stats import t as student_t

        d = self.diffs
        if len(d) < 2:
            return 1.0, 1.0
        mean, sd, n = mean_sd(d)
        gap = (mean - self.bound) if self.op == ">=" else (self.bound - mean)  # > 0: on the statement's side
        if sd == 0:
            return (0.0, 1.0) if gap > 0 else (1.0, 0.0) if gap < 0 else (1.0, 1.0)
        t = gap / (sd / math.sqrt(n))
        return float(student_t.sf(t, n - 1)), float(student_t.cdf(t, n - 1))

    def holds_exactly(self) -> bool | None:
        """Whether every pair's difference satisfies the statement (for single values such as the
        paper's own, to the printed hundredth); ``None`` without a pair."""
        d = self.diffs
        if not d:
            return None
        ok = (lambda x: x >= self.bound) if self.op == ">=" else (lambda x: x <= self.bound)
        return all(ok(round(x, 6)) for x in d)

    def verdict(self, alpha: float = ALPHA_LOOK) -> str:
        """This check alone, uncorrected: its statement shown to hold (or to fail) at level ``alpha``
        one-sided; at 2.5 % this is where the 95 % interval lies."""
        holds, fails = self.p_values()
        return "reproduced" if holds <= alpha else "not reproduced" if fails <= alpha else "inconclusive"

    def seeds_to_decide(self, checks: int = 1, limit: int = 1000) -> int | None:
        """Fewest seeds that would decide the check, were the mean difference and its spread the ones
        measured: its statement shown to hold at 2.5 % one-sided, or (the mean on the other side of the
        bound) shown to fail at Holm's strictest level over the claim's ``checks``, 2.5 % / checks.
        ``None``: no spread to go by, the mean on the bound, or over ``limit``."""
        from scipy.stats import t as student_t

        d = self.diffs
        if len(d) < 2:
            return None
        mean, sd, _ = mean_sd(d)
        holds_side = (mean > self.bound) if self.op == ">=" else (mean < self.bound)
        alpha = ALPHA_LOOK if holds_side else ALPHA_LOOK / max(1, checks)
        gap = abs(mean - self.bound)
        if sd == 0 or gap == 0:
            return None
        n = len(d)
        while n <= limit and float(student_t.ppf(1 - alpha, n - 1)) * sd / math.sqrt(n) >= gap:
            n += 1
        return n if n <= limit else None


def holm(p: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down rejections of ``p`` at family-wise level ``alpha``."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out = [False] * len(p)
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        out[i] = True
    return out


def check_verdicts(checks: Sequence[Check], alpha: float = ALPHA_LOOK, exact: bool = False) -> list[str]:
    """Each check's verdict within its claim. A check is *reproduced* when its statement is shown to
    hold at ``alpha`` (one-sided); a claim is the conjunction of its checks, so this needs no correction
    (an intersection-union test). It is *not reproduced* only when Holm's correction over the claim's
    checks still finds it failing, so a claim of many checks is not refuted by chance. ``exact``: single
    values (the paper's own numbers) are compared as they are."""
    if exact:
        verdicts = [c.holds_exactly() for c in checks]
        return ["inconclusive" if v is None else "reproduced" if v else "not reproduced" for v in verdicts]
    p = [c.p_values() for c in checks]
    fails = holm([f for _, f in p], alpha)
    return [
        "reproduced" if h <= alpha else "not reproduced" if failed else "inconclusive"
        for (h, _), failed in zip(p, fails)
    ]


def claim_verdict(checks: Sequence[Check], alpha: float = ALPHA_LOOK, exact: bool = False) -> str:
    """Reproduced when every check is, not reproduced when any is (after Holm), else inconclusive."""
    verdicts = set(check_verdicts(checks, alpha, exact))
    if not checks:
        return "inconclusive"
    if "not reproduced" in verdicts:
        return "not reproduced"
    return "reproduced" if verdicts == {"reproduced"} else "inconclusive"
