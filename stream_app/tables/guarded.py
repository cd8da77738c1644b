"""Exactly-once folding of one partition's batch, shared by payments, interactions, suppliers.

Each event names (through a *plan*) the rows it changes and one *guard* row, the dedupe record
holding the ids of the events folded under it. Every one of these rows is keyed by the entity
of the event's message key (the booking, the client, the supplier), so they all live in the
source partition of the event, and so in one changelog partition.

Row values:

- data rows: ``{"values": <the metric values, JSON>, "event_ids": [<ids folded into it>]}``;
- guard rows: ``{"event_ids": [<ids of the events folded under this guard>]}``.

Exactly once under redelivery (at-least-once input, a crash at any point). The caller writes
:attr:`GuardedBatch.writes` in order to one changelog partition (an ordered log written by one
producer), so a crash keeps a *prefix* of them. The order is: every data row, then every
guard row. Hence:

- an event whose guard row survived (its id is listed) also has every data row it changed:
  those precede all guard rows. It is recognised as a duplicate and skipped;
- an event whose guard row was lost is folded again, but only into the data rows that do
  not list its id yet (a data row that survived the crash lists every event of the batch
  that touched it).

No offset order is relied on: faust can deliver a partition again from an earlier offset, or
deliver offsets it had skipped after later ones (see :mod:`stream_app.offsets`), and each row
still recognises what it holds. A duplicate *message* (same ``event_id``, another offset) is
recognised by the id in its guard row (or earlier in the same batch). The argument assumes an
event always maps to the same rows (the plan is a function of the event alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

Lookup = Callable[[str], dict[str, Any] | None]
"""Reads one table row by key; ``None`` when absent."""

Values = dict[str, Any]
"""The metric values of a data row: a JSON object of integers, nested objects of integers,
ISO 8601 timestamps or nulls (never floats)."""


class Event(Protocol):
    """What the helper needs of an event: its id and event time."""

    @property
    def event_id(self) -> str: ...

    @property
    def occurred_at(self) -> datetime: ...


E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True)
class RowRef:
    """A data row: its table key and its identity for ``realtime-metrics-updates``.

    Attributes:
        key: the table key (``organization_id/entity/grain/period``).
        organization_id / entity: the tenant and the entity (booking, client, supplier).
        grain / period: the window: ``month`` with ``YYYY-MM``, or ``all`` with ``all``.
    """

    key: str
    organization_id: str
    entity: str
    grain: str
    period: str


Update = Callable[[Values | None], Values]
"""A row's new values from its current ones (``None`` for a new row); pure."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one event does: its guard row's key and the data rows it updates."""

    guard: str
    rows: list[tuple[RowRef, Update]]


@dataclass(slots=True)
class Change:
    """A data row changed by a batch.

    Attributes:
        row: which row.
        old / new: values before the batch's first change (``None`` for a new row) and after
            its last.
        event_time: the latest ``occurred_at`` folded into the row by the batch.
        events: events of the batch folded into the row.
    """

    row: RowRef
    old: Values | None
    new: Values
    event_time: datetime
    events: int


@dataclass(slots=True)
class GuardedBatch(Generic[E]):
    """What a batch does to the table.

    Attributes:
        writes: ``(key, value)`` to write in this order: data rows, then guard rows; a value
            of ``None`` deletes the row (a tombstone in the changelog, see
            :func:`stream_app.tables.interactions.fold_batch`).
        outcomes: per input event, ``counted`` or ``duplicate``.
        changes: the changed data rows, for ``realtime-metrics-updates``.
    """

    writes: list[tuple[str, dict[str, Any] | None]]
    outcomes: list[str]
    changes: list[Change]


def fold_guarded(
    get: Lookup, batch: Sequence[tuple[int, E]], plan: Callable[[E], Plan]
) -> GuardedBatch[E]:
    """Fold a batch of one source partition's events (ascending offsets) exactly once.

    Args:
        get: reads the current value of a row (of the partition being written).
        batch: ``(source offset, event)`` pairs of one source partition, ascending offsets.
        plan: the guard row and data-row updates of an event (see the module docstring).
    """
    data: dict[str, dict[str, Any]] = {}
    listed: dict[str, list[str]] = {}  # a guard row's ids, in folding order
    changed_guards: dict[str, None] = {}  # guard rows to write, in first-change order
    id_sets: dict[str, set[str]] = {}
    row_ids: dict[str, set[str]] = {}  # ids held by each data row
    changes: dict[str, Change] = {}
    outcomes: list[str] = []
    for _offset, ev in batch:
        p = plan(ev)
        if p.guard not in id_sets:
            guard_row = get(p.guard)
            known = list(guard_row["event_ids"]) if guard_row else []
            id_sets[p.guard] = set(known)
            listed[p.guard] = known
        ids = id_sets[p.guard]
        if ev.event_id in ids:
            outcomes.append("duplicate")
            continue
        ids.add(ev.event_id)
        listed[p.guard].append(ev.event_id)
        changed_guards.setdefault(p.guard, None)
        for ref, update in p.rows:
            row = data[ref.key] if ref.key in data else get(ref.key)
            held = row.get("event_ids", []) if row else []
            if ref.key not in row_ids:
                row_ids[ref.key] = set(held)
            if ev.event_id in row_ids[ref.key]:
                continue  # the row already holds this event (written before a crash)
            row_ids[ref.key].add(ev.event_id)
            old = row["values"] if row else None
            new = update(old)
            data[ref.key] = {"values": new, "event_ids": [*held, ev.event_id]}
            change = changes.get(ref.key)
            if change is None:
                changes[ref.key] = Change(ref, old, new, ev.occurred_at, 1)
            else:
                change.new = new
                change.event_time = max(change.event_time, ev.occurred_at)
                change.events += 1
        outcomes.append("counted")
    writes: list[tuple[str, dict[str, Any] | None]] = list(data.items())
    writes += [(k, {"event_ids": listed[k]}) for k in changed_guards]
    return GuardedBatch(writes, outcomes, list(changes.values()))


def add(counts: dict[str, int] | None, key: str, n: int) -> dict[str, int]:
    """A copy of ``counts`` with ``n`` added under ``key``."""
    out = dict(counts or {})
    out[key] = out.get(key, 0) + n
    return out
