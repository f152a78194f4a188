"""The committed reproduction report is the one its committed study-results files make: docs/RESULTS.md
is `python -m orchestration.report results --from docs/results`, byte for byte."""

from pathlib import Path

from orchestration.report.exported import read_exports
from orchestration.report.results import results_markdown

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python -m orchestration.report results --from docs/results"


def test_the_committed_report_is_rebuilt_from_the_committed_results_files():
    files = sorted((ROOT / "docs" / "results").glob("*.json"))
    assert files, "docs/results holds no study-results file"
    results = read_exports(ROOT / "docs" / "results")
    assert set(results) == {p.stem for p in files}
    assert all(len({int(r.params.get("repeat", 0)) for r in res.records}) >= 3 for res in results.values())
    assert results_markdown(results, COMMAND) == (ROOT / "docs" / "RESULTS.md").read_text()
