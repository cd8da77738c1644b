"""``stream_app.delivery`` stands on its own: none of its modules imports ``schedules``,
``web`` or ``agents`` (a schedule run is one source of delivery orders among others)."""

from __future__ import annotations

import ast
from pathlib import Path

import stream_app.delivery

ABOVE = ("stream_app.schedules", "stream_app.web", "stream_app.agents")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names), wherever the import stands."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            out.add(node.module)
    return out


def test_delivery_imports_nothing_above_it() -> None:
    folder = Path(stream_app.delivery.__file__).parent
    offending = {
        f"{path.name}: {name}"
        for path in sorted(folder.glob("*.py"))
        for name in imported_modules(path)
        if name.startswith(ABOVE)
    }
    assert len(list(folder.glob("*.py"))) >= 15  # the package was found and read
    assert offending == set()


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f() -> None:\n    from stream_app.schedules.store import get_run\n")
    assert "stream_app.schedules.store" in imported_modules(module)
