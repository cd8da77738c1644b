"""The three guarded folds (payments, supplier activities, client interactions) as table rows,
for the tests every one of them must pass (tests/tables/test_guarded.py, test_dedupe.py).

Each case names its events (offsets 0..), its fold and a check of a store the events were
folded into once, with figures computed in the case's own test module straight from the
events (or written out by hand there)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stream_app.tables import interactions, payments, suppliers
from tests.tables import test_interactions as interactions_case
from tests.tables import test_payments as payments_case
from tests.tables import test_suppliers as suppliers_case


@dataclass(frozen=True)
class FoldCase:
    """One guarded fold under test.

    Attributes:
        name: the table's stream, as a test id.
        events: the case's events, folded at offsets 0, 1, ….
        fold_batch: the fold (``tables.<stream>.fold_batch``).
        expected: the store's figures once every event is folded once, from the case's module.
        actual: the same figures read from a store.
        seeds: how many random crash schedules to try.
    """

    name: str
    events: Sequence[Any]
    fold_batch: Callable[..., Any]
    expected: Callable[[], Any]
    actual: Callable[[dict[str, Any]], Any]
    seeds: int


CASES = [
    FoldCase(
        "payments",
        payments_case.EVENTS,
        payments.fold_batch,
        lambda: (payments_case.expected_totals(), payments_case.expected_supplier_months()),
        lambda s: (payments_case.actual_totals(s), payments_case.actual_supplier_months(s)),
        seeds=60,
    ),
    FoldCase(
        "suppliers",
        suppliers_case.EVENTS,
        suppliers.fold_batch,
        suppliers_case.expected,
        suppliers_case.actual,
        seeds=60,
    ),
    FoldCase(
        "interactions",
        interactions_case.EVENTS,
        interactions.fold_batch,
        lambda: interactions_case.EXPECTED,
        interactions_case.actual,
        seeds=30,
    ),
]
