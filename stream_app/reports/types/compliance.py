"""Report type ``compliance``: GDPR request deadlines, a payment audit and operational metrics.

Reads PostgreSQL only (``gdpr_requests``, ``bookings``, ``payments``), inside
:func:`~stream_app.db.tenancy.tenant_transaction` with the organisation named in every
predicate. The period is the request's inclusive local date range ``[date_from, date_to]``
in the organisation's IANA zone: from ``date_from`` 00:00 local to ``date_to + 1`` 00:00
local, as UTC instants. Cache class ``financial``; it reads no live table, but a cached copy
is treated as stale after ``bookings`` or ``payments`` events.

Definitions
-----------

**GDPR requests** (main table, one row per kind ``access``, ``erasure``, ``rectification``,
``portability``; section ``gdpr_requests`` lists each request):

- in scope: requests *received* in the period;
- answered: ``completed_at`` is set (the request was fulfilled, or refused with reasons:
  Art. 12(4) GDPR gives refusals the same deadline);
- deadline (Art. 12(3) GDPR, "within one month of receipt of the request"), counted as
  Regulation (EEC, Euratom) No 1182/71 Art. 3 counts a period in months and as the EDPB's
  Guidelines 01/2022 on the right of access apply it: the local date of receipt in the
  organisation's zone, plus one calendar month, same day number (15 January → 15 February);
  when the next month has no such day, its last day (31 January → 28 or 29 February). The
  deadline ends at the end of that local day (the next local midnight, as a UTC instant).
  Not modelled, so the report is stricter than the law: the move of a deadline falling on a
  Saturday, Sunday or public holiday to the next working day (1182/71 Art. 3(4)), and the
  extension by two further months for complex requests (Art. 12(3), second sentence);
- outcome: ``met`` (answered before the deadline's end), ``missed`` (answered at or after
  it), ``open_overdue`` (not answered, the deadline's end at or before ``now``),
  ``open_within_deadline`` (not answered, the deadline still ahead); ``now`` is the time the
  report is generated (UTC), printed in the notes;
- ``days_past_deadline``: local calendar days from the deadline date to the answer's local
  date (missed) or to ``now``'s local date (open and overdue);
- ``on_time_rate``: met ÷ (met + missed + open_overdue) × 100, half-even to 2 decimals,
  i.e. of the requests whose answer is in or whose deadline has passed, the share answered
  in time (empty when there are none);
- requests received before the period and still open are counted in a key figure.

**Payment audit** (sections ``payment_reconciliation``, ``payment_totals``,
``payment_exceptions``):

- in scope: bookings whose service date falls in the period, with all their payments and
  refunds whatever their date; orphan payments dated (``occurred_at``) in the period;
- per booking, in the booking's currency and only from payments in that currency:
  ``booked`` = the booking's amount; ``paid`` = sum of its ``payment`` rows; ``refunded`` =
  sum of its ``refund`` rows; for bookings not cancelled (``booked``, ``completed``,
  ``no_show``) ``balance = booked − paid + refunded``, ``outstanding = max(balance, 0)`` and
  ``overpaid = max(−balance, 0)``; a cancelled booking owes nothing (empty outstanding and
  overpaid) and its ``paid − refunded`` is reported as ``cancelled_net_received``;
- currency mismatch: a payment or refund in another currency than its booking's; it is
  not netted against the booking (no exchange rates are assumed) but listed under the
  exceptions and counted, under its own currency, in ``mismatched_payments``;
- orphan payment: a payment or refund whose ``booking_id`` names no booking of the
  organisation;
- totals are per currency, never across currencies: ``booked``, ``paid``, ``refunded``,
  ``outstanding`` and ``overpaid`` sum the non-cancelled bookings in that currency (so
  ``booked − paid + refunded = outstanding − overpaid``);
- exceptions: every orphan payment, currency mismatch, overpaid booking and booking whose
  refunds exceed its payments.

**Operational metrics** (section ``operational_metrics``), per local calendar month of the
*booking date* (``booked_at``), for the bookings made in the period:

- ``bookings``: bookings made in the month, any status;
- ``cancellations``: of those, the ones now cancelled; ``cancellation_rate`` =
  cancellations ÷ bookings × 100, half-even to 2 decimals;
- ``paid_bookings``: of those, the ones with at least one ``payment`` (any currency);
- ``avg_days_to_first_payment``: mean over ``paid_bookings`` of (first payment's
  ``occurred_at`` − ``booked_at``) in days of 86,400 s, half-even to 2 decimals (negative
  when a deposit was recorded before the booking);
- ``unpaid_open_bookings``: bookings not cancelled without any payment.

Validation findings carried by the report, one line each starting with its severity as the
other report types' do (:mod:`stream_app.reports.validation`): ``error:`` orphan payments,
currency mismatches and GDPR requests received after ``now`` (the figures would be wrong);
``warning:`` bookings whose refunds exceed their payments.

Memory: given a report session (:attr:`ReportContext.session`, the report generator's path), the
per-booking reconciliation is read through a server-side cursor while each format is
rendered (:mod:`stream_app.reports.streaming`), its totals are computed in SQL
(:data:`BALANCE_TOTALS_SQL`, the same sums as :func:`_add_to_totals`), and only the bookings
with an exception are held in memory; without one, every balance is read into a list.
"""

