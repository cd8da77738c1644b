"""Run a compiled aggregation inside a tenant transaction and shape its result.

Part of the query layer (reports); reads PostgreSQL only, as the RLS-restricted role
``wedding_tenant`` with the organisation set (:func:`stream_app.db.tenancy.tenant_transaction`),
under a statement timeout so one query cannot occupy the database for long.

When one of the organisation's rollups matches the request (:mod:`.rollups`), the answer is
read from it instead (``source: {"rollup": id}``), after its dirty buckets were recomputed
(:mod:`.rollup_store`); its rows equal the history table's exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import asyncpg

from stream_app.aggregation.compiler import (
    CompiledQuery,
    Extract,
    OutputColumn,
    compile_request,
    describe,
)
from stream_app.aggregation.request import AggregationRequest, request_from_dict
from stream_app.aggregation.rollup_store import (
    RollupNotFoundError,
    RollupRead,
    find_rollup,
    read_rollup,
    refresh,
)
from stream_app.aggregation.rollups import Rollup
from stream_app.db import monitoring
from stream_app.db.tenancy import UnknownOrganizationError, tenant_transaction
from stream_app.errors import WeddingError

STATEMENT_TIMEOUT_MS = 10_000
"""Longest one aggregation may run (``statement_timeout``, milliseconds). Raising it lets one
request hold a connection and a CPU that long."""

PLAIN_INDEX_SCANS = False
"""Whether the planner may use plain index scans for aggregations (``enable_indexscan``, set
for the transaction only). Off: an aggregation reads most of a tenant's rows, and a plain
index scan (chosen for ``bookings_service_date`` because it returns rows presorted by venue)
visits them in index order with one random heap access per row; bitmap and sequential scans
read the pages in order. Measured on 1,000,000 bookings (2 cores, ``bench_aggregation``):
index scan plan 5.2 s, parallel sequential scan plan 2.3 s, same load."""

AVG_DECIMALS = Decimal("0.000001")
"""Averages are rounded half-even to 6 decimal places (of the field's unit)."""

Cell = str | int | None


class AggregationTimeoutError(WeddingError):
    """The statement ran longer than :data:`STATEMENT_TIMEOUT_MS` and was cancelled."""

    retriable = False


@dataclass(frozen=True, slots=True)
class AggregationResult:
    """The answer of one aggregation.

    Attributes:
        dataset: the dataset read.
        organization_id / time_zone: the tenant and the zone its grains are computed in.
        columns: the result's columns (group columns first, then metrics).
        rows: one dict per group (column name → cell), ordered by the group columns.
        truncated: there were more groups than ``limit``; only the first ``limit`` are here.
        sample: ``{"percent", "seed", "method"}`` when the rows were sampled, else None.
        estimate: True when sampled: counts and sums are of the sampled rows only
            (multiply by 100 / percent to estimate totals); averages, minima, maxima and
            percentiles of the sample estimate those of all rows.
        currency_grouped: the ``currency`` column was added to the groups (money metrics are
            never combined across currencies).
        query_ms: the statement's wall time in milliseconds.
        rollup_id: the rollup the answer was read from (:mod:`.rollups`), None when it was
            computed from the history table itself.
    """

    dataset: str
    organization_id: str
    time_zone: str
    columns: tuple[OutputColumn, ...]
    rows: list[dict[str, Cell]]
    truncated: bool
    sample: dict[str, object] | None
    estimate: bool
    currency_grouped: bool
    query_ms: float
    rollup_id: int | None = None

    def to_json(self) -> dict[str, object]:
        """The result as a JSON-ready dict (the HTTP API's body)."""
        notes = []
        if self.estimate and self.sample is not None:
            notes.append(
                f"estimate: computed over a {self.sample['method']} sample of about "
                f"{self.sample['percent']} % of the rows; counts and sums are of the sample"
            )
        if self.currency_grouped:
            notes.append("grouped by currency: amounts are never combined across currencies")
        return {
            "dataset": self.dataset,
            "organization_id": self.organization_id,
            "time_zone": self.time_zone,
            "columns": describe(self.columns),
            "rows": self.rows,
            "row_count": len(self.rows),
            "truncated": self.truncated,
            "sample": self.sample,
            "estimate": self.estimate,
            "notes": notes,
            "query_ms": round(self.query_ms, 3),
            "source": (
                {"table": self.dataset} if self.rollup_id is None else {"rollup": self.rollup_id}
            ),
        }


def _float_text(value: float) -> str:
    """A double as its shortest round-trip decimal string, without exponent (``21270.3``)."""
    if value.is_integer():
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def _iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year:04d}-W{week:02d}"


