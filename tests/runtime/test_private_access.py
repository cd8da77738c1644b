"""No module of ``stream_app`` outside ``stream_app/runtime/`` touches a private attribute of
faust, mode or aiokafka (issue 13, item 6): what leans on their internals lives in one place.

The scan reads every module's syntax tree (nothing is imported) and reports, as
``path:line: what``:

(a) an attribute access ``x._name`` where ``_name`` (one leading underscore, not a dunder) is a
    private name the libraries define: a module- or class-level ``def``/``class``/assignment,
    or an attribute assigned anywhere (``self._name = ...``), collected from their installed
    sources;
(b) an import of a private name or module from them (``from faust.streams import
    _current_event``, ``import aiokafka._crc32c``);
(c) ``getattr``/``setattr``/``hasattr``/``delattr`` with such a name as a literal.

A name that ``stream_app`` itself defines as a class member outside ``runtime/`` (a class-level
``def``/assignment or ``self._name = ...``) is ours and allowed, e.g. ``self._pending`` of our
own classes. A module-level private function of ours is not a member: reaching into another
module's privates is not allowed anyway.
"""

from __future__ import annotations

import ast
import importlib.machinery
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

LIBRARIES = ("faust", "mode", "aiokafka")
"""The top-level packages whose internals only ``stream_app/runtime/`` may touch."""

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "stream_app"
RUNTIME = PACKAGE / "runtime"

# The lead is rewriting these modules (issue 13) and moves what they pin to library internals
# into stream_app/runtime/; the lead empties this set, entry by entry, as each one is done.
PENDING_LEAD_MOVE: set[str] = set()

ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "hasattr", "delattr"})


@dataclass(frozen=True)
class Finding:
    """One private use: where, and what (``.name``, ``import x._y``, ``getattr(..., "_name")``)."""

    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def is_private(name: str) -> bool:
    """``_name``: one leading underscore, not a dunder (``__init__``) nor name-mangled."""
    return name.startswith("_") and not name.startswith("__")