from __future__ import annotations

import asyncio
import calendar
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal
from zoneinfo import ZoneInfo

import asyncpg

from stream_app.db.tenancy import Organization, tenant_transaction
from stream_app.reports.model import (
    Cell,
    ChartSpec,
    Column,
    Kpi,
    ReportSection,
    ReportTable,
    display_text,
)
from stream_app.reports.streaming import ReportSession
from stream_app.reports.types.base import (
    ReportContext,
    ReportInputError,
    ReportType,
    new_table,
    reject_filters,
)
from stream_app.reports.types.columns import CANCELLATIONS
from stream_app.reports.types.figures import money, months_between, percent
from stream_app.reports.types.history import with_validation

REPORT_TYPE = "compliance"

GDPR_KINDS = ("access", "erasure", "rectification", "portability")
"""The request kinds, in the order of the main table (Art. 15, 17, 16, 20 GDPR)."""

Outcome = Literal["met", "missed", "open_overdue", "open_within_deadline"]
OUTCOMES: tuple[Outcome, ...] = ("met", "missed", "open_overdue", "open_within_deadline")

NOT_CANCELLED = ("booked", "completed", "no_show")
"""Booking statuses that still owe their amount."""

MAX_IDS_IN_FINDING = 10
"""Ids named in one validation finding; the rest are counted ("and N more")."""

_CENT = Decimal("0.01")
_DAY_S = Decimal(86_400)

GDPR_COLUMNS = (
    Column("kind", "text", "request kind: access, erasure, rectification, portability"),
    Column("received", "int", "requests received in the period"),
    Column("met", "int", "answered before the end of the deadline day"),
    Column("missed", "int", "answered after the deadline day"),
    Column("open_overdue", "int", "not answered, deadline passed at report time"),
    Column("open_within_deadline", "int", "not answered, deadline still ahead"),
    Column("on_time_rate", "percent", "met ÷ (met + missed + open_overdue) × 100"),
)
GDPR_CHART = ChartSpec(
    title="GDPR requests by kind and outcome",
    category_column="kind",
    value_columns=("met", "missed", "open_overdue", "open_within_deadline"),
)

REQUEST_COLUMNS = (
    Column("request_id", "text", "request id"),
    Column("kind", "text", "request kind"),
    Column("client_id", "text", "the data subject's client id"),
    Column("received_on", "date", "local date of receipt"),
    Column("deadline", "date", "last local day to answer (receipt + 1 month)"),
    Column("completed_on", "date", "local date of the answer (empty: open)"),
    Column("status", "text", "status as recorded"),
    Column("outcome", "text", "met, missed, open_overdue or open_within_deadline"),
    Column("days_past_deadline", "int", "days from the deadline to the answer or to now"),
)

RECONCILIATION_COLUMNS = (
    Column("booking_id", "text", "booking id"),
    Column("status", "text", "booking status"),
    Column("service_date", "date", "local service date"),
    Column("currency", "text", "the booking's ISO 4217 currency"),
    Column("booked", "money", "the booking's amount, major units"),
    Column("paid", "money", "payments in the booking's currency"),
    Column("refunded", "money", "refunds in the booking's currency"),
    Column("outstanding", "money", "max(booked − paid + refunded, 0); empty when cancelled"),
    Column("overpaid", "money", "max(paid − refunded − booked, 0); empty when cancelled"),
    Column("mismatched_payments", "int", "payments or refunds in another currency"),
    Column("finding", "text", "what the audit found, if anything"),
)

TOTALS_COLUMNS = (
    Column("currency", "text", "ISO 4217 currency"),
    Column("bookings", "int", "bookings not cancelled in this currency"),
    Column("booked", "money", "their booked amount"),
    Column("paid", "money", "their payments in this currency"),
    Column("refunded", "money", "their refunds in this currency"),
    Column("outstanding", "money", "sum of outstanding balances"),
    Column("overpaid", "money", "sum of overpaid amounts"),
    Column("overpaid_bookings", "int", "bookings overpaid"),
    Column("cancelled_bookings", "int", "cancelled bookings in this currency"),
    Column("cancelled_net_received", "money", "payments − refunds on cancelled bookings"),
    Column("orphan_payments", "int", "payments and refunds naming no booking"),
    Column(
        "mismatched_payments",
        "int",
        "payments and refunds in this currency on a booking in another",
    ),
)

