"""Organisation-wide summaries of the per-entity rows: parts, their sum, and the figures.

Part of the read path (no writes): the client, booking and supplier rows of an organisation
are spread over every partition, so over every worker. A summary is computed at read time in
three steps, all pure functions here:

1. each worker turns the rows of the organisation in the partitions it holds into a *part*
   (``*_part``): counts and distributions that add up (never a ratio or a percentile);
2. the worker that received the request adds the parts of every worker (``merge_*``), after
   checking that together they cover every partition exactly once
   (:mod:`stream_app.queries.scatter`);
3. the figures are derived from the sum (``finish_*``).

A part is a JSON object of integers, nested objects of integers and strings; distributions are
``{value as a string: count}`` (JSON object keys are strings).

Definitions (the per-row rules are in :mod:`stream_app.tables.interactions`,
:mod:`stream_app.tables.payments`, :mod:`stream_app.tables.suppliers` and
:mod:`stream_app.tables.bookings`):

**Interactions** (``GET /orgs/{org}/interactions/summary?from=YYYY-MM&to=YYYY-MM``):

- a client's *cohort month* is the calendar month of its ``first_inquiry_at`` in the
  organisation's IANA zone; a client with no inquiry has no cohort;
- per cohort month: ``clients`` (clients whose first inquiry is in the month), ``responded``
  (of them, those with a ``first_response_seconds``), ``first_response_seconds`` over the
  responded clients: ``median`` and ``p90`` by the **nearest-rank** method (the value at rank
  ``⌈P/100 × n⌉`` of the ``n`` values sorted ascending, so always one of the observed values;
  the median is the lower middle value when ``n`` is even) and ``mean`` (``Σ ÷ n`` rounded
  down), all in seconds, ``null`` when ``n = 0``; ``converted`` (clients of the cohort with a
  ``converted_at``); ``conversion_rate``: the exact fraction ``converted / clients``
  (``numerator``, ``denominator``) and ``basis_points`` = ``converted × 10,000 ÷ clients``
  rounded down (``null`` when no clients); ``days_to_book`` of the converted clients
  (median, p90, mean as above, whole days);
- ``direct_bookings`` per month: ``booked`` events with no inquiry at or before them (see the
  interactions table), counted in the calendar month (organisation zone) of the booking
  itself: a direct booking has no inquiry, so no cohort;
- ``totals``: the same over every month of the range (conversion over all clients whose first
  inquiry is in the range);
- ``ratings`` and ``nps``: over **all** clients of the organisation, all time (the rows do not
  date them, so ``from``/``to`` do not apply): the distributions, ``average_milli`` =
  ``Σ score × count × 1000 ÷ Σ count`` rounded down (thousandths, as the per-client read), and
  the Net Promoter Score ``100 × (answers 9–10 − answers 0–6) ÷ answers`` rounded toward zero
  (Bain & Company's definition), ``null`` without answers.

**Payments** (``GET /orgs/{org}/payments/summary``), per ISO 4217 currency, minor units, all
time, never added across currencies:

- ``collected_minor`` / ``refunded_minor``: the sums of ``paid_minor`` / ``refunded_minor`` of
  the organisation's per-booking total rows; ``payments`` / ``refunds``: their counts;
- ``booked_minor``: booked minus cancelled value of the organisation's ``wedding-bookings``
  (the service-month rows of the venue-bookings table: the revenue of the venue reads);
- ``outstanding_minor`` = ``booked_minor − collected_minor + refunded_minor``: what is still
  owed, net over the organisation; negative when more was collected than booked (an
  overpayment, or payments for bookings that never came through ``wedding-bookings``). A
  booking's own balance is not computed: the bookings table is kept per venue, not per booking.

**Suppliers** (``GET /orgs/{org}/suppliers/summary?from=YYYY-MM&to=YYYY-MM``): per calendar
month of the organisation's zone (the supplier rows' months, :mod:`stream_app.tables.suppliers`),
the counters of the supplier-month rows
added over the organisation's suppliers (``tasks_assigned``, ``tasks_completed``,
``deliveries_made``; completions ``on_time``, ``late``, ``no_due``), ``suppliers`` (suppliers
with a row in the month) and ``per_person``: per ``person_id`` the count of each event type,
added over suppliers (a person id is taken as one person across the organisation's suppliers;
``-`` gathers the events without a person); ``totals`` over the range.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from stream_app.tables.bookings import row_totals
from stream_app.tables.interactions import average_rating_milli, nps_figures
from stream_app.tables.suppliers import COUNTERS

Part = dict[str, Any]
"""A worker's part of a summary: a JSON object of integers, strings and nested objects."""


