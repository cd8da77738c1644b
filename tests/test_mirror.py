"""Tests mirror the package: every module of ``stream_app`` has its test module in the mirrored
place (``stream_app/x/y.py`` → ``tests/x/test_y.py``), or docs/TESTING.md names, in its
table "covered end to end by", the test file that exercises it; every file named there exists.

A package's ``__init__.py`` counts as a module only when it defines a function or a class; its
mirrored place would be ``tests/x/test___init__.py``, so it is named in the table.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "stream_app"
TABLE_TITLE = "covered end to end by"
TABLE_FILE = "docs/TESTING.md"
ROW = re.compile(r"^\|\s*`(stream_app/[\w/]+\.py)`\s*\|\s*`(tests/[\w/]+\.py)`\s*\|")


def modules() -> list[str]:
    """Every module of the package as a path from the repository root, sorted."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            if not any(isinstance(node, kinds) for node in tree.body):
                continue
        found.append(path.relative_to(ROOT).as_posix())
    return found


def mirrored(module: str) -> Path:
    """The mirrored test module of ``stream_app/x/y.py``: ``tests/x/test_y.py``."""
    path = Path(module).relative_to("stream_app")
    return ROOT / "tests" / path.parent / f"test_{path.name}"


def covered_table() -> dict[str, str]:
    """docs/TESTING.md's table under the heading naming :data:`TABLE_TITLE`: module → test file."""
    lines = (ROOT / TABLE_FILE).read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("#") and TABLE_TITLE in line]
    assert len(starts) == 1, f"docs/TESTING.md needs one heading naming {TABLE_TITLE!r}"
    table: dict[str, str] = {}
    for line in lines[starts[0] + 1 :]:
        if line.startswith("#"):
            break
        match = ROW.match(line)
        if match:
            assert match[1] not in table, f"{match[1]} is named twice"
            table[match[1]] = match[2]
    return table


def test_the_table_is_found_and_read() -> None:
    table = covered_table()
    assert table["stream_app/worker.py"] == "tests/e2e/test_roles.py"
    assert len(table) > 50


def test_every_module_has_a_mirrored_test_or_a_named_end_to_end_one() -> None:
    table = covered_table()
    missing = [m for m in modules() if not mirrored(m).is_file() and m not in table]
    assert missing == [], f"no tests/x/test_y.py and no row in docs/TESTING.md's table: {missing}"


def test_every_row_names_a_module_and_a_test_file_that_exist() -> None:
    known = set(modules())
    for module, test_file in covered_table().items():
        assert module in known, f"docs/TESTING.md's table names {module}: no such module"
        assert (ROOT / test_file).is_file(), f"docs/TESTING.md names {test_file}: no such file"
        assert Path(test_file).name.startswith("test_"), test_file