EXCEPTION_COLUMNS = (
    Column("exception", "text", "orphan payment, currency mismatch, overpaid, refunds exceed"),
    Column("payment_id", "text", "the payment or refund, when one is at fault"),
    Column("booking_id", "text", "the booking named"),
    Column("occurred_on", "date", "local date of the payment"),
    Column("currency", "text", "ISO 4217 currency of the amount"),
    Column("amount", "money", "the payment's amount, or the amount overpaid / over-refunded"),
    Column("detail", "text", "explanation"),
)

OPERATIONS_COLUMNS = (
    Column("month", "month", "local month of the booking date"),
    Column("bookings", "int", "bookings made in the month"),
    CANCELLATIONS,
    Column("cancellation_rate", "percent", "cancellations ÷ bookings × 100"),
    Column("paid_bookings", "int", "bookings with at least one payment"),
    Column("avg_days_to_first_payment", "decimal", "mean days from booking to first payment"),
    Column("unpaid_open_bookings", "int", "bookings not cancelled without any payment"),
)
OPERATIONS_CHART = ChartSpec(
    title="Bookings and cancellations by booking month",
    category_column="month",
    value_columns=("bookings", "cancellations"),
)


# -- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GdprRequest:
    """A row of ``gdpr_requests`` (times are aware, UTC)."""

    id: str
    kind: str
    client_id: str | None
    received_at: datetime
    completed_at: datetime | None
    status: str


@dataclass(frozen=True, slots=True)
class BookingBalance:
    """A booking in scope with its same-currency payments and refunds (minor units)."""

    id: str
    status: str
    service_date: date
    currency: str
    booked_minor: int
    paid_minor: int
    refunded_minor: int
    mismatched: int


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """A payment or refund singled out (orphan or currency mismatch)."""

    id: str
    booking_id: str
    kind: str
    currency: str
    amount_minor: int
    occurred_at: datetime
    booking_currency: str | None


@dataclass(frozen=True, slots=True)
class MonthOps:
    """Operational counts of the bookings made in one local month."""

    month: str
    bookings: int
    cancellations: int
    paid_bookings: int
    seconds_to_first_payment: Decimal
    unpaid_open: int


@dataclass(frozen=True, slots=True)
class ComplianceData:
    """Everything the report reads from PostgreSQL."""

    requests: list[GdprRequest]
    open_before: int
    balances: list[BookingBalance]
    orphans: list[PaymentRow]
    mismatches: list[PaymentRow]
    months: list[MonthOps] = field(default_factory=list)
    reconciliation: Iterable[Sequence[Cell]] | None = None
    """Streamed: the reconciliation rows (read through a cursor while rendering); then
    ``balances`` holds only the bookings with an exception and ``balance_totals`` the totals."""
    balance_totals: dict[str, Counter[str]] | None = None
    """Streamed: the per-currency totals of every booking in scope, computed in SQL."""