# ---------------------------------------------------------------------------------------------
# helpers


def add_counts(into: dict[str, int], counts: Mapping[str, int]) -> None:
    """Add ``counts`` into ``into`` key by key, in place."""
    for k, n in counts.items():
        into[k] = into.get(k, 0) + int(n)


def nearest_rank(distribution: Mapping[str, int], percent: int) -> int | None:
    """The ``percent``-th percentile of a distribution by the nearest-rank method.

    Args:
        distribution: ``{integer value as a string: count}``; counts > 0.
        percent: 1–100.

    Returns:
        The smallest value whose cumulative count reaches rank ``⌈percent/100 × n⌉`` (``n`` =
        total count), i.e. the value at that rank in the ascending list; ``None`` when empty.
    """
    n = sum(distribution.values())
    if n == 0:
        return None
    rank = max(1, -(-percent * n // 100))  # ceiling, in integers
    seen = 0
    for value in sorted(distribution, key=int):
        seen += distribution[value]
        if seen >= rank:
            return int(value)
    raise AssertionError("unreachable")  # pragma: no cover


def stats(distribution: Mapping[str, int]) -> dict[str, int | None]:
    """``{"count", "median", "p90", "mean"}`` of a distribution (nearest rank; mean rounded
    down); ``None`` figures when it is empty."""
    n = sum(distribution.values())
    total = sum(int(v) * c for v, c in distribution.items())
    return {
        "count": n,
        "median": nearest_rank(distribution, 50),
        "p90": nearest_rank(distribution, 90),
        "mean": total // n if n else None,
    }


def rate(numerator: int, denominator: int) -> dict[str, int | None]:
    """An exact fraction and its basis points rounded down (``None`` when the denominator is
    0)."""
    return {
        "numerator": numerator,
        "denominator": denominator,
        "basis_points": numerator * 10_000 // denominator if denominator else None,
    }


def local_month(iso: str, zone: ZoneInfo) -> str:
    """``YYYY-MM`` of an ISO 8601 instant in ``zone``."""
    return datetime.fromisoformat(iso).astimezone(zone).strftime("%Y-%m")


def _entity_grain_period(key: str) -> tuple[str, str, str]:
    """``(entity, grain, period)`` of a row key ``org/entity/grain/period`` (empty strings for
    a key of another shape)."""
    parts = key.split("/", 3)
    if len(parts) != 4:
        return "", "", ""
    return parts[1], parts[2], parts[3]


def coverage_problem(partition_lists: Iterable[Iterable[int]], partitions: int) -> str | None:
    """Why parts reading ``partition_lists`` do not cover ``0..partitions-1`` exactly once.

    Returns:
        None when every partition is read exactly once, else a reason naming the missing
        partitions and those read more than once.
    """
    seen = [p for ps in partition_lists for p in ps]
    expected = list(range(partitions))
    if sorted(seen) == expected:
        return None
    missing = sorted(set(expected) - set(seen))
    doubled = sorted({p for p in seen if seen.count(p) > 1})
    unknown = sorted(set(seen) - set(expected))
    return f"partitions missing {missing}, read twice {doubled}" + (
        f", unknown {unknown}" if unknown else ""
    )


# ---------------------------------------------------------------------------------------------
# interactions


def _empty_cohort() -> dict[str, Any]:
    return {"clients": 0, "responded": 0, "frs": {}, "converted": 0, "dtb": {}}


def interactions_part(
    rows: Iterable[tuple[str, dict[str, Any]]], zone: ZoneInfo, months: Iterable[str]
) -> Part:
    """A worker's part of the interactions summary.

    Args:
        rows: ``(key, values)`` of client rows (``org/client/all/all``) of one organisation;
            other keys are ignored.
        zone: the organisation's IANA zone (cohort and booking months).
        months: the ``YYYY-MM`` months asked for.

    Returns:
        ``{"cohorts": {month: {"clients", "responded", "frs": distribution of first-response
        seconds, "converted", "dtb": distribution of days to book}}, "direct": {month: count},
        "ratings": {score: count}, "nps": {answer: count}}``.
    """
    wanted = set(months)
    cohorts: dict[str, dict[str, Any]] = {}
    direct: dict[str, int] = {}
    ratings: dict[str, int] = {}
    nps: dict[str, int] = {}
    for key, values in rows:
        _entity, grain, period = _entity_grain_period(key)
        if (grain, period) != ("all", "all"):
            continue
        add_counts(ratings, values.get("ratings", {}))
        add_counts(nps, values.get("nps", {}))
        for booked in values.get("early_bookings", []):
            m = local_month(booked, zone)
            if m in wanted:
                direct[m] = direct.get(m, 0) + 1
        first = values.get("first_inquiry_at")
        if first is None:
            continue
        m = local_month(first, zone)
        if m not in wanted:
            continue
        c = cohorts.setdefault(m, _empty_cohort())
        c["clients"] += 1
        if values.get("first_response_seconds") is not None:
            c["responded"] += 1
            add_counts(c["frs"], {str(values["first_response_seconds"]): 1})
        if values.get("converted_at") is not None:
            c["converted"] += 1
            add_counts(c["dtb"], {str(values["days_to_book"]): 1})
    return {"cohorts": cohorts, "direct": direct, "ratings": ratings, "nps": nps}


def merge_interactions(parts: Iterable[Part]) -> Part:
    """The sum of interactions parts (same shape as one part)."""
    out: Part = {"cohorts": {}, "direct": {}, "ratings": {}, "nps": {}}
    for p in parts:
        for m, c in p["cohorts"].items():
            acc = out["cohorts"].setdefault(m, _empty_cohort())
            for field in ("clients", "responded", "converted"):
                acc[field] += c[field]
            add_counts(acc["frs"], c["frs"])
            add_counts(acc["dtb"], c["dtb"])
        for field in ("direct", "ratings", "nps"):
            add_counts(out[field], p[field])
    return out


def _cohort_figures(c: Mapping[str, Any], direct: int) -> dict[str, Any]:
    return {
        "clients": c["clients"],
        "responded": c["responded"],
        "first_response_seconds": stats(c["frs"]),
        "converted": c["converted"],
        "conversion_rate": rate(c["converted"], c["clients"]),
        "days_to_book": stats(c["dtb"]),
        "direct_bookings": direct,
    }


def finish_interactions(merged: Part, months: list[str]) -> dict[str, Any]:
    """The interactions summary from the sum of the parts (definitions: module docstring).

    Returns:
        ``{"cohorts": [{"month", "clients", "responded", "first_response_seconds": {"count",
        "median", "p90", "mean"}, "converted", "conversion_rate": {"numerator",
        "denominator", "basis_points"}, "days_to_book": {...}, "direct_bookings"}, ...],
        "totals": {same without "month"}, "ratings": {"distribution", "count",
        "average_milli"}, "nps": {"distribution", "answers", "promoters", "detractors",
        "score"}}``; one cohort entry per month asked for, zeros when empty.
    """
    all_months = merge_interactions(
        {"cohorts": {"*": c}, "direct": {}, "ratings": {}, "nps": {}}
        for c in merged["cohorts"].values()
    )["cohorts"].get("*", _empty_cohort())
    ratings: dict[str, int] = merged["ratings"]
    nps: dict[str, int] = merged["nps"]
    answers, promoters, detractors, score = nps_figures(nps)
    return {
        "cohorts": [
            {
                "month": m,
                **_cohort_figures(
                    merged["cohorts"].get(m, _empty_cohort()), merged["direct"].get(m, 0)
                ),
            }
            for m in months
        ],
        "totals": _cohort_figures(all_months, sum(merged["direct"].values())),
        "ratings": {
            "distribution": dict(sorted(ratings.items(), key=lambda kv: int(kv[0]))),
            "count": sum(ratings.values()),
            "average_milli": average_rating_milli(ratings),
        },
        "nps": {
            "distribution": dict(sorted(nps.items(), key=lambda kv: int(kv[0]))),
            "answers": answers,
            "promoters": promoters,
            "detractors": detractors,
            "score": score,
        },
    }


# ---------------------------------------------------------------------------------------------
# payments


def payments_part(
    payment_rows: Iterable[tuple[str, dict[str, Any]]],
    booking_rows: Iterable[tuple[str, dict[str, Any]]],
) -> Part:
    """A worker's part of the payments summary.

    Args:
        payment_rows: ``(key, values)`` of booking payment rows of one organisation; only the
            all-time rows (``org/booking/all/all``) are read.
        booking_rows: ``(key, raw row)`` of venue-bookings rows of the same organisation; only
            the service-month rows (``org/venue/month/YYYY-MM``) are read.

    Returns:
        ``{"bookings": payment rows read, "payments", "refunds": counts, "collected_minor",
        "refunded_minor", "booked_minor": {currency: minor units}}``.
    """
    out = _empty_payments()
    for key, values in payment_rows:
        if _entity_grain_period(key)[1:] != ("all", "all"):
            continue
        out["bookings"] += 1
        out["payments"] += values["payments"]
        out["refunds"] += values["refunds"]
        add_counts(out["collected_minor"], values["paid_minor"])
        add_counts(out["refunded_minor"], values["refunded_minor"])
    for key, row in booking_rows:
        if _entity_grain_period(key)[1] != "month":
            continue
        add_counts(out["booked_minor"], row_totals(row).revenue_minor)
    return out


def _empty_payments() -> Part:
    return {
        "bookings": 0,
        "payments": 0,
        "refunds": 0,
        "collected_minor": {},
        "refunded_minor": {},
        "booked_minor": {},
    }


def merge_payments(parts: Iterable[Part]) -> Part:
    """The sum of payments parts (same shape as one part)."""
    out = _empty_payments()
    for p in parts:
        for field in ("bookings", "payments", "refunds"):
            out[field] += p[field]
        for field in ("collected_minor", "refunded_minor", "booked_minor"):
            add_counts(out[field], p[field])
    return out


def finish_payments(merged: Part) -> dict[str, Any]:
    """The payments summary (definitions: module docstring).

    Returns:
        ``{"bookings_with_payments", "payments", "refunds", "currencies": {currency:
        {"collected_minor", "refunded_minor", "booked_minor", "outstanding_minor"}}}``, every
        currency seen in any of the three sums, in code order.
    """
    currencies = sorted(
        set(merged["collected_minor"]) | set(merged["refunded_minor"]) | set(merged["booked_minor"])
    )
    per: dict[str, dict[str, int]] = {}
    for c in currencies:
        collected = merged["collected_minor"].get(c, 0)
        refunded = merged["refunded_minor"].get(c, 0)
        booked = merged["booked_minor"].get(c, 0)
        per[c] = {
            "collected_minor": collected,
            "refunded_minor": refunded,
            "booked_minor": booked,
            "outstanding_minor": booked - collected + refunded,
        }
    return {
        "bookings_with_payments": merged["bookings"],
        "payments": merged["payments"],
        "refunds": merged["refunds"],
        "currencies": per,
    }


# ---------------------------------------------------------------------------------------------
# suppliers


def _empty_supplier_month() -> dict[str, Any]:
    return {"suppliers": 0, **dict.fromkeys(COUNTERS, 0), "per_person": {}}


def _add_supplier_month(into: dict[str, Any], values: Mapping[str, Any], suppliers: int) -> None:
    into["suppliers"] += suppliers
    for field in COUNTERS:
        into[field] += values.get(field, 0)
    for person, counts in values.get("per_person", {}).items():
        add_counts(into["per_person"].setdefault(person, {}), counts)


def suppliers_part(rows: Iterable[tuple[str, dict[str, Any]]], months: Iterable[str]) -> Part:
    """A worker's part of the suppliers summary.

    Args:
        rows: ``(key, values)`` of supplier-month rows (``org/supplier/month/YYYY-MM``) of
            one organisation; other keys are ignored.
        months: the UTC ``YYYY-MM`` months asked for.

    Returns:
        ``{"months": {month: {"suppliers", <the counters>, "per_person": {person:
        {event_type: count}}}}}``.
    """
    wanted = set(months)
    out: dict[str, dict[str, Any]] = {}
    for key, values in rows:
        _supplier, grain, period = _entity_grain_period(key)
        if grain != "month" or period not in wanted:
            continue
        _add_supplier_month(out.setdefault(period, _empty_supplier_month()), values, 1)
    return {"months": out}


def merge_suppliers(parts: Iterable[Part]) -> Part:
    """The sum of suppliers parts (same shape as one part)."""
    out: dict[str, dict[str, Any]] = {}
    for p in parts:
        for m, values in p["months"].items():
            _add_supplier_month(
                out.setdefault(m, _empty_supplier_month()), values, values["suppliers"]
            )
    return {"months": out}


def finish_suppliers(merged: Part, months: list[str]) -> dict[str, Any]:
    """The suppliers summary (definitions: module docstring).

    Returns:
        ``{"months": [{"period", "suppliers", "tasks_assigned", "tasks_completed",
        "deliveries_made", "on_time", "late", "no_due", "per_person"}, ...], "totals": {the
        same over the range, with "supplier_months" (suppliers counted once per month they
        have a row in) instead of "suppliers"}}``; one entry per month asked for, zeros when
        empty.
    """
    rows = [{"period": m, **merged["months"].get(m, _empty_supplier_month())} for m in months]
    totals = _empty_supplier_month()
    for r in rows:
        _add_supplier_month(totals, r, r["suppliers"])
    totals["supplier_months"] = totals.pop("suppliers")
    return {"months": rows, "totals": totals}
