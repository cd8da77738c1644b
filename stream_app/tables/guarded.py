"""Exactly-once folding of one partition's batch, shared by payments, interactions, suppliers.

Each event names (through a *plan*) the data rows it changes. Every one of these rows is keyed
by the entity of the event's message key (the booking, the client, the supplier), so they all
live in the source partition of the event, and so in one changelog partition, and each is fed
by that one input partition in offset order.

Row values: ``{"values": <the metric values, JSON>, "o": <the input offset applied up to>}``.

Exactly once under redelivery (at-least-once input, a crash at any point): an event at or
below a row's ``o`` is already in that row and is not applied to it again, whatever subset of
a batch's rows survived a crash. A message *re-sent* at a new offset is recognised before the
fold by its dedupe record (:mod:`stream_app.tables.dedupe`). No row lists event ids: rows
are constant-size. The argument assumes an event always maps to the same rows (the plan is a
function of the event alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Generic, Protocol, TypeVar

from stream_app.tables.limits import RowLimitExceeded, checked

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

    @classmethod
    def of(cls, organization_id: str, entity: str, grain: str, period: str) -> RowRef:
        """The row of ``entity`` over the window ``grain``/``period``, keyed by :func:`row_key`."""
        return cls(
            row_key(organization_id, entity, grain, period), organization_id, entity, grain, period
        )


def row_key(organization_id: str, entity: str, grain: str, period: str) -> str:
    """The table key of a data row: ``organization_id/entity/grain/period``."""
    return f"{organization_id}/{entity}/{grain}/{period}"


def utc_month(at: datetime) -> str:
    """``YYYY-MM`` of ``at`` in UTC."""
    return at.astimezone(UTC).strftime("%Y-%m")


ZoneOf = Callable[[str], tzinfo]
"""Organisation id → its IANA zone (:meth:`stream_app.agents.zones.OrganizationZones.zone_of`)."""


def utc_zone(organization_id: str) -> tzinfo:
    """:data:`ZoneOf` giving every organisation UTC (a fold run without the zones)."""
    return UTC


def local_month(at: datetime, zone: tzinfo) -> str:
    """``YYYY-MM`` of the instant ``at`` on the calendar of ``zone`` (the ``period`` of a
    ``month`` row): 2026-05-31T22:30Z is ``2026-06`` in Europe/Berlin (UTC+2 in summer),
    ``2026-05`` in UTC."""
    return at.astimezone(zone).strftime("%Y-%m")


Batch = Sequence[tuple[int, E]]
"""``(source offset, event)`` pairs of one source partition, ascending offsets."""

Update = Callable[[Values | None], Values]
"""A row's new values from its current ones (``None`` for a new row); pure."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one event does: the data rows it updates."""

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
        writes: ``(key, value)`` to write; a value of ``None`` deletes the row (a tombstone
            in the changelog, see :func:`stream_app.tables.interactions.fold_batch`).
        outcomes: per input event not refused, ``counted`` or ``redelivered`` (every row
            already held it).
        changes: the changed data rows, for ``realtime-metrics-updates``.
        refused: ``(input offset, row key)`` of the events not folded because they
            would take a value of that row past :data:`stream_app.tables.limits.ROW_LIMIT`
            (none of their rows changed).
    """

    writes: list[tuple[str, dict[str, Any] | None]]
    outcomes: list[str]
    changes: list[Change]
    refused: list[tuple[int, str]] = field(default_factory=list)


def fold_guarded(get: Lookup, batch: Batch[E], plan: Callable[[E], Plan]) -> GuardedBatch[E]:
    """Fold a batch of one source partition's events (ascending offsets) exactly once per row.

    Args:
        get: reads the current value of a row (of the partition being written).
        batch: ``(source offset, event)`` pairs of one source partition, ascending offsets.
        plan: the data-row updates of an event (see the module docstring).
    """
    data: dict[str, dict[str, Any]] = {}
    applied: dict[str, int] = {}  # each row's offset before the batch
    changes: dict[str, Change] = {}
    outcomes: list[str] = []
    refused: list[tuple[int, str]] = []
    for offset, ev in batch:
        # the event's new values of each of its rows first: all of them or none change
        staged: list[tuple[RowRef, Values | None, Values]] = []
        for ref, update in plan(ev).rows:
            key = ref.key
            if key in data:
                row: dict[str, Any] | None = data[key]
            else:
                row = get(key)
                applied[key] = int(row.get("o", -1)) if row else -1
            if offset <= applied[key]:
                continue  # the row already holds this event (written before a crash)
            old = row["values"] if row else None
            try:
                staged.append((ref, old, update(old)))
            except RowLimitExceeded:
                refused.append((offset, key))
                break
        else:
            for ref, old, new in staged:
                data[ref.key] = {"values": new, "o": offset}
                change = changes.get(ref.key)
                if change is None:
                    changes[ref.key] = Change(ref, old, new, ev.occurred_at, 1)
                else:
                    change.new = new
                    change.event_time = max(change.event_time, ev.occurred_at)
                    change.events += 1
            outcomes.append("counted" if staged else "redelivered")
    writes: list[tuple[str, dict[str, Any] | None]] = list(data.items())
    return GuardedBatch(writes, outcomes, list(changes.values()), refused)


def batch_fold(plan: Callable[[E], Plan]) -> Callable[[Lookup, Batch[E]], GuardedBatch[E]]:
    """The batch fold of a table whose rows each event names through ``plan``:
    ``fold_batch(get, batch)`` is :func:`fold_guarded` ``(get, batch, plan)``."""

    def fold_batch(get: Lookup, batch: Batch[E]) -> GuardedBatch[E]:
        return fold_guarded(get, batch, plan)

    return fold_batch


ZonedFold = Callable[[ZoneOf], Callable[[Lookup, Batch[E]], GuardedBatch[E]]]
"""The batch fold of a table whose rows depend on the organisation's zone, given the zones."""


def zoned_batch_fold(plan: Callable[[E, ZoneOf], Plan]) -> ZonedFold[E]:
    """:func:`batch_fold` for a table whose rows are calendar periods of the organisation's
    zone: ``zoned(zone_of)(get, batch)`` folds with ``plan(event, zone_of)``."""

    def zoned(zone_of: ZoneOf) -> Callable[[Lookup, Batch[E]], GuardedBatch[E]]:
        return batch_fold(lambda ev: plan(ev, zone_of))

    return zoned


def add(counts: dict[str, int] | None, key: str, n: int) -> dict[str, int]:
    """A copy of ``counts`` with ``n`` (not negative) added under ``key``.

    Raises:
        RowLimitExceeded: the sum would pass :data:`stream_app.tables.limits.ROW_LIMIT`
            (:func:`fold_guarded` then refuses the event).
    """
    out = dict(counts or {})
    out[key] = checked(out.get(key, 0) + n)
    return out
