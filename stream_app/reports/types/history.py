"""Report types built from PostgreSQL history alone (photography, catering, planner portfolio).

The shared shape of their builders: refuse data filters (they cover the whole organisation),
run the type's reads in one tenant transaction, make the table from the rows (a pure
function), then attach the validation findings of the tables the report reads
(:mod:`stream_app.reports.validation`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import date
from typing import TypeVar

import asyncpg

from stream_app.db.tenancy import Organization, tenant_transaction
from stream_app.reports.model import ReportTable
from stream_app.reports.types.base import CacheClass, ReportContext, ReportType, reject_filters
from stream_app.reports.validation import TableName, validate_for_report

T = TypeVar("T")

Read = Callable[[asyncpg.Connection, str, date, date], Awaitable[T]]
"""``read(conn, organization_id, date_from, date_to)``: the type's queries, run inside the
organisation's tenant transaction."""


async def read_history(ctx: ReportContext, read: Read[T]) -> T:
    """Refuse data filters, then run ``read(conn, organization_id, date_from, date_to)``
    inside the organisation's tenant transaction.

    Raises:
        ReportInputError: data filters were given.
    """
    req = ctx.request
    reject_filters(req)
    org = ctx.organization
    async with ctx.pool.acquire() as conn, tenant_transaction(conn, org.id):
        return await read(conn, org.id, req.date_from, req.date_to)


async def with_validation(
    ctx: ReportContext,
    table: ReportTable,
    tables: Sequence[TableName],
    skip: Collection[str] = (),
) -> ReportTable:
    """``table`` carrying, after its own findings, the validation findings of ``tables`` for
    the report's range (``skip``: the checks left out, as
    :func:`stream_app.reports.validation.validate_report_input` names them)."""
    checked = await validate_for_report(ctx, tables=tables, skip=skip)
    return dataclasses.replace(table, validation=(*table.validation, *checked.lines()))


async def build_from_history(
    ctx: ReportContext,
    read: Read[T],
    make: Callable[[T, Organization, date, date], ReportTable],
    validated: Sequence[TableName],
) -> ReportTable:
    """The report of ``ctx.request``: :func:`read_history` with ``read``, then
    ``make(rows, organization, date_from, date_to)``, with the validation findings of the
    ``validated`` tables.

    Raises:
        ReportInputError: data filters were given, or ``read`` / ``make`` refused the data.
    """
    req = ctx.request
    data = await read_history(ctx, read)
    table = make(data, ctx.organization, req.date_from, req.date_to)
    return await with_validation(ctx, table, validated)


def history_type(
    name: str,
    title: str,
    cache_class: CacheClass,
    read: Read[T],
    make: Callable[[T, Organization, date, date], ReportTable],
    validated: Sequence[TableName],
) -> ReportType:
    """The report type ``name`` built from history alone: its builder is
    :func:`build_from_history` with ``read``, ``make`` and ``validated``; it reads no event
    stream (a cached copy is stale only when the organisation's history changes).

    The builder raises :class:`~stream_app.reports.types.base.ReportInputError` when data
    filters were given, or when ``read`` or ``make`` refuses the data.
    """

    async def build(ctx: ReportContext) -> ReportTable:
        return await build_from_history(ctx, read, make, validated)

    return ReportType(
        name=name, title=title, cache_class=cache_class, build=build, reads=frozenset()
    )