_LABELS: dict[str, Callable[[date], str]] = {
    "day": date.isoformat,
    "week": _iso_week,
    "month": lambda d: f"{d.year:04d}-{d.month:02d}",
    "year": lambda d: f"{d.year:04d}",
}
"""Grain labels from the period's first day (see :data:`~.compiler.GRAIN_LABELS`)."""


def _cell(row: asyncpg.Record, extract: Extract) -> Cell:
    values = [row[p] for p in extract.positions]
    first = values[0]
    if extract.convert == "avg":
        total, count = values
        if not count:
            return None
        return str((Decimal(int(total)) / Decimal(count)).quantize(AVG_DECIMALS, ROUND_HALF_EVEN))
    if first is None:
        return None
    if extract.convert == "int":
        return int(first)
    if extract.convert == "date":
        assert isinstance(first, date)
        return first.isoformat()
    if extract.convert == "timestamp":
        assert isinstance(first, datetime)
        return first.astimezone(UTC).isoformat()
    if extract.convert in _LABELS:
        assert isinstance(first, date)
        return _LABELS[extract.convert](first)
    if extract.convert == "float":
        return _float_text(float(first))
    return str(first) if not isinstance(first, int) else first


def _converter(extract: Extract) -> Callable[[asyncpg.Record], Cell]:
    """:func:`_cell` for one column, with the branching done once (a result has thousands of
    rows; grain labels of a date are computed once per date)."""
    pos = extract.positions[0]
    convert = extract.convert
    if convert == "int":
        return lambda r: None if (v := r[pos]) is None else int(v)
    if convert == "plain":
        return lambda r: v if (v := r[pos]) is None or isinstance(v, int) else str(v)
    if convert in _LABELS:
        label = _LABELS[convert]
        cache: dict[date, str] = {}

        def labelled(r: asyncpg.Record) -> Cell:
            v = r[pos]
            if v is None:
                return None
            text = cache.get(v)
            if text is None:
                text = cache[v] = label(v)
            return text

        return labelled
    return lambda r: _cell(r, extract)


_SETUP = (
    "SELECT o.id, o.time_zone, set_config('statement_timeout', $2, true),"
    " set_config('enable_indexscan', $3, true) FROM organizations o WHERE o.id = $1"
)
"""Reads the organisation and sets the transaction's limits in one round trip."""


async def aggregate(
    db: asyncpg.Pool | asyncpg.Connection,
    organization_id: str,
    request: AggregationRequest | Mapping[str, Any],
    *,
    use_rollups: bool = True,
) -> AggregationResult:
    """Run one aggregation for ``organization_id`` (the Python API; HTTP calls this too).

    Args:
        db: a pool (a connection is borrowed) or a connection (not inside a transaction).
        organization_id: the tenant; only its rows are read.
        request: an :class:`AggregationRequest` or a dict of the JSON shape.
        use_rollups: answer from a matching rollup of the organisation when there is one
            (:mod:`.rollups`; refreshed first, exact); False always reads the history table.

    Returns:
        The groups and their figures (see :class:`AggregationResult`).

    Raises:
        AggregationError: the request is malformed or names something not allowed
            (``field`` is its JSON path).
        stream_app.db.tenancy.UnknownOrganizationError: no such organisation.
        AggregationTimeoutError: the statement timeout cancelled the query.
    """
    req = request if isinstance(request, AggregationRequest) else request_from_dict(dict(request))
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _aggregate(conn, organization_id, req, use_rollups)
    return await _aggregate(db, organization_id, req, use_rollups)


