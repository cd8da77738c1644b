"""The import layers of DESIGN.md hold: ``lint-imports`` with the contracts of pyproject.toml.

The second test runs the same contracts on a temporary copy of the package into which a
forbidden import and an import cycle were written, and checks that both are reported: the
contracts can fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` run in ``cwd`` (its pyproject.toml, its ``stream_app``), no cache."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_a_forbidden_import_and_a_cycle_are_caught(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "stream_app", tmp_path / "stream_app")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    shutil.copy(ROOT / "tests" / "import_contracts.py", tmp_path / "tests" / "import_contracts.py")
    # a pure fold reaching up into the HTTP layer
    closing = tmp_path / "stream_app" / "tables" / "closing.py"
    closing.write_text(closing.read_text() + "\nfrom stream_app.web import errors  # noqa\n")
    # two modules that import each other
    (tmp_path / "stream_app" / "cycle_a.py").write_text("from stream_app import cycle_b\n")
    (tmp_path / "stream_app" / "cycle_b.py").write_text("from stream_app import cycle_a\n")

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "stream_app.tables.closing -> stream_app.web.errors" in out, out
    assert "- stream_app.cycle_a, stream_app.cycle_b" in out, out
    # the cycle, and the fold importing web (below-web and leaves); the rest still hold
    assert "Contracts: 2 kept, 3 broken." in out, out
    assert "No import cycle between the modules of stream_app BROKEN" in out, out