def period_bounds(zone: ZoneInfo, date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """``[date_from 00:00 local, date_to + 1 day 00:00 local)`` as UTC instants."""
    start = datetime.combine(date_from, time(0), zone).astimezone(UTC)
    end = datetime.combine(date_to + timedelta(days=1), time(0), zone).astimezone(UTC)
    return start, end


_BALANCES_SELECT = (
    "SELECT b.id, b.status, b.service_date, b.currency, b.amount_minor,"
    " coalesce(sum(p.amount_minor) FILTER"
    "   (WHERE p.kind = 'payment' AND p.currency = b.currency), 0) AS paid,"
    " coalesce(sum(p.amount_minor) FILTER"
    "   (WHERE p.kind = 'refund' AND p.currency = b.currency), 0) AS refunded,"
    " count(p.id) FILTER (WHERE p.currency <> b.currency) AS mismatched"
    " FROM bookings b LEFT JOIN payments p"
    "   ON p.organization_id = b.organization_id AND p.booking_id = b.id"
    " WHERE b.organization_id = $1 AND b.service_date BETWEEN $2 AND $3"
    " GROUP BY b.organization_id, b.id"
)
BALANCES_SQL = _BALANCES_SELECT + " ORDER BY b.id"
"""Every booking in scope with its same-currency payments and refunds, by id."""

PROBLEM_BALANCES_SQL = (
    f"SELECT x.* FROM ({_BALANCES_SELECT}) x"
    " WHERE x.refunded > x.paid"
    "   OR (x.status <> 'cancelled' AND x.amount_minor - x.paid + x.refunded < 0)"
    " ORDER BY x.id"
)
"""The bookings of :data:`BALANCES_SQL` with an exception (refunds exceed payments, or
overpaid and not cancelled), by id."""

_LIVE = "x.status <> 'cancelled'"
BALANCE_TOTALS_SQL = (
    "SELECT x.currency,"
    f" count(*) FILTER (WHERE {_LIVE}) AS bookings,"
    f" coalesce(sum(x.amount_minor) FILTER (WHERE {_LIVE}), 0) AS booked,"
    f" coalesce(sum(x.paid) FILTER (WHERE {_LIVE}), 0) AS paid,"
    f" coalesce(sum(x.refunded) FILTER (WHERE {_LIVE}), 0) AS refunded,"
    " coalesce(sum(greatest(x.amount_minor - x.paid + x.refunded, 0))"
    f"   FILTER (WHERE {_LIVE}), 0) AS outstanding,"
    " coalesce(sum(greatest(x.paid - x.refunded - x.amount_minor, 0))"
    f"   FILTER (WHERE {_LIVE}), 0) AS overpaid,"
    " count(*) FILTER"
    f"   (WHERE {_LIVE} AND x.amount_minor - x.paid + x.refunded < 0) AS overpaid_bookings,"
    " count(*) FILTER (WHERE x.status = 'cancelled') AS cancelled_bookings,"
    " coalesce(sum(x.paid - x.refunded) FILTER (WHERE x.status = 'cancelled'), 0)"
    "   AS cancelled_net_received"
    f" FROM ({_BALANCES_SELECT}) x GROUP BY x.currency"
)
"""Per currency, the totals :func:`build_report` sums over the balances (same definitions)."""

_TOTAL_KEYS = (
    "bookings",
    "booked",
    "paid",
    "refunded",
    "outstanding",
    "overpaid",
    "overpaid_bookings",
    "cancelled_bookings",
    "cancelled_net_received",
)


BALANCE_BATCH = 5_000
"""Balances read per round trip when every balance is held in memory (:func:`load`)."""


def _balance(r: asyncpg.Record) -> BookingBalance:
    return BookingBalance(
        r["id"],
        r["status"],
        r["service_date"],
        r["currency"].strip(),
        int(r["amount_minor"]),
        int(r["paid"]),
        int(r["refunded"]),
        int(r["mismatched"]),
    )


async def load(
    pool: asyncpg.Pool, org: Organization, date_from: date, date_to: date
) -> ComplianceData:
    """Read the report's inputs in one tenant transaction (the organisation in every
    predicate; row-level security as the second wall); every booking's balance in memory."""
    async with pool.acquire() as conn, tenant_transaction(conn, org.id):
        return await _read(conn, org, date_from, date_to, None)


async def load_streamed(
    session: ReportSession, org: Organization, date_from: date, date_to: date
) -> ComplianceData:
    """The report's inputs read in ``session`` (its tenant transaction and snapshot), the
    per-booking reconciliation streamed: its rows are read through a cursor while each
    format is rendered; the totals come from SQL, and only the bookings with an exception
    are held in memory."""
    return await _read(session.conn, org, date_from, date_to, session)


async def _read(
    conn: asyncpg.Connection,
    org: Organization,
    date_from: date,
    date_to: date,
    session: ReportSession | None,
) -> ComplianceData:
    start, end = period_bounds(org.zone, date_from, date_to)
    requests = await conn.fetch(
        "SELECT id, kind, client_id, received_at, completed_at, status FROM gdpr_requests"
        " WHERE organization_id = $1 AND received_at >= $2 AND received_at < $3"
        " ORDER BY received_at, id",
        org.id,
        start,
        end,
    )
    open_before = await conn.fetchval(
        "SELECT count(*) FROM gdpr_requests WHERE organization_id = $1"
        " AND received_at < $2 AND completed_at IS NULL",
        org.id,
        start,
    )
    reconciliation: Iterable[Sequence[Cell]] | None = None
    balance_totals: dict[str, Counter[str]] | None = None
    if session is None:
        # through a cursor, BALANCE_BATCH rows a round trip: one fetch of 300,000 balances
        # was decoded in one go on the event loop and held it 0.8-1.3 s (an attacker round)
        balances = [
            r
            async for r in conn.cursor(
                BALANCES_SQL, org.id, date_from, date_to, prefetch=BALANCE_BATCH
            )
        ]
    else:
        balances = await conn.fetch(PROBLEM_BALANCES_SQL, org.id, date_from, date_to)
        balance_totals = {
            r["currency"].strip(): Counter({k: int(r[k]) for k in _TOTAL_KEYS})
            for r in await conn.fetch(BALANCE_TOTALS_SQL, org.id, date_from, date_to)
        }
        reconciliation = session.rows(
            BALANCES_SQL,
            (org.id, date_from, date_to),
            lambda r: reconciliation_row(_balance(r))[0],
        )
    orphans = await conn.fetch(
        "SELECT p.id, p.booking_id, p.kind, p.currency, p.amount_minor, p.occurred_at"
        " FROM payments p WHERE p.organization_id = $1"
        " AND p.occurred_at >= $2 AND p.occurred_at < $3"
        " AND NOT EXISTS (SELECT 1 FROM bookings b"
        "   WHERE b.organization_id = $1 AND b.id = p.booking_id)"
        " ORDER BY p.id",
        org.id,
        start,
        end,
    )
    mismatches = await conn.fetch(
        "SELECT p.id, p.booking_id, p.kind, p.currency, p.amount_minor, p.occurred_at,"
        " b.currency AS booking_currency"
        " FROM payments p JOIN bookings b"
        "   ON b.organization_id = p.organization_id AND b.id = p.booking_id"
        " WHERE p.organization_id = $1 AND b.organization_id = $1"
        " AND b.service_date BETWEEN $2 AND $3 AND p.currency <> b.currency"
        " ORDER BY p.id",
        org.id,
        date_from,
        date_to,
    )
    months = await conn.fetch(
        "SELECT to_char(b.booked_at AT TIME ZONE $4, 'YYYY-MM') AS month,"
        " count(*) AS bookings,"
        " count(*) FILTER (WHERE b.status = 'cancelled') AS cancellations,"
        " count(f.first_at) AS paid_bookings,"
        " coalesce(sum(extract(epoch FROM f.first_at - b.booked_at)), 0) AS seconds,"
        " count(*) FILTER (WHERE b.status <> 'cancelled' AND f.first_at IS NULL)"
        "   AS unpaid_open"
        " FROM bookings b LEFT JOIN LATERAL ("
        "   SELECT min(p.occurred_at) AS first_at FROM payments p"
        "   WHERE p.organization_id = $1 AND p.booking_id = b.id AND p.kind = 'payment'"
        " ) f ON true"
        " WHERE b.organization_id = $1 AND b.booked_at >= $2 AND b.booked_at < $3"
        " GROUP BY 1 ORDER BY 1",
        org.id,
        start,
        end,
        org.time_zone,
    )

    def payment(r: asyncpg.Record, booking_currency: str | None) -> PaymentRow:
        return PaymentRow(
            r["id"],
            r["booking_id"],
            r["kind"],
            r["currency"].strip(),
            int(r["amount_minor"]),
            r["occurred_at"],
            booking_currency,
        )

    return ComplianceData(
        requests=[
            GdprRequest(
                r["id"], r["kind"], r["client_id"], r["received_at"], r["completed_at"], r["status"]
            )
            for r in requests
        ],
        open_before=int(open_before),
        balances=[_balance(r) for r in balances],
        orphans=[payment(r, None) for r in orphans],
        reconciliation=reconciliation,
        balance_totals=balance_totals,
        mismatches=[payment(r, r["booking_currency"].strip()) for r in mismatches],
        months=[
            MonthOps(
                r["month"],
                int(r["bookings"]),
                int(r["cancellations"]),
                int(r["paid_bookings"]),
                Decimal(r["seconds"]),
                int(r["unpaid_open"]),
            )
            for r in months
        ],
    )


# -- definitions ----------------------------------------------------------------------------


def deadline_date(received_on: date) -> date:
    """The last local day to answer a request received on ``received_on``: the same day
    number one calendar month later, or that month's last day when it has no such day
    (Regulation 1182/71 Art. 3(2)(c); see the module docstring)."""
    year, month = (
        (received_on.year + 1, 1)
        if received_on.month == 12
        else (received_on.year, received_on.month + 1)
    )
    return date(year, month, min(received_on.day, calendar.monthrange(year, month)[1]))


def outcome(req: GdprRequest, zone: ZoneInfo, now: datetime) -> tuple[date, Outcome, int | None]:
    """``(deadline date, outcome, days past the deadline)`` of ``req`` at ``now`` (UTC)."""
    deadline = deadline_date(req.received_at.astimezone(zone).date())
    ends = datetime.combine(deadline + timedelta(days=1), time(0), zone)
    if req.completed_at is not None:
        if req.completed_at < ends:
            return deadline, "met", None
        return deadline, "missed", (req.completed_at.astimezone(zone).date() - deadline).days
    if now >= ends:
        return deadline, "open_overdue", (now.astimezone(zone).date() - deadline).days
    return deadline, "open_within_deadline", None


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:MAX_IDS_IN_FINDING])
    more = len(ids) - MAX_IDS_IN_FINDING
    return shown + (f" and {more} more" if more > 0 else "")


