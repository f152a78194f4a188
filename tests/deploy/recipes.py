"""The code recipes of docs/DEPLOY.md, as the tests run them (so that the page shows tested code)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def recipe(marker: str, folder: str | Path, language: str = "python") -> str:
    """The first ``language`` code block after ``marker`` in docs/DEPLOY.md, reading ``folder``."""
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    start = text.index(f"```{language}\n", text.index(marker)) + len(language) + 4
    code = text[start : text.index("```", start)]
    assert 'folder = "out"' in code, "the recipe names its export folder out"
    return code.replace('folder = "out"', f"folder = {str(folder)!r}")
