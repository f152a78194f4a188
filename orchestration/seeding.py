"""The study's seed rule, checked when a spec is validated: seeds that pair are each trained as long as
the others, each once, under one name (``repeats``, ``repeat_from``, ``compare``)."""

from __future__ import annotations

from typing import Any


def check_seeds(spec: Any) -> None:
    """Seeds that pair in ``spec`` (a StudySpec being validated, which calls this: no import of it
    here): each trained as long as the others, each once, under one name."""
    if spec.compare is not None and spec.repeats < 2:
        raise ValueError(f"compare: {spec.compare!r} pairs seeds; it needs repeats of 2 or more (repeats 1)")
    if spec.search.kind == "grid" and spec.search.samples > 1:
        raise ValueError(
            f"search.samples {spec.search.samples} repeats a grid with the same seeds: every trial would "
            f"train {spec.search.samples} times alike (with repeats, counted as more seeds than trained); "
            "give the seeds as repeats"
        )
    seeded = spec.repeats > 1 or spec.repeat_from > 0  # the runner sets each trial's seed
    if not seeded:
        return
    what = f"repeats {spec.repeats}" + (f" from {spec.repeat_from}" if spec.repeat_from else "")
    if spec.scheduler.kind == "asha" and spec.search.kind == "grid":
        raise ValueError(
            f"{what}: ASHA would stop a grid configuration's seeds at different epochs, and they would "
            "be averaged as if trained alike; use scheduler.kind none with repeats"
        )
    searched = [
        f"search.space.{k}"
        for k, p in spec.search.space.items()
        if sets_seed(k, None) or any(sets_seed(k, v) for v in p.values())
    ]
    searched += [
        f"search.variants.{v}" for v, keys in spec.search.variants.items() if any(map(sets_seed, keys, keys.values()))
    ]
    if searched:
        raise ValueError(
            f"{what}: {searched[0]} sets training.seed, which repeats set (seed + repeat index): the same "
            "seed would train twice under two names, and seeds of one repeat would not pair"
        )


def sets_seed(key: str, value: Any) -> bool:
    """Whether setting ``key`` to ``value`` (a dotted key; a mapping merges) sets ``training.seed``."""
    if key == "training.seed":
        return True
    if not "training.seed".startswith(key + "."):
        return False
    node = value
    for part in "training.seed"[len(key) + 1 :].split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