def reconciliation_row(b: BookingBalance) -> tuple[list[Cell], list[list[Cell]]]:
    """One booking's reconciliation row and its exception rows (refunds exceed payments,
    overpaid; definitions in the module docstring)."""
    findings = []
    exceptions: list[list[Cell]] = []
    if b.mismatched:
        findings.append(f"{b.mismatched} payment(s) in another currency, not netted")
    if b.refunded_minor > b.paid_minor:
        findings.append("refunds exceed payments")
        exceptions.append(
            [
                "refunds exceed payments",
                None,
                b.id,
                None,
                b.currency,
                money(b.refunded_minor - b.paid_minor, b.currency),
                f"refunded {money(b.refunded_minor, b.currency)}, "
                f"paid {money(b.paid_minor, b.currency)} {b.currency}",
            ]
        )
    outstanding: str | None = None
    overpaid: str | None = None
    if b.status != "cancelled":
        balance = b.booked_minor - b.paid_minor + b.refunded_minor
        outstanding = money(max(balance, 0), b.currency)
        overpaid = money(max(-balance, 0), b.currency)
        if balance < 0:
            findings.append("overpaid")
            exceptions.append(
                [
                    "overpaid",
                    None,
                    b.id,
                    None,
                    b.currency,
                    money(-balance, b.currency),
                    f"booked {money(b.booked_minor, b.currency)}, paid "
                    f"{money(b.paid_minor, b.currency)}, refunded "
                    f"{money(b.refunded_minor, b.currency)} {b.currency}",
                ]
            )
    row: list[Cell] = [
        b.id,
        b.status,
        b.service_date.isoformat(),
        b.currency,
        money(b.booked_minor, b.currency),
        money(b.paid_minor, b.currency),
        money(b.refunded_minor, b.currency),
        outstanding,
        overpaid,
        b.mismatched,
        "; ".join(findings) or None,
    ]
    return row, exceptions


