"""What every report type implements and gets: the plug-in interface of the report types.

A report type is a :class:`ReportType`: an async ``build(ctx)`` that reads PostgreSQL (through
``ctx.pool``, always inside :func:`stream_app.db.tenancy.tenant_transaction`) and the live
tables (through ``ctx.read_venue_rows``), and returns a :class:`ReportTable` that every
renderer turns into a file. The types are listed in :mod:`stream_app.reports.registry`; this
module imports none of them. The options a type's requests may carry (``configuration``) are
part of the wire contract: :data:`stream_app.schemas.reports.REPORT_CONFIGS`.

Cache classes and their time to live (issue: financial 30 min, operational 1 h, seasonal
24 h, portfolio 12 h) are in :data:`CACHE_TTL_S`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, Required, TypedDict, Unpack

import asyncpg

from stream_app.db.tenancy import Organization, Venue
from stream_app.errors import WeddingError
from stream_app.reports.model import Cell, ChartSpec, Column, Kpi, ReportSection, ReportTable
from stream_app.reports.streaming import ReportSession
from stream_app.schemas.ids import quoted_list
from stream_app.schemas.reports import ReportRequest

CacheClass = Literal["financial", "operational", "seasonal", "portfolio"]

CACHE_TTL_S: dict[CacheClass, int] = {
    "financial": 30 * 60,
    "operational": 60 * 60,
    "seasonal": 24 * 60 * 60,
    "portfolio": 12 * 60 * 60,
}
"""Seconds a cached report of each class may be served (before any invalidation)."""

VenueRowsReader = Callable[[str, list[str], date, date], Awaitable[dict[str, dict[str, Any]]]]
"""``(organization_id, venue_ids, date_from, date_to) -> {table key: row}`` of the
``venue-bookings`` table (see :func:`stream_app.reports.venue_rows.read_venue_rows`)."""


class ReportInputError(WeddingError):
    """The request cannot be answered from the data (unknown venue, no data, ...).

    The message is the cause the user sees; the report ends ``failed`` without retries.
    """

    retriable = False


@dataclass(frozen=True, slots=True)
class ReportContext:
    """What a report type's builder gets.

    Attributes:
        request: the validated request (date range, filters, configuration).
        organization: the tenant (name, IANA zone, default currency).
        venues: the organisation's venues (id, name, capacity), by id.
        pool: the PostgreSQL pool; query inside ``tenant_transaction(conn, org.id)`` and name
            the organisation in every predicate.
        read_venue_rows: reads rows of the live ``venue-bookings`` table, wherever they are.
        session: when set (the report generator sets it), a connection in one snapshot held
            until every format is rendered: a builder may return its large tables as
            :class:`~stream_app.reports.streaming.StreamedRows` read through server-side
            cursors (:mod:`stream_app.reports.streaming`); None: build lists.
    """

    request: ReportRequest
    organization: Organization
    venues: list[Venue]
    pool: asyncpg.Pool
    read_venue_rows: VenueRowsReader
    session: ReportSession | None = None


Builder = Callable[[ReportContext], Awaitable[ReportTable]]


@dataclass(frozen=True, slots=True)
class ReportType:
    """A report type.

    Attributes:
        name: the ``report_type`` of requests (``[a-z_]+``), one of
            :data:`stream_app.schemas.reports.REPORT_TYPES`.
        title: a person's name for it.
        cache_class: decides the cache's time to live (:data:`CACHE_TTL_S`).
        build: the builder.
        reads: the event streams whose changes make a cached copy stale (``bookings``,
            ``payments``, ``interactions``, ``suppliers``); history-only types list none (every
            type also depends on its organisation's PostgreSQL ``history`` version).
        streams: the builder streams its large tables when it gets a
            :attr:`ReportContext.session` (the generator opens one only for such types: a
            session holds a pool connection from the build to the last format).
        venue_filter: ``data_filters.venue_id`` narrows the report to venues; False = the
            type covers the whole organisation and refuses data filters (so a venue-scoped
            token cannot request it).
    """

    name: str
    title: str
    cache_class: CacheClass
    build: Builder
    reads: frozenset[str]
    streams: bool = False
    venue_filter: bool = False


def reject_filters(request: ReportRequest) -> None:
    """Refuse data filters, for a type that covers the whole organisation.

    Raises:
        ReportInputError: ``data_filters`` is not empty (names the first dimension).
    """
    for dimension in request.data_filters:
        raise ReportInputError(
            f"data_filters.{dimension}: not supported by report type {request.report_type!r}"
        )


def selected_venues(ctx: ReportContext) -> list[Venue]:
    """The venues a venue report covers: the organisation's, or those of
    ``data_filters.venue_id``, by id.

    Raises:
        ReportInputError: the filter names an unknown venue, or there is no venue.
    """
    req = ctx.request
    venues = ctx.venues
    if "venue_id" in req.data_filters:
        allowed = set(req.data_filters["venue_id"])
        unknown = sorted(allowed - {v.id for v in venues})
        if unknown:
            shown = quoted_list(unknown)
            raise ReportInputError(f"data_filters.venue_id: unknown venue(s) {shown}")
        venues = [v for v in venues if v.id in allowed]
    if not venues:
        raise ReportInputError(f"organization_id: {req.organization_id!r} has no venues")
    return venues


class TableContent(TypedDict, total=False):
    """What a report type puts in its :class:`ReportTable` besides the metadata: the fields of
    the same names (``columns`` and ``rows`` required, the others default to empty / no chart)."""

    columns: Required[Sequence[Column]]
    rows: Required[Iterable[Sequence[Cell]]]
    notes: Sequence[str]
    chart: ChartSpec | None
    sections: Sequence[ReportSection]
    kpis: Sequence[Kpi]
    validation: Sequence[str]


def new_table(
    report_type: str,
    org: Organization,
    date_from: date,
    date_to: date,
    **content: Unpack[TableContent],
) -> ReportTable:
    """A :class:`ReportTable` of ``report_type`` for ``org`` over the local dates
    ``[date_from, date_to]`` (its metadata from the organisation: id, name, time zone)."""
    # ReportTable's six metadata fields, in their order; the content by name.
    return ReportTable(report_type, org.id, org.name, org.time_zone, date_from, date_to, **content)