def _scope_names(body: Iterable[ast.stmt]) -> Iterator[str]:
    """Names a module or class body binds: defs, classes, assignments (also inside if/try)."""
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield stmt.name
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                yield from (n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(stmt, ast.AnnAssign | ast.AugAssign) and isinstance(stmt.target, ast.Name):
            yield stmt.target.id
        elif isinstance(stmt, ast.If | ast.Try | ast.With):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for inner in getattr(stmt, block, []):
                    yield from _scope_names(
                        inner.body if isinstance(inner, ast.ExceptHandler) else [inner]
                    )


def library_names(tree: ast.Module) -> set[str]:
    """Private names one library module defines: module level, class level (nested classes
    too) and every attribute it assigns."""
    names = set(_scope_names(tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            names.update(_scope_names(node.body))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {n for n in names if is_private(n)}


def own_member_names(tree: ast.Module) -> set[str]:
    """Private class members one of our modules defines: class-level names and attributes
    assigned on ``self``/``cls``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            names.update(_scope_names(node.body))
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return {n for n in names if is_private(n)}


@cache
def private_library_names() -> frozenset[str]:
    """Every private name of the installed faust, mode and aiokafka (their ``.py`` sources)."""
    names: set[str] = set()
    for library in LIBRARIES:
        # the path finder, not importlib.util.find_spec: faust replaces its module in
        # sys.modules with a lazy one whose __spec__ is None
        spec = importlib.machinery.PathFinder.find_spec(library)
        assert spec is not None and spec.submodule_search_locations, library
        for folder in spec.submodule_search_locations:
            for path in Path(folder).rglob("*.py"):
                names |= library_names(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return frozenset(names)


def _from_library(module: str) -> bool:
    return module.split(".", 1)[0] in LIBRARIES


def find_private_uses(
    source: str, path: str, library_private: frozenset[str], own: frozenset[str]
) -> list[Finding]:
    """The private uses (a), (b), (c) of the module docstring in ``source``, in line order.

    Args:
        source: a module's text.
        path: how to name it in the findings.
        library_private: the libraries' private names (:func:`private_library_names`).
        own: our own private member names, allowed (:func:`own_member_names`).
    """
    forbidden = library_private - own
    found: list[Finding] = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Attribute) and node.attr in forbidden:
            found.append(Finding(path, node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module and _from_library(node.module):
            parts = node.module.split(".")
            found.extend(
                Finding(path, node.lineno, f"from {node.module} import {alias.name}")
                for alias in node.names
                if any(is_private(p) for p in [*parts, alias.name])
            )
        elif isinstance(node, ast.Import):
            found.extend(
                Finding(path, node.lineno, f"import {alias.name}")
                for alias in node.names
                if _from_library(alias.name) and any(is_private(p) for p in alias.name.split("."))
            )
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ATTRIBUTE_FUNCTIONS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in forbidden
        ):
            found.append(Finding(path, node.lineno, f'{node.func.id}(..., "{node.args[1].value}")'))
    return sorted(found, key=lambda f: (f.line, f.what))


def modules_outside_runtime() -> list[Path]:
    """Every module of ``stream_app`` outside ``stream_app/runtime/``."""
    return sorted(p for p in PACKAGE.rglob("*.py") if RUNTIME not in p.parents)


def test_no_module_outside_runtime_uses_a_private_attribute_of_faust_mode_or_aiokafka() -> None:
    modules = modules_outside_runtime()
    trees = {p: ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in modules}
    own = frozenset(set().union(*(own_member_names(t) for t in trees.values())))
    found: list[Finding] = []
    library_private = private_library_names()
    for path in modules:
        rel = path.relative_to(REPO).as_posix()
        if rel not in PENDING_LEAD_MOVE:
            found += find_private_uses(path.read_text(encoding="utf-8"), rel, library_private, own)
    assert not found, (
        "private attributes of faust/mode/aiokafka outside stream_app/runtime/ (wrap each in a "
        "named function there):\n" + "\n".join(map(str, found))
    )


def test_every_pending_module_still_exists() -> None:
    """A moved or deleted module leaves the set (so the skip list only shrinks)."""
    missing = sorted(p for p in PENDING_LEAD_MOVE if not (REPO / p).is_file())
    assert missing == []


def test_the_library_names_hold_the_internals_runtime_is_pinned_to() -> None:
    names = private_library_names()
    # one of each kind: module-level variable, method, attribute assigned in __init__
    assert {"_current_event", "_create_worker_consumer", "_committed_offset"} <= names
    assert "__init__" not in names and "flush" not in names


# --- the scan on small snippets: each kind of use is caught, ours and dunders are not ---

LIB = frozenset({"_current_event", "_acked", "_committed_offset", "_pending"})


def scan(source: str, own: frozenset[str] = frozenset()) -> list[str]:
    return [str(f) for f in find_private_uses(source, "m.py", LIB, own)]


def test_a_catches_an_attribute_access() -> None:
    source = "def f(consumer):\n    return consumer._acked.get(1)\n"
    assert scan(source) == ["m.py:2: ._acked"]


def test_a_catches_an_attribute_write_and_a_module_attribute() -> None:
    source = (
        "from faust import streams\n"
        "token = streams._current_event.set(None)\n"
        "def f(c):\n"
        "    c._committed_offset = {}\n"
    )
    assert scan(source) == ["m.py:2: ._current_event", "m.py:4: ._committed_offset"]


def test_b_catches_an_import_of_a_private_name_or_module() -> None:
    source = (
        "from faust.streams import _current_event\n"
        "from aiokafka._crc32c import crc\n"
        "import mode._internal.x\n"
        "from faust.streams import current_event\n"  # public: fine
        "from mylib import _helper\n"  # not one of the three libraries
    )
    assert scan(source) == [
        "m.py:1: from faust.streams import _current_event",
        "m.py:2: from aiokafka._crc32c import crc",
        "m.py:3: import mode._internal.x",
    ]


@pytest.mark.parametrize("function", ["getattr", "setattr", "hasattr", "delattr"])
def test_c_catches_a_literal_name_in_getattr_and_friends(function: str) -> None:
    source = f'x = {function}(consumer, "_committed_offset", None)\n'
    assert scan(source) == [f'm.py:1: {function}(..., "_committed_offset")']


def test_our_own_members_dunders_and_other_names_pass() -> None:
    source = (
        "class Queue:\n"
        "    def __init__(self):\n"
        "        self._pending = []\n"
        "    def size(self):\n"
        "        return len(self._pending) + self.__len__() + self._mine\n"
        'y = getattr(Queue, "_other", None)\n'
    )
    own = frozenset(own_member_names(ast.parse(source)))
    assert own == {"_pending"}
    assert scan(source, own) == []
    # without the class defining it, the same access is a finding
    assert scan("def f(q):\n    return q._pending\n", own=frozenset()) == ["m.py:2: ._pending"]


def test_our_module_level_private_function_is_not_a_member() -> None:
    source = "def _current_event():\n    pass\nclass C:\n    _acked = 0\n"
    assert own_member_names(ast.parse(source)) == {"_acked"}


def test_library_names_cover_each_kind_of_definition() -> None:
    source = (
        "_module_var = 1\n"
        "if True:\n"
        "    _conditional: int = 2\n"
        "def _function(): pass\n"
        "class _Class:\n"
        "    _class_var = 3\n"
        "    def _method(self):\n"
        "        self._instance = 4\n"
        "        _local = 5\n"
        "    def public(self): pass\n"
    )
    assert library_names(ast.parse(source)) == {
        "_module_var",
        "_conditional",
        "_function",
        "_Class",
        "_class_var",
        "_method",
        "_instance",
    }
