"""An import-linter contract type the built-in ones lack: no import cycle between modules.

import-linter's ``acyclic_siblings`` compares packages as wholes (``web`` importing
``reports`` and one module of ``reports`` importing one of ``web`` is a cycle to it); this one
looks at modules, as Python's import system does: a cycle is a set of modules each reachable
from every other by direct imports (a strongly connected component of the import graph with
more than one module; Tarjan, 1972). Imports inside functions and under ``TYPE_CHECKING``
count, as they do for ``/work/shared/tools/import_cycles.py``.

Registered in ``pyproject.toml`` (``[tool.importlinter] contract_types``) and run by
``lint-imports`` (``tests/test_layers.py``).
"""

from __future__ import annotations

import grimp
from importlinter import Contract, ContractCheck, fields, output
from importlinter.application import contract_utils
from importlinter.application.contract_utils import AlertLevel


def import_cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """The import cycles among the modules of ``package`` (itself included), each sorted,
    sorted by their first module.

    Iterative Tarjan: the graph of a large package is deeper than Python's recursion limit.
    """
    modules = sorted(m for m in graph.modules if m == package or m.startswith(f"{package}."))
    inside = set(modules)
    edges = {
        m: sorted(t for t in graph.find_modules_directly_imported_by(m) if t in inside)
        for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in modules:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, next_edge = work.pop()
            if next_edge == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if next_edge < len(targets):
                work.append((node, next_edge + 1))
                target = targets[next_edge]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if work:  # returning to the caller: carry this node's low link up
                caller = work[-1][0]
                low[caller] = min(low[caller], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return sorted(cycles)


class ModuleAcyclicContract(Contract):
    """No import cycle among the modules of ``packages``.

    Fields:
        packages: the packages checked (each with all its modules).
        ignore_imports: direct imports left out (``a.b -> c.d``), e.g. ones another change
            removes; as in import-linter's own contracts.
        unmatched_ignore_imports_alerting: ``error`` (default), ``warn`` or ``none`` when an
            ignored import no longer exists.
    """

    type_name = "module_acyclic"

    packages = fields.ListField(subfield=fields.ModuleField())
    ignore_imports = fields.SetField(subfield=fields.ImportExpressionField(), required=False)
    unmatched_ignore_imports_alerting = fields.EnumField(AlertLevel, default=AlertLevel.ERROR)

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        """Kept when no package has a cycle; the cycles found are in the metadata."""
        warnings = contract_utils.remove_ignored_imports(
            graph=graph,
            ignore_imports=self.ignore_imports,  # type: ignore[arg-type]
            unmatched_alerting=self.unmatched_ignore_imports_alerting,  # type: ignore[arg-type]
        )
        found: list[list[str]] = []
        for package in self.packages:  # type: ignore[attr-defined]
            output.verbose_print(verbose, f"Looking for import cycles in {package}...")
            found += import_cycles(graph, package.name)
        return ContractCheck(kept=not found, warnings=warnings, metadata={"cycles": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        """Print each cycle's modules."""
        cycles: list[list[str]] = check.metadata["cycles"]
        output.print_error(f"{len(cycles)} import cycle(s):", bold=True)
        output.new_line()
        for cycle in cycles:
            output.print_error(f"- {', '.join(cycle)}")
        output.new_line()


__all__ = ["ModuleAcyclicContract", "import_cycles"]
