"""The one registry mechanism: every kind of named entry refuses a duplicate, lists sorted names and
raises the same error, naming the known entries, for an unknown name."""

import pytest

from orchestration.report.claims import CLAIMS
from orchestration.search import SEARCHES
from paradis.data.registry import DATASETS, dataset_info, list_datasets
from paradis.methods.base import METHODS, get_method, list_methods
from paradis.models.registry import MODELS, list_models, model_info
from paradis.registry import Registry, UnknownNameError
from paradis.tasks.base import TASKS, get_task, list_tasks


def test_a_registry_refuses_a_name_twice_and_lists_sorted_names():
    r: Registry[int] = Registry("colour")
    r.add("red", 1)
    r.add("blue", 2)
    with pytest.raises(ValueError, match="colour 'red' is already registered"):
        r.add("red", 3)
    assert r.get("red") == 1 and r["blue"] == 2
    assert r.names() == ["blue", "red"] and r.values() == [2, 1] and list(r) == ["blue", "red"]
    assert r.items() == [("blue", 2), ("red", 1)] and len(r) == 2 and "red" in r and "green" not in r
    assert r.names(lambda v: v > 1) == ["blue"]
    with pytest.raises(UnknownNameError, match=r"^unknown colour 'green'; known: blue, red$"):
        r.get("green")


@pytest.mark.parametrize(
    "registry, lookup, listing, what",
    [
        (MODELS, model_info, list_models, "model"),
        (DATASETS, dataset_info, list_datasets, "data set"),
        (METHODS, get_method, list_methods, "method"),
        (TASKS, get_task, list_tasks, "task"),
        (SEARCHES, SEARCHES.get, SEARCHES.names, "search kind"),
        (CLAIMS, CLAIMS.get, CLAIMS.names, "claim"),
    ],
)
def test_every_kind_of_entry_is_one_registry(registry, lookup, listing, what):
    assert isinstance(registry, Registry) and registry.what == what
    names = listing()
    assert names == sorted(names) and len(names) >= 2
    with pytest.raises(UnknownNameError) as err:
        lookup("no-such-name")
    assert str(err.value) == f"unknown {what} 'no-such-name'; known: {', '.join(names)}"
    first = registry.get(names[0])
    with pytest.raises(ValueError, match="already registered"):
        registry.add(names[0], first)
    assert registry.get(names[0]) is first
