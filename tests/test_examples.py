"""Every ``Example::`` block in a docstring of mindrec and bench runs as a doctest."""
from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "Example::"
# The heading of an example block: "Example::", also "Examples::" or "Example (...)::".
HEADING = re.compile(r"^\s*Examples?( \(.*\))?::\s*$", re.MULTILINE)


def _modules_with_examples() -> list[str]:
    """Dotted names of the modules of mindrec and bench whose source has an example."""
    names = []
    for package in ("mindrec", "bench"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if HEADING.search(path.read_text()):
                parts = path.relative_to(ROOT).with_suffix("").parts
                names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("name", _modules_with_examples())
def test_examples_run(name):
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder().find(module)
    marked = [t for t in tests if t.docstring and HEADING.search(t.docstring)]
    in_source = len(HEADING.findall(Path(module.__file__).read_text()))
    assert sum(len(HEADING.findall(t.docstring)) for t in marked) == in_source, (
        f"{name}: an {MARK} is outside the docstrings doctest finds (module, classes, "
        f"functions and methods defined in it)")
    empty = [t.name for t in marked if not t.examples]
    assert not empty, f"{MARK} blocks without a runnable >>> example: {empty}"
    report = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in marked:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