def _add_to_totals(t: Counter[str], b: BookingBalance) -> None:
    """Add one booking to its currency's totals (the sums :data:`BALANCE_TOTALS_SQL` makes)."""
    if b.status == "cancelled":
        t["cancelled_bookings"] += 1
        t["cancelled_net_received"] += b.paid_minor - b.refunded_minor
        return
    balance = b.booked_minor - b.paid_minor + b.refunded_minor
    t["bookings"] += 1
    t["booked"] += b.booked_minor
    t["paid"] += b.paid_minor
    t["refunded"] += b.refunded_minor
    t["outstanding"] += max(balance, 0)
    t["overpaid"] += max(-balance, 0)
    if balance < 0:
        t["overpaid_bookings"] += 1


# -- the report -----------------------------------------------------------------------------


def build_report(
    data: ComplianceData, org: Organization, date_from: date, date_to: date, now: datetime
) -> ReportTable:
    """The compliance report of ``org`` for ``[date_from, date_to]`` as of ``now`` (UTC)."""
    zone = org.zone

    # GDPR
    per_kind: dict[str, Counter[str]] = {k: Counter() for k in GDPR_KINDS}
    request_rows: list[list[Cell]] = []
    future: list[str] = []
    for req in data.requests:
        deadline, result, late = outcome(req, zone, now)
        per_kind.setdefault(req.kind, Counter())[result] += 1
        if req.received_at > now:
            future.append(req.id)
        request_rows.append(
            [
                req.id,
                req.kind,
                req.client_id,
                req.received_at.astimezone(zone).date().isoformat(),
                deadline.isoformat(),
                None
                if req.completed_at is None
                else req.completed_at.astimezone(zone).date().isoformat(),
                req.status,
                result,
                late,
            ]
        )
    gdpr_rows: list[list[Cell]] = []
    for kind, counts in per_kind.items():
        due = counts["met"] + counts["missed"] + counts["open_overdue"]
        gdpr_rows.append(
            [
                kind,
                sum(counts.values()),
                *(counts[o] for o in OUTCOMES),
                percent(counts["met"], due),
            ]
        )

    # payment audit
    streamed_totals = data.balance_totals
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    if streamed_totals is not None:
        totals.update({c: Counter(t) for c, t in streamed_totals.items()})
    recon_rows: list[list[Cell]] = []
    exceptions: list[list[Cell]] = []
    over_refunded: list[str] = []
    for b in data.balances:
        row, found = reconciliation_row(b)
        exceptions.extend(found)
        if b.refunded_minor > b.paid_minor:
            over_refunded.append(b.id)
        if streamed_totals is None:
            _add_to_totals(totals[b.currency], b)
            recon_rows.append(row)
    singled_out = (
        ("orphan payment", "orphan_payments", data.orphans),
        ("currency mismatch", "mismatched_payments", data.mismatches),
    )
    for label, counter, payments in singled_out:
        for p in payments:
            totals[p.currency][counter] += 1
            why = (
                f"{p.kind} naming booking {p.booking_id!r}, which does not exist"
                if counter == "orphan_payments"
                else f"{p.kind} in {p.currency} on a booking in {p.booking_currency}; not netted"
            )
            exceptions.append(
                [
                    label,
                    p.id,
                    p.booking_id,
                    p.occurred_at.astimezone(zone).date().isoformat(),
                    p.currency,
                    money(p.amount_minor, p.currency),
                    why,
                ]
            )
    order = {"orphan payment": 0, "currency mismatch": 1, "overpaid": 2}
    exceptions.sort(key=lambda r: (order.get(str(r[0]), 3), str(r[2]), str(r[1] or "")))
    totals_rows: list[list[Cell]] = []
    for currency in sorted(totals):
        t = totals[currency]
        totals_rows.append(
            [
                currency,
                t["bookings"],
                money(t["booked"], currency),
                money(t["paid"], currency),
                money(t["refunded"], currency),
                money(t["outstanding"], currency),
                money(t["overpaid"], currency),
                t["overpaid_bookings"],
                t["cancelled_bookings"],
                money(t["cancelled_net_received"], currency),
                t["orphan_payments"],
                t["mismatched_payments"],
            ]
        )

    # operational metrics
    by_month = {m.month: m for m in data.months}
    ops_rows: list[list[Cell]] = []
    made = cancelled = 0
    for month in months_between(date_from, date_to):
        m = by_month.get(month) or MonthOps(month, 0, 0, 0, Decimal(0), 0)
        made += m.bookings
        cancelled += m.cancellations
        avg = (
            None
            if m.paid_bookings == 0
            else str(
                (m.seconds_to_first_payment / m.paid_bookings / _DAY_S).quantize(
                    _CENT, ROUND_HALF_EVEN
                )
            )
        )
        ops_rows.append(
            [
                month,
                m.bookings,
                m.cancellations,
                percent(m.cancellations, m.bookings),
                m.paid_bookings,
                avg,
                m.unpaid_open,
            ]
        )

    # key figures and findings
    received = len(data.requests)
    met = sum(c["met"] for c in per_kind.values())
    due = met + sum(c["missed"] + c["open_overdue"] for c in per_kind.values())
    kpis = [
        Kpi("GDPR requests received", display_text(received, "int")),
        Kpi("GDPR answered on time", display_text(percent(met, due), "percent") or "–"),
        Kpi(
            "GDPR requests open past deadline",
            display_text(sum(c["open_overdue"] for c in per_kind.values()), "int"),
        ),
        Kpi("GDPR requests open from before the period", display_text(data.open_before, "int")),
    ]
    kpis.extend(
        Kpi(f"Outstanding ({c})", f"{display_text(money(totals[c]['outstanding'], c), 'money')}")
        for c in sorted(totals)
        if totals[c]["bookings"]
    )
    kpis.append(Kpi("Orphan payments", display_text(len(data.orphans), "int")))
    kpis.append(Kpi("Currency mismatches", display_text(len(data.mismatches), "int")))
    kpis.append(
        Kpi(
            "Cancellation rate (bookings made)",
            display_text(percent(cancelled, made), "percent") or "–",
        )
    )

    validation: list[str] = []
    if data.orphans:
        validation.append(
            f"error: {len(data.orphans)} payment(s) or refund(s) dated in the period name a "
            f"booking that does not exist: {_ids([p.id for p in data.orphans])}"
        )
    if data.mismatches:
        validation.append(
            f"error: {len(data.mismatches)} payment(s) or refund(s) are in another currency than "
            f"their booking (not netted): {_ids([p.id for p in data.mismatches])}"
        )
    if over_refunded:
        validation.append(
            f"warning: {len(over_refunded)} booking(s) have more refunded than paid: "
            f"{_ids(over_refunded)}"
        )
    if made == 0 and not any(t["bookings"] for t in totals.values()):
        # as every history report says it (a trial user read a compliance report of zeros)
        validation.append(
            "warning: no bookings in the organisation's PostgreSQL history for this range:"
            " the booking and payment figures are 0 (the history is loaded by your ETL,"
            " `wedding-engine replay` or `synth`; the live tables are not copied into it: see"
            " the README, Loading your own history)"
        )
    if future:
        validation.append(
            f"error: {len(future)} GDPR request(s) are received after the report time: "
            f"{_ids(future)}"
        )

    return new_table(
        REPORT_TYPE,
        org,
        date_from,
        date_to,
        columns=GDPR_COLUMNS,
        rows=gdpr_rows,
        notes=(
            f"Status as of {now.astimezone(UTC).isoformat(timespec='seconds')} (UTC).",
            "GDPR deadline: local date of receipt + 1 calendar month (same day number, else "
            "the month's last day), ending at local midnight; weekends, holidays and the "
            "Art. 12(3) extension are not applied.",
            "Money is per currency and never added across currencies; payments in another "
            "currency than their booking are not netted.",
            "Operational metrics are by the local month of the booking date.",
        ),
        chart=GDPR_CHART,
        sections=(
            ReportSection(
                "gdpr_requests",
                "GDPR requests received in the period",
                REQUEST_COLUMNS,
                request_rows,
            ),
            ReportSection(
                "payment_reconciliation",
                "Payment reconciliation per booking (service date in the period)",
                RECONCILIATION_COLUMNS,
                recon_rows if data.reconciliation is None else data.reconciliation,
            ),
            ReportSection(
                "payment_totals", "Payment audit totals per currency", TOTALS_COLUMNS, totals_rows
            ),
            ReportSection(
                "payment_exceptions", "Payment exceptions", EXCEPTION_COLUMNS, exceptions
            ),
            ReportSection(
                "operational_metrics",
                "Operational metrics by booking month",
                OPERATIONS_COLUMNS,
                ops_rows,
                OPERATIONS_CHART,
            ),
        ),
        kpis=kpis,
        validation=validation,
    )


