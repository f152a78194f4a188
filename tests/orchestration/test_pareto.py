"""The one hypervolume and non-domination of every front (PareCO's, a multi-objective search's),
checked against moocore's."""

import random

import pytest

from orchestration.pareto import hypervolume, hypervolume_min, non_dominated_min, to_min

moocore = pytest.importorskip("moocore")
np = pytest.importorskip("numpy")


@pytest.mark.parametrize("dims", [2, 3, 4])
@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_equals_moocore(dims, seed):
    rng = random.Random(seed * 10 + dims)
    points = [[rng.random() for _ in range(dims)] for _ in range(rng.randint(1, 25))]
    ref = [1.1] * dims
    assert hypervolume_min(points, ref) == pytest.approx(float(moocore.hypervolume(np.array(points), ref=ref)))
    nd = set(non_dominated_min(points))
    assert nd == set(np.flatnonzero(moocore.is_nondominated(np.array(points))).tolist())


def test_cost_accuracy_fronts_and_mixed_directions():
    front = [(0.2, 0.8), (0.5, 0.9), (1.0, 0.95)]
    expected = float(moocore.hypervolume(np.array([(c, -a) for c, a in front]), ref=[1.0, -0.5]))
    assert hypervolume(front, (1.0, 0.5)) == pytest.approx(expected) == pytest.approx(0.29)
    assert to_min([0.9, 100.0], ["max", "min"]) == (-0.9, 100.0)
