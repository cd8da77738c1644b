"""Client interaction totals per client.

``client-interactions`` is keyed ``organization_id/client_id``, so every row an event changes
is a row of its client (keys ``organization_id/client_id/...``) and lives in the event's
partition. There are no organisation-level rows (they would mix clients of every partition):
organisation totals are obtained at read time by adding the client rows of all partitions
(every worker's table), and the first-response time of an organisation is then a distribution
(or mean) of its clients' ``first_response_seconds``.

Definitions (per client, all time):

- ``inquiries`` / ``responses``: counts of ``inquiry`` / ``response`` events;
- ``first_inquiry_at``: the earliest ``occurred_at`` of an inquiry (UTC, ISO 8601);
- ``first_response_at``: the earliest ``occurred_at`` of a response at or after
  ``first_inquiry_at`` (a response before the first inquiry does not answer it);
- ``first_response_seconds``: ``first_response_at − first_inquiry_at`` in whole seconds
  (rounded down), ``null`` until both exist;
- ``ratings``: the distribution of ``rating`` scores, ``{"1": count, …, "5": count}``; the
  average rating is ``Σ score × count ÷ Σ count``, computed at read time (no floats stored);
- ``nps``: the distribution of ``nps`` answers, ``{"0": count, …, "10": count}``; the Net
  Promoter Score is ``100 × (answers 9–10 − answers 0–6) ÷ answers``, computed at read time.

The fold does not depend on the order of events: responses seen before any inquiry, or before
an inquiry that turns out to be earlier, are kept in ``early_responses`` (ISO timestamps of the
responses earlier than ``first_inquiry_at``, or all responses while there is no inquiry), so a
late-arriving earlier inquiry still finds its first response exactly.

Conversion inquiry → booking: a ``booked`` event (the client signed) is folded into the
client's row (``bookings``, ``booked_at``, ``converted_at`` = the first booking at or after the
first inquiry, ``days_to_book`` in whole days rounded down, ``direct_bookings`` = bookings
with no earlier inquiry; order-independent like the first response, through
``early_bookings``). An organisation's conversion per cohort is added up at read time
(:mod:`stream_app.tables.summaries`).

Rows: ``org/client/all/all`` (the values above).
Exactly once: each row keeps the input offset it has applied up to (see
:mod:`stream_app.tables.guarded`); re-sent events are caught by :mod:`stream_app.tables.dedupe`.

Erasure (GDPR Art. 17): a ``client_erased`` event deletes the client's row: the batch
writes ``None`` for them (a RocksDB delete and a changelog tombstone), after the rows of the
events before it and before the rows of the events after it (a client may come back). The
erasure is idempotent and is not deduplicated: folded again after a crash it deletes again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stream_app.schemas.interactions import ClientInteractionEvent
from stream_app.tables.guarded import (
    Batch,
    Change,
    GuardedBatch,
    Lookup,
    Plan,
    RowRef,
    Values,
    add,
    fold_guarded,
    row_key,
)


def client_key(organization_id: str, client_id: str) -> str:
    """Key of a client's row."""
    return row_key(organization_id, client_id, "all", "all")


def empty() -> Values:
    """The values of a client with no event yet."""
    return {
        "inquiries": 0,
        "responses": 0,
        "first_inquiry_at": None,
        "first_response_at": None,
        "first_response_seconds": None,
        "early_responses": [],
        "bookings": 0,
        "booked_at": None,
        "converted_at": None,
        "days_to_book": None,
        "direct_bookings": 0,
        "early_bookings": [],
        "ratings": {},
        "nps": {},
    }


def with_defaults(values: Values | None) -> Values:
    """``values`` with every field of :func:`empty` present (older rows lack the booking
    fields); a new dict."""
    return {**empty(), **(values or {})}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _settle(out: Values) -> None:
    """Recompute the first response, the conversion and the early lists after a change."""
    first_inq = out["first_inquiry_at"]
    if first_inq is None:
        return
    inq = _t(first_inq)
    booked = [_t(b) for b in out["early_bookings"]]
    if out["converted_at"] is not None:
        booked.append(_t(out["converted_at"]))
    converting = [b for b in booked if b >= inq]
    out["early_bookings"] = sorted(_iso(b) for b in booked if b < inq)
    out["direct_bookings"] = len(out["early_bookings"])
    if converting:
        first_booked = min(converting)
        out["converted_at"] = _iso(first_booked)
        out["days_to_book"] = (first_booked - inq) // timedelta(days=1)
    candidates = [_t(r) for r in out["early_responses"]]
    if out["first_response_at"] is not None:
        candidates.append(_t(out["first_response_at"]))
    answering = [r for r in candidates if r >= inq]
    out["early_responses"] = sorted(_iso(r) for r in candidates if r < inq)
    if answering:
        first = min(answering)
        out["first_response_at"] = _iso(first)
        out["first_response_seconds"] = int((first - inq).total_seconds())