async def build_at(ctx: ReportContext, now: datetime) -> ReportTable:
    """The report of ``ctx.request`` with GDPR outcomes as of ``now`` (aware).

    Raises:
        ReportInputError: the request carries data filters (the report covers the whole
            organisation), or ``now`` is naive.
    """
    req = ctx.request
    reject_filters(req)
    if now.tzinfo is None:
        raise ReportInputError("now: must carry a time zone")
    if ctx.session is None:
        # every booking's balance in memory (a validation, a test): reconciled in a thread,
        # off the event loop (an attacker's 10-year validation over 600,000 bookings held the
        # loop 6-9 s, every tenant's requests on the worker waiting)
        data = await load(ctx.pool, ctx.organization, req.date_from, req.date_to)
        table = await asyncio.to_thread(
            build_report, data, ctx.organization, req.date_from, req.date_to, now
        )
    else:
        data = await load_streamed(ctx.session, ctx.organization, req.date_from, req.date_to)
        table = build_report(data, ctx.organization, req.date_from, req.date_to, now)
    return await with_validation(ctx, table, ("bookings", "payments"), OWN_FINDINGS)


OWN_FINDINGS = frozenset(
    {
        "payments.booking_id:orphan",
        "payments.currency:currency_mismatch",
        "payments.amount_minor:refunds_exceed_payments",
        "payments.amount_minor:overpaid",
        "bookings.client_id:null",
        "bookings.venue_id:null",
        "bookings.currency:mixed_currency",
    }
)
"""The shared history checks (:mod:`stream_app.reports.validation`) this report leaves out:
orphan payments, currency mismatches and over-refunded bookings are its own findings (with
their ids), overpaid bookings are in its exceptions, a booking needs no client or venue for
its money to reconcile, and its figures are per currency whatever the organisation's. The
rest run (ISO 4217 codes, cancellations without a date or before the booking, absurd amounts,
duplicates, payments after now): a trial user's bookings in ``usd`` and of USD 5,000,000
passed unremarked."""


async def build(ctx: ReportContext) -> ReportTable:
    """The report of ``ctx.request`` as of now (the type's builder); see :func:`build_at`."""
    return await build_at(ctx, datetime.now(UTC))


REPORT = ReportType(
    name=REPORT_TYPE,
    title="Compliance: GDPR deadlines, payment audit, operational metrics",
    cache_class="financial",
    build=build,
    # conservative: the bookings and payments history in PostgreSQL is loaded with the
    # same facts as these streams, so their events may change the report
    reads=frozenset({"bookings", "payments"}),
    streams=True,
)
