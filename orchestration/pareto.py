"""Pareto-front arithmetic, in one place for every multi-objective output (PareCO's fronts, the
non-dominated trials of a multi-objective search): non-domination and the hypervolume."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` when every objective (minimized) is no worse and one is better."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated_min(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (all objectives minimized); equal points all stay."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]


def hypervolume_min(points: Iterable[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume dominated by ``points`` (all objectives minimized) and bounded by ``reference``;
    points not strictly better than the reference in every objective add nothing. Exact, by slicing
    along the first objective (fine for the few dozen points of a study)."""
    ref = tuple(float(r) for r in reference)
    pts = [tuple(float(v) for v in p) for p in points]
    pts = [p for p in pts if all(v < r for v, r in zip(p, ref))]
    if not pts:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    pts = [pts[i] for i in non_dominated_min(pts)]
    pts.sort()
    volume = 0.0
    for k, p in enumerate(pts):
        upper = pts[k + 1][0] if k + 1 < len(pts) else ref[0]
        if upper > p[0]:
            volume += (upper - p[0]) * hypervolume_min([q[1:] for q in pts[: k + 1]], ref[1:])
    return volume


def to_min(values: Sequence[float], modes: Sequence[str]) -> tuple[float, ...]:
    """Objective values as minimized ones (a maximized objective negated)."""
    return tuple(v if m == "min" else -v for v, m in zip(values, modes))


def non_dominated(points: Iterable[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(cost, accuracy)`` no other point beats (lower cost, higher accuracy)."""
    return non_dominated_min([(c, -a) for c, a in points])


def hypervolume(points: Iterable[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by ``(cost, accuracy)`` points and bounded by ``reference = (cost, accuracy)``:
    only what costs less and scores more than the reference counts."""
    return hypervolume_min([(c, -a) for c, a in points], (reference[0], -reference[1]))
