"""Validation of a report's input: SQL checks over one organisation's history for a date range.

Part of the reports stage; reads PostgreSQL only, inside
:func:`stream_app.db.tenancy.tenant_transaction` (row-level security) with the organisation in
every predicate. A report type calls :func:`validate_for_report` (or :func:`validate_report_input`)
and puts ``result.lines()`` into :attr:`stream_app.reports.model.ReportTable.validation`.

Rows in scope: ``bookings`` whose ``service_date`` is in ``[date_from, date_to]``;
``payments`` whose ``occurred_at`` and ``feedback`` whose ``submitted_at`` fall on those local
dates of the organisation's IANA zone.

Checks (severity, table.field: what is counted; each finding gives the count and up to
:attr:`ValidationThresholds.examples` example ids, smallest first):

errors (the figures would be wrong):
  - ``bookings.amount_minor`` / ``payments.amount_minor``: negative amounts (migration 001
    forbids them with a CHECK; the check stays as a guard should that change);
  - ``bookings.currency`` / ``payments.currency``: not an ISO 4217 code (pycountry's list);
  - ``bookings.cancelled_at``: status ``cancelled`` with no ``cancelled_at``; ``cancelled_at``
    before ``booked_at``;
  - ``bookings.booked_at``: before :attr:`ValidationThresholds.earliest` or after ``now``;
    ``payments.occurred_at`` / ``feedback.submitted_at`` after ``now``;
  - ``bookings.source_event_id``: one source event stored as two or more bookings (the rows
    beyond the first are counted);
  - ``payments.booking_id``: orphans, payments whose booking does not exist;
  - ``payments.currency``: a payment in another currency than its booking;
  - ``feedback.booking_id``: orphans, feedback naming a booking that does not exist;
  - ``feedback.rating``: neither a rating nor an NPS answer; rating outside 1..5 or NPS
    outside 0..10 (CHECKed by migration 001, kept as a guard).

warnings (the figures are right but may surprise):
  - ``bookings.venue_id`` / ``bookings.client_id`` / ``feedback.booking_id``: empty;
  - ``bookings.amount_minor`` / ``payments.amount_minor``: absurd, above
    :attr:`ValidationThresholds.max_amount_major` major units of the row's currency
    (1,000,000 by default: EUR 1,000,000.00 = 100,000,000 cents; JPY 1,000,000);
  - ``bookings.nights``: more than :attr:`ValidationThresholds.max_nights` (365);
  - ``bookings.booked_at``: booked (local date) after the service date; booked more than
    :attr:`ValidationThresholds.max_lead_days` (1,830) days before it;
  - ``bookings.currency``: rows not in the organisation's currency (mixed currencies: figures
    are per currency and never added up across them);
  - ``bookings.id``: duplicates, rows equal to an earlier one (by id) in venue, client,
    wedding, supplier, service date, nights, booked_at, amount, currency and status (the
    rows beyond the first are counted; they may be distinct real bookings);
  - ``payments.id``: duplicates, same booking, kind, amount, currency and time (beyond the
    first);
  - ``payments.amount_minor``: bookings (with a payment in scope) whose refunds exceed their
    payments, or whose payments net of refunds exceed the booked value, in the booking's
    currency, all time;
  - ``feedback.id``: a second or further feedback of the same client on the same booking.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import asyncpg

from stream_app.db.tenancy import Organization, tenant_transaction
from stream_app.money import minor_unit_exponent
from stream_app.reports.types.base import ReportContext
from stream_app.schemas.base import ISO_4217_CODES

Severity = Literal["error", "warning"]
TableName = Literal["bookings", "payments", "feedback"]
TABLES: tuple[TableName, ...] = ("bookings", "payments", "feedback")


@dataclass(frozen=True, slots=True)
class ValidationThresholds:
    """Limits of the checks. Every default is written out; change them per report type.

    Attributes:
        max_amount_major: an amount above this many major units of its currency is absurd
            (1,000,000: EUR 1,000,000.00; minor units follow ISO 4217 exponents).
        max_nights: a stay longer than this is absurd.
        max_lead_days: a booking made longer than this before its service date is suspect
            (1,830 days: about five years).
        earliest: a ``booked_at`` before this instant is out of range (UTC).
        examples: how many example ids a finding lists (1..50).
    """

    max_amount_major: int = 1_000_000
    max_nights: int = 365
    max_lead_days: int = 1_830
    earliest: datetime = datetime(1990, 1, 1, tzinfo=UTC)
    examples: int = 5


@dataclass(frozen=True, slots=True)
class Finding:
    """One failed check.

    Attributes:
        severity: ``error`` (figures would be wrong) or ``warning``.
        check: machine code of the check, e.g. ``orphan``, ``null``, ``absurd_amount``.
        table / field: where (``payments`` / ``booking_id``).
        count: how many rows (or bookings, for per-booking checks) fail it.
        example_ids: up to ``examples`` ids of them, smallest first.
        message: what fails, in words.
    """

    severity: Severity
    check: str
    table: str
    field: str
    count: int
    example_ids: tuple[str, ...]
    message: str

    def line(self) -> str:
        """One line for a report: ``error: payments.booking_id: 2 payments whose ... (e.g. p1)``."""
        where = f"{self.table}.{self.field}"
        examples = ", ".join(self.example_ids)
        return f"{self.severity}: {where}: {self.count:,} {self.message} (e.g. {examples})"


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """The findings of one validation.

    Attributes:
        organization_id / date_from / date_to: what was checked.
        errors / warnings: the failed checks, in check order.
        checks_run: how many checks ran (all passed but these).
    """

    organization_id: str
    date_from: date
    date_to: date
    errors: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    checks_run: int

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def lines(self) -> tuple[str, ...]:
        """Errors then warnings, one line each (for ``ReportTable.validation``)."""
        return tuple(f.line() for f in (*self.errors, *self.warnings))

    def find(self, table: str, field: str, check: str) -> Finding | None:
        """The finding of one check, or None when it passed."""
        for f in (*self.errors, *self.warnings):
            if (f.table, f.field, f.check) == (table, field, check):
                return f
        return None


@dataclass(frozen=True, slots=True)
class _Check:
    severity: Severity
    check: str
    table: TableName
    field: str
    message: str
    sql: str
    """``SELECT n, ex`` over the CTE ``p`` of parameters (see :data:`_PARAMS`)."""

    @property
    def key(self) -> str:
        """``"<table>.<field>:<check>"``, as ``skip`` names it."""
        return f"{self.table}.{self.field}:{self.check}"

    def text(self, limits: ValidationThresholds) -> str:
        """The message with the thresholds written in."""
        return self.message.format(
            earliest=limits.earliest.date().isoformat(),
            max_amount=f"{limits.max_amount_major:,}",
            max_nights=limits.max_nights,
            max_lead_days=f"{limits.max_lead_days:,}",
        )


_PARAMS = (
    "WITH p AS (SELECT $1::text AS org, $2::date AS d_from, $3::date AS d_to,"
    " $4::timestamptz AS t_from, $5::timestamptz AS t_to, $6::timestamptz AS now,"
    " $7::text AS tz, $8::text AS home, $9::text[] AS codes, $10::bigint[] AS max_minor,"
    " $11::int AS max_nights, $12::int AS max_lead, $13::timestamptz AS earliest) "
)
_EX = "(array_agg({id} ORDER BY {id}))[1:{k}]"
_B = (
    "FROM bookings b CROSS JOIN p WHERE b.organization_id = p.org"
    " AND b.service_date BETWEEN p.d_from AND p.d_to"
)
_P = (
    "FROM payments y CROSS JOIN p WHERE y.organization_id = p.org"
    " AND y.occurred_at >= p.t_from AND y.occurred_at < p.t_to"
)
_F = (
    "FROM feedback f CROSS JOIN p WHERE f.organization_id = p.org"
    " AND f.submitted_at >= p.t_from AND f.submitted_at < p.t_to"
)
_MAX_OF = "(p.max_minor)[array_position(p.codes, {cur})]"
"""The largest amount of the row's currency (NULL for a code not in the list: not counted).
An index lookup per row; the subquery it replaced unnested the ~180 codes for every row (4.2
of the 4.5 s the shared checks took over the hotel data's 119,389 bookings)."""


def _simple(
    severity: Severity, check: str, table: TableName, fld: str, message: str, where: str
) -> _Check:
    source, alias = {"bookings": (_B, "b"), "payments": (_P, "y"), "feedback": (_F, "f")}[table]
    sql = (
        f"SELECT count(*) AS n, {_EX.format(id=f'{alias}.id', k='{k}')} AS ex {source} AND {where}"
    )
    return _Check(severity, check, table, fld, message, sql)


def _beyond_first(
    severity: Severity,
    check: str,
    table: TableName,
    fld: str,
    message: str,
    partition: str,
    where: str = "TRUE",
) -> _Check:
    """Rows beyond the first (by id) of each set of rows equal in ``partition``."""
    source, alias = {"bookings": (_B, "b"), "payments": (_P, "y"), "feedback": (_F, "f")}[table]
    sql = (
        f"SELECT count(*) AS n, {_EX.format(id='d.id', k='{k}')} AS ex FROM ("
        f"SELECT {alias}.id, row_number() OVER (PARTITION BY {partition}"
        f" ORDER BY {alias}.id) AS r {source} AND {where}) d WHERE d.r > 1"
    )
    return _Check(severity, check, table, fld, message, sql)


_CHECKS: tuple[_Check, ...] = (
    # bookings: errors
    _simple(
        "error",
        "negative_amount",
        "bookings",
        "amount_minor",
        "negative amounts",
        "b.amount_minor < 0",
    ),
    _simple(
        "error",
        "unknown_currency",
        "bookings",
        "currency",
        "rows whose currency is not an ISO 4217 code",
        "NOT (b.currency::text = ANY(p.codes))",
    ),
    _simple(
        "error",
        "null",
        "bookings",
        "cancelled_at",
        "cancelled bookings without cancelled_at",
        "b.status = 'cancelled' AND b.cancelled_at IS NULL",
    ),
    _simple(
        "error",
        "before_booking",
        "bookings",
        "cancelled_at",
        "bookings cancelled before they were booked",
        "b.cancelled_at < b.booked_at",
    ),
    _simple(
        "error",
        "date_out_of_range",
        "bookings",
        "booked_at",
        "bookings booked before {earliest} or after now",
        "(b.booked_at < p.earliest OR b.booked_at > p.now)",
    ),
    _beyond_first(
        "error",
        "duplicate_source_event",
        "bookings",
        "source_event_id",
        "bookings from a source event already stored as another booking",
        "b.source_event_id",
        "b.source_event_id IS NOT NULL",
    ),
    # bookings: warnings
    _simple(
        "warning", "null", "bookings", "venue_id", "bookings without a venue", "b.venue_id IS NULL"
    ),
    _simple(
        "warning",
        "null",
        "bookings",
        "client_id",
        "bookings without a client",
        "b.client_id IS NULL",
    ),
    _simple(
        "warning",
        "absurd_amount",
        "bookings",
        "amount_minor",
        "bookings above {max_amount} major units of their currency",
        f"b.amount_minor > {_MAX_OF.format(cur='b.currency::text')}",
    ),
    _simple(
        "warning",
        "absurd_nights",
        "bookings",
        "nights",
        "stays longer than {max_nights} nights",
        "b.nights > p.max_nights",
    ),
    _simple(
        "warning",
        "booked_after_service",
        "bookings",
        "booked_at",
        "bookings made (local date) after their service date",
        "(b.booked_at AT TIME ZONE p.tz)::date > b.service_date",
    ),
    _simple(
        "warning",
        "long_lead",
        "bookings",
        "booked_at",
        "bookings made more than {max_lead_days} days before their service date",
        "b.service_date - (b.booked_at AT TIME ZONE p.tz)::date > p.max_lead",
    ),
    _simple(
        "warning",
        "mixed_currency",
        "bookings",
        "currency",
        "bookings not in the organisation's currency (figures are per currency)",
        "b.currency::text <> p.home",
    ),
    _beyond_first(
        "warning",
        "duplicate",
        "bookings",
        "id",
        "bookings equal to an earlier one in every field but the id",
        "b.venue_id, b.client_id, b.wedding_id, b.supplier_id, b.service_date,"
        " b.nights, b.booked_at, b.amount_minor, b.currency, b.status",
    ),
    # payments
    _simple(
        "error",
        "negative_amount",
        "payments",
        "amount_minor",
        "negative amounts",
        "y.amount_minor < 0",
    ),
    _simple(
        "error",
        "unknown_currency",
        "payments",
        "currency",
        "payments whose currency is not an ISO 4217 code",
        "NOT (y.currency::text = ANY(p.codes))",
    ),
    _simple(
        "error",
        "date_out_of_range",
        "payments",
        "occurred_at",
        "payments after now",
        "y.occurred_at > p.now",
    ),
    _simple(
        "error",
        "orphan",
        "payments",
        "booking_id",
        "payments whose booking does not exist",
        "NOT EXISTS (SELECT 1 FROM bookings o WHERE o.organization_id = p.org"
        " AND o.id = y.booking_id)",
    ),
    _simple(
        "error",
        "currency_mismatch",
        "payments",
        "currency",
        "payments in another currency than their booking",
        "EXISTS (SELECT 1 FROM bookings o WHERE o.organization_id = p.org"
        " AND o.id = y.booking_id AND o.currency <> y.currency)",
    ),
    _simple(
        "warning",
        "absurd_amount",
        "payments",
        "amount_minor",
        "payments above {max_amount} major units of their currency",
        f"y.amount_minor > {_MAX_OF.format(cur='y.currency::text')}",
    ),
    _beyond_first(
        "warning",
        "duplicate",
        "payments",
        "id",
        "payments equal to an earlier one (booking, kind, amount, currency, time)",
        "y.booking_id, y.kind, y.amount_minor, y.currency, y.occurred_at",
    ),
    _Check(
        "warning",
        "refunds_exceed_payments",
        "payments",
        "amount_minor",
        "bookings whose refunds exceed their payments (all time, booking currency)",
        "SELECT count(*) AS n, (array_agg(t.booking_id ORDER BY t.booking_id))[1:{k}] AS ex"
        " FROM (SELECT a.booking_id FROM payments a JOIN bookings o"
        " ON o.organization_id = a.organization_id AND o.id = a.booking_id"
        " AND o.currency = a.currency CROSS JOIN p WHERE a.organization_id = p.org"
        " AND a.booking_id IN (SELECT y.booking_id " + _P + ")"
        " GROUP BY a.booking_id HAVING sum(a.amount_minor) FILTER (WHERE a.kind = 'refund')"
        " > coalesce(sum(a.amount_minor) FILTER (WHERE a.kind = 'payment'), 0)) t",
    ),
    _Check(
        "warning",
        "overpaid",
        "payments",
        "amount_minor",
        "bookings paid (net of refunds) more than their booked value (all time)",
        "SELECT count(*) AS n, (array_agg(t.booking_id ORDER BY t.booking_id))[1:{k}] AS ex"
        " FROM (SELECT a.booking_id FROM payments a JOIN bookings o"
        " ON o.organization_id = a.organization_id AND o.id = a.booking_id"
        " AND o.currency = a.currency CROSS JOIN p WHERE a.organization_id = p.org"
        " AND a.booking_id IN (SELECT y.booking_id " + _P + ")"
        " GROUP BY a.booking_id, o.amount_minor"
        " HAVING coalesce(sum(a.amount_minor) FILTER (WHERE a.kind = 'payment'), 0)"
        " - coalesce(sum(a.amount_minor) FILTER (WHERE a.kind = 'refund'), 0)"
        " > o.amount_minor) t",
    ),
    # feedback
    _simple(
        "error",
        "date_out_of_range",
        "feedback",
        "submitted_at",
        "feedback after now",
        "f.submitted_at > p.now",
    ),
    _simple(
        "error",
        "orphan",
        "feedback",
        "booking_id",
        "feedback about a booking that does not exist",
        "f.booking_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM bookings o"
        " WHERE o.organization_id = p.org AND o.id = f.booking_id)",
    ),
    _simple(
        "error",
        "null",
        "feedback",
        "rating",
        "feedback with neither a rating nor an NPS",
        "f.rating IS NULL AND f.nps IS NULL",
    ),
    _simple(
        "error",
        "out_of_range",
        "feedback",
        "rating",
        "feedback with a rating outside 1..5 or an NPS outside 0..10",
        "(f.rating NOT BETWEEN 1 AND 5 OR f.nps NOT BETWEEN 0 AND 10)",
    ),
    _simple(
        "warning",
        "null",
        "feedback",
        "booking_id",
        "feedback not tied to a booking",
        "f.booking_id IS NULL",
    ),
    _beyond_first(
        "warning",
        "duplicate",
        "feedback",
        "id",
        "further feedback of the same client on the same booking",
        "f.client_id, f.booking_id",
        "f.client_id IS NOT NULL AND f.booking_id IS NOT NULL",
    ),
)
"""Every check, in the order findings are reported."""


async def validate_report_input(
    db: asyncpg.Pool | asyncpg.Connection,
    organization: Organization,
    date_from: date,
    date_to: date,
    *,
    tables: Sequence[TableName] = TABLES,
    thresholds: ValidationThresholds | None = None,
    now: datetime | None = None,
    skip: Collection[str] = (),
) -> ValidationResult:
    """Run the checks (module docstring) over ``organization``'s rows of ``tables``.

    Args:
        db: a pool or a connection (not inside a transaction).
        organization: the tenant (its zone decides the local dates; its currency the
            mixed-currency check).
        date_from / date_to: inclusive local dates (bookings by service date, payments and
            feedback by the local date of their timestamp).
        tables: which tables to check (``bookings``, ``payments``, ``feedback``).
        thresholds: limits (default :class:`ValidationThresholds`).
        now: the instant "in the future" is measured from (UTC; default the current time).
        skip: checks left out, as ``"<table>.<field>:<check>"`` (``"bookings.client_id:null"``):
            those a report states itself or that do not apply to it.

    Returns:
        The errors and warnings; passed checks are not listed.

    Raises:
        ValueError: ``date_to`` before ``date_from``, an unknown table name or check to skip,
            or ``now`` naive.
    """
    if date_to < date_from:
        raise ValueError(f"date_to: {date_to} is before date_from {date_from}")
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise ValueError(f"tables: unknown {unknown} (known: {list(TABLES)})")
    limits = thresholds or ValidationThresholds()
    if not 1 <= limits.examples <= 50:
        raise ValueError("thresholds.examples: must be 1..50")
    current = now or datetime.now(UTC)
    if current.tzinfo is None:
        raise ValueError("now: must carry a time zone")
    zone = ZoneInfo(organization.time_zone)
    codes = sorted(ISO_4217_CODES)
    params = (
        organization.id,
        date_from,
        date_to,
        datetime.combine(date_from, time(0), tzinfo=zone),
        datetime.combine(date_to + timedelta(days=1), time(0), tzinfo=zone),
        current,
        organization.time_zone,
        organization.currency,
        codes,
        [limits.max_amount_major * 10 ** minor_unit_exponent(c) for c in codes],
        limits.max_nights,
        limits.max_lead_days,
        limits.earliest,
    )
    not_checks = sorted(set(skip) - {c.key for c in _CHECKS})
    if not_checks:
        raise ValueError(f"skip: no such check {not_checks}")
    checks = [c for c in _CHECKS if c.table in tables and c.key not in skip]
    if isinstance(db, asyncpg.Connection):
        findings = await _run(db, organization.id, checks, params, limits)
    else:  # a pool (asyncpg's, or one that wraps it)
        async with db.acquire() as conn:
            findings = await _run(conn, organization.id, checks, params, limits)
    return ValidationResult(
        organization_id=organization.id,
        date_from=date_from,
        date_to=date_to,
        errors=tuple(f for f in findings if f.severity == "error"),
        warnings=tuple(f for f in findings if f.severity == "warning"),
        checks_run=len(checks),
    )


async def validate_for_report(
    ctx: ReportContext,
    tables: Sequence[TableName] = TABLES,
    thresholds: ValidationThresholds | None = None,
    skip: Collection[str] = (),
) -> ValidationResult:
    """:func:`validate_report_input` for a report being built: its pool, tenant and dates.

    Use in a report type's builder::

        checked = await validate_for_report(ctx, tables=("bookings", "payments"))
        return ReportTable(..., validation=checked.lines())

    Raises:
        ValueError: as :func:`validate_report_input`.
    """
    return await validate_report_input(
        ctx.pool,
        ctx.organization,
        ctx.request.date_from,
        ctx.request.date_to,
        tables=tables,
        thresholds=thresholds,
        skip=skip,
    )


async def _run(
    conn: asyncpg.Connection,
    organization_id: str,
    checks: Sequence[_Check],
    params: tuple[object, ...],
    limits: ValidationThresholds,
) -> list[Finding]:
    findings: list[Finding] = []
    async with tenant_transaction(conn, organization_id):
        for check in checks:
            row = await conn.fetchrow(
                _PARAMS + check.sql.replace("{k}", str(int(limits.examples))), *params
            )
            assert row is not None
            if row["n"]:
                findings.append(
                    Finding(
                        severity=check.severity,
                        check=check.check,
                        table=check.table,
                        field=check.field,
                        count=int(row["n"]),
                        example_ids=tuple(row["ex"] or ()),
                        message=check.text(limits),
                    )
                )
    return findings
