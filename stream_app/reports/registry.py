"""Report types: the name a request carries → how the report is built and how long it keeps.

A report type is a :class:`ReportType`: an async ``build(ctx)`` that reads PostgreSQL (through
``ctx.pool``, always inside :func:`stream_app.db.tenancy.tenant_transaction`) and the live
tables (through ``ctx.read_venue_rows``), and returns a :class:`ReportTable` that every
renderer turns into a file. The report agent looks types up here; a request naming a type
that is not registered fails validation (:data:`stream_app.schemas.reports.REPORT_TYPES`).

Cache classes and their time to live (issue: financial 30 min, operational 1 h, seasonal
24 h, portfolio 12 h) are in :data:`CACHE_TTL_S`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import asyncpg
import msgspec

from stream_app.db.tenancy import Organization, Venue
from stream_app.errors import WeddingError
from stream_app.reports.model import ReportTable
from stream_app.reports.streaming import ReportSession
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
``venue-bookings`` table (see :func:`stream_app.reports.agent.read_venue_rows`)."""


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
        session: when set (the report agent sets it), a connection in one snapshot held until
            every format is rendered: a builder may return its large tables as
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
    """A registered report type.

    Attributes:
        name: the ``report_type`` of requests (``[a-z_]+``).
        title: a person's name for it.
        cache_class: decides the cache's time to live (:data:`CACHE_TTL_S`).
        build: the builder.
        reads: the event streams whose changes make a cached copy stale (``bookings``,
            ``payments``, ``interactions``, ``suppliers``); history-only types list none (every
            type also depends on its organisation's PostgreSQL ``history`` version).
        config: the options a request's ``configuration`` may carry, as a msgspec Struct
            (``forbid_unknown_fields=True``); ``None``: the type takes no options.
        streams: the builder streams its large tables when it gets a
            :attr:`ReportContext.session` (the agent opens one only for such types: a session
            holds a pool connection from the build to the last format).
    """

    name: str
    title: str
    cache_class: CacheClass
    build: Builder
    reads: frozenset[str]
    config: type[msgspec.Struct] | None = None
    streams: bool = False


_REGISTRY: dict[str, ReportType] = {}


def register(report_type: ReportType) -> ReportType:
    """Add ``report_type``; returns it.

    Raises:
        ValueError: the name is taken, or is not in ``schemas.reports.REPORT_TYPES``.
    """
    from stream_app.schemas.reports import REPORT_TYPES

    if report_type.name in _REGISTRY:
        raise ValueError(f"report type {report_type.name!r} is registered twice")
    if report_type.name not in REPORT_TYPES:
        raise ValueError(f"report type {report_type.name!r} is missing from REPORT_TYPES")
    _REGISTRY[report_type.name] = report_type
    return report_type


def get(name: str) -> ReportType:
    """The registered type ``name``.

    Raises:
        KeyError: no such type (requests are validated first, so this is a programming error).
    """
    _load_builtin()
    return _REGISTRY[name]


def all_types() -> list[ReportType]:
    """Every registered type, by name."""
    _load_builtin()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def _load_builtin() -> None:
    # importing a report module registers it
    from stream_app.reports import (  # noqa: F401
        booking_summary,
        catering_cost,
        compliance,
        occupancy,
        photography_business,
        planner_portfolio,
    )