ROLLUP_ATTEMPTS = 2
"""Refresh-then-read attempts on a matching rollup with dirty buckets before the history
table answers (a write landing between the refresh and the read makes the read refuse)."""


async def _setup(conn: asyncpg.Connection, organization_id: str) -> str:
    """Inside a tenant transaction: set its limits, return the organisation's zone."""
    org = await conn.fetchrow(
        _SETUP,
        organization_id,
        str(STATEMENT_TIMEOUT_MS),
        "on" if PLAIN_INDEX_SCANS else "off",
    )
    if org is None:
        raise UnknownOrganizationError(f"organization_id: {organization_id!r} does not exist")
    return str(org["time_zone"])


async def _aggregate(
    conn: asyncpg.Connection, organization_id: str, req: AggregationRequest, use_rollups: bool
) -> AggregationResult:
    # a bad request is refused before any database work (the zone changes no validation)
    compile_request(req, organization_id, "UTC")
    found: tuple[int, Rollup] | None = None
    try:
        async with tenant_transaction(conn, organization_id):
            time_zone = await _setup(conn, organization_id)
            if use_rollups:
                found = await find_rollup(conn, organization_id, req)
            if found is not None:
                # the fast path: a matching rollup with nothing dirty, read in one statement
                read = await read_rollup(conn, organization_id, *found, req, time_zone)
                if read is not None:
                    return _from_read(req, organization_id, time_zone, read, found[0])
            else:
                query = compile_request(req, organization_id, time_zone)
                started = time.perf_counter()
                records = await monitoring.fetch(
                    conn, organization_id, "aggregation", req.dataset, query.sql, *query.params
                )
                elapsed_ms = (time.perf_counter() - started) * 1000
                return shape_result(
                    req, organization_id, time_zone, query, records, elapsed_ms, None
                )
        assert found is not None
        # the rollup has dirty buckets (or another zone): refresh them, then read it again
        for _ in range(ROLLUP_ATTEMPTS):
            try:
                await refresh(conn, organization_id, *found)
            except RollupNotFoundError:
                break  # deleted meanwhile: the table answers
            async with tenant_transaction(conn, organization_id):
                time_zone = await _setup(conn, organization_id)
                read = await read_rollup(conn, organization_id, *found, req, time_zone)
            if read is not None:
                return _from_read(req, organization_id, time_zone, read, found[0])
        return await _aggregate(conn, organization_id, req, use_rollups=False)
    except asyncpg.QueryCanceledError as exc:
        raise AggregationTimeoutError(
            f"the aggregation ran longer than {STATEMENT_TIMEOUT_MS / 1000:g} s and was "
            "cancelled; narrow the time range, filter more, group less or sample"
        ) from exc


def _from_read(
    req: AggregationRequest, organization_id: str, time_zone: str, read: RollupRead, rollup_id: int
) -> AggregationResult:
    return shape_result(
        req, organization_id, time_zone, read.query, read.records, read.elapsed_ms, rollup_id
    )


def shape_result(
    req: AggregationRequest,
    organization_id: str,
    time_zone: str,
    query: CompiledQuery,
    records: list[asyncpg.Record],
    elapsed_ms: float,
    rollup_id: int | None,
) -> AggregationResult:
    """The :class:`AggregationResult` of ``records`` fetched for ``query`` (cells converted,
    the extra row beyond ``limit`` dropped and reported as ``truncated``)."""
    truncated = len(records) > query.limit
    converters = [
        (c.name, _converter(e)) for c, e in zip(query.columns, query.extracts, strict=True)
    ]
    rows = [{name: fn(r) for name, fn in converters} for r in records[: query.limit]]
    sample: dict[str, object] | None = None
    if query.sample is not None:
        sample = {
            "percent": query.sample.percent,
            "seed": query.sample.seed,
            "method": query.sample.method,
        }
    return AggregationResult(
        dataset=req.dataset,
        organization_id=organization_id,
        time_zone=time_zone,
        columns=query.columns,
        rows=rows,
        truncated=truncated,
        sample=sample,
        estimate=sample is not None,
        currency_grouped=query.currency_grouped,
        query_ms=elapsed_ms,
        rollup_id=rollup_id,
    )
