"""The lock of tested versions (constraints.txt): written from a green environment by scripts/lock.sh,
compared with the newest releases by scripts/canary.sh.

    python scripts/lockfile.py write --python .venv-lock/bin/python --tested "fast suite: 700 passed"
    python scripts/lockfile.py diff --python .venv-latest/bin/python
    python scripts/lockfile.py failures REPORT.xml
    python scripts/lockfile.py readme         # the README's table of tested versions, from the lock
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "constraints.txt"
README = ROOT / "README.md"
# the packages whose tested versions the README names, in its order
MAIN = ("python", "torch", "torchvision", "ray", "optuna", "mlflow", "onnxruntime", "executorch", "pydantic")
BEGIN, END = "<!-- tested-versions:begin -->", "<!-- tested-versions:end -->"


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(text: str) -> dict[str, str]:
    """``name==version`` lines (comments and markers aside) -> {normalized name: version}."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[normalize(name)] = version.strip()
    return out


def header(text: str) -> dict[str, str]:
    """The ``# key: value`` lines of a lock."""
    return dict(m.groups() for m in re.finditer(r"^# (python|platform|tested): *(.*)$", text, re.M))


def freeze(python: str) -> dict[str, str]:
    """What ``python``'s environment holds (the editable project aside)."""
    out = subprocess.run(
        [python, "-m", "pip", "freeze", "--all", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout
    return parse(out)


def environment(python: str) -> tuple[str, str]:
    code = "import platform, sys; print('%d.%d' % sys.version_info[:2]); print(sys.platform, platform.machine())"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    return out[0], out[1]


def render(pins: dict[str, str], python: str, platform: str, tested: str) -> str:
    lines = [
        "# The lock of tested versions: every package scripts/setup.sh installs, as a green run had them.",
        "# Written by scripts/lock.sh (never by hand); scripts/canary.sh shows what newer releases change.",
        f"# python: {python}",
        f"# platform: {platform}",
        f"# tested: {tested}",
    ]
    return "\n".join(lines + [f"{name}=={pins[name]}" for name in sorted(pins)]) + "\n"


def readme_block(lock_text: str) -> str:
    pins, head = parse(lock_text), header(lock_text)
    rows = ["| package | tested version |", "|---|---|"]
    for name in MAIN:
        version = head.get("python") if name == "python" else pins.get(name)
        if version:
            rows.append(f"| {name} | {version} |")
    return "\n".join([BEGIN, *rows, END])


def update_readme(lock_text: str) -> bool:
    text = README.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"lockfile: error: {README.name} has no {BEGIN} ... {END} block")
    new = text[:start] + readme_block(lock_text) + text[end + len(END) :]
    README.write_text(new)
    return new != text


def diff(lock: dict[str, str], other: dict[str, str]) -> list[str]:
    """One line per package whose version differs, which only one side has, in name order."""
    out = []
    for name in sorted(set(lock) | set(other)):
        a, b = lock.get(name), other.get(name)
        if a != b:
            out.append(f"{name}: {a or '(not installed)'} -> {b or '(not installed)'}")
    return out


def node_id(classname: str, name: str, root: Path = ROOT) -> str:
    """pytest's node id from a JUnit test case (``tests.a.test_b.TestC`` + ``test_d[x]``)."""
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        path = "/".join(parts[:i]) + ".py"
        if (root / path).is_file():
            return "::".join([path, *parts[i:], name])
    return "::".join([classname, name])


def failures(report: Path) -> list[str]:
    """The node ids of the failed and erroring tests of a JUnit XML report."""
    out = []
    for case in ET.parse(report).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            out.append(node_id(case.get("classname", ""), case.get("name", "")))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lockfile", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write constraints.txt from an environment, then the README's table")
    w.add_argument("--python", required=True)
    w.add_argument("--tested", required=True, help="what passed, for the lock's header")
    d = sub.add_parser("diff", help="the packages of an environment that differ from the lock")
    d.add_argument("--python", required=True)
    f = sub.add_parser("failures", help="the failed tests of a JUnit XML report")
    f.add_argument("report", type=Path)
    sub.add_parser("readme", help="rewrite the README's table of tested versions from the lock")
    args = p.parse_args(argv)

    if args.cmd == "write":
        python, platform = environment(args.python)
        text = render(freeze(args.python), python, platform, f"{dt.date.today().isoformat()}, {args.tested}")
        LOCK.write_text(text)
        update_readme(text)
        print(f"lockfile: {len(parse(text))} packages locked in {LOCK.name}")
    elif args.cmd == "diff":
        lines = diff(parse(LOCK.read_text()), freeze(args.python))
        print("\n".join(lines) if lines else "no package differs from the lock")
    elif args.cmd == "failures":
        print("\n".join(failures(args.report)))
    else:
        update_readme(LOCK.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