def fold_interaction(values: Values | None, ev: ClientInteractionEvent) -> Values:
    """Apply one event to a client's row (returns new values; order-independent)."""
    out = with_defaults(values)
    at = ev.occurred_at
    if ev.event_type == "inquiry":
        out["inquiries"] += 1
        cur = out["first_inquiry_at"]
        if cur is None or at < _t(cur):
            out["first_inquiry_at"] = _iso(at)
            _settle(out)
    elif ev.event_type == "response":
        out["responses"] += 1
        out["early_responses"] = [*out["early_responses"], _iso(at)]
        _settle(out)
        if out["first_inquiry_at"] is None:
            out["early_responses"] = sorted(out["early_responses"])
    elif ev.event_type == "booked":
        out["bookings"] += 1
        cur = out["booked_at"]
        if cur is None or at < _t(cur):
            out["booked_at"] = _iso(at)
        out["early_bookings"] = [*out["early_bookings"], _iso(at)]
        _settle(out)
        if out["first_inquiry_at"] is None:
            out["early_bookings"] = sorted(out["early_bookings"])
            out["direct_bookings"] = len(out["early_bookings"])
    elif ev.event_type == "rating":
        out["ratings"] = add(out["ratings"], str(ev.score), 1)
    else:
        out["nps"] = add(out["nps"], str(ev.score), 1)
    return out


def plan(ev: ClientInteractionEvent) -> Plan:
    """The data row of one interaction event."""
    row = RowRef.of(ev.organization_id, ev.client_id, "all", "all")
    return Plan(rows=[(row, lambda v: fold_interaction(v, ev))])


def fold_batch(
    get: Lookup, batch: Batch[ClientInteractionEvent]
) -> GuardedBatch[ClientInteractionEvent]:
    """Fold one source partition's batch (ascending offsets) into the client rows.

    Exactly once under redelivery: each row keeps the input offset it has applied up to
    (:mod:`stream_app.tables.guarded`).

    Events before a ``client_erased`` event of the same batch are folded, then the erased
    client's row is deleted (its writes dropped, ``None`` written) and the
    events after it are folded on top of the deletions. The outcome of an erasure is
    ``erased``; a deleted row is not among :attr:`GuardedBatch.changes` (its client id is not
    published again).
    """
    writes: list[tuple[str, dict[str, Any] | None]] = []
    outcomes: list[str] = []
    changes: list[Change] = []
    refused: list[tuple[int, str]] = []
    overlay: dict[str, dict[str, Any] | None] = {}

    def current(key: str) -> dict[str, Any] | None:
        return overlay[key] if key in overlay else get(key)

    segment: list[tuple[int, ClientInteractionEvent]] = []

    def fold_segment() -> None:
        if segment:
            result = fold_guarded(current, segment, plan)
            overlay.update(result.writes)
            writes.extend(result.writes)
            outcomes.extend(result.outcomes)
            changes.extend(result.changes)
            refused.extend(result.refused)
            segment.clear()

    for offset, ev in batch:
        if ev.event_type != "client_erased":
            segment.append((offset, ev))
            continue
        fold_segment()
        erased = {client_key(ev.organization_id, ev.client_id)}
        writes[:] = [w for w in writes if w[0] not in erased]
        changes[:] = [c for c in changes if c.row.key not in erased]
        for key in sorted(erased):
            overlay[key] = None
            writes.append((key, None))
        outcomes.append("erased")
    fold_segment()
    return GuardedBatch(writes, outcomes, changes, refused)


def average_rating_milli(ratings: dict[str, int]) -> int | None:
    """Average of a ratings distribution ``{"1": count, …, "5": count}``: ``Σ score × count ÷
    Σ count`` in thousandths, rounded down; None without ratings."""
    n = sum(ratings.values())
    return sum(int(s) * c for s, c in ratings.items()) * 1000 // n if n else None


def nps_figures(nps: dict[str, int]) -> tuple[int, int, int, int | None]:
    """``(answers, promoters, detractors, score)`` of an NPS distribution ``{"0": count, …,
    "10": count}``: promoters answer 9–10, detractors 0–6, score = ``100 × (promoters −
    detractors) ÷ answers`` rounded toward zero (−100..100; None without answers)."""
    answers = sum(nps.values())
    promoters = sum(n for s, n in nps.items() if int(s) >= 9)
    detractors = sum(n for s, n in nps.items() if int(s) <= 6)
    if not answers:
        return answers, promoters, detractors, None
    diff = 100 * (promoters - detractors)
    q = abs(diff) // answers
    return answers, promoters, detractors, q if diff >= 0 else -q
