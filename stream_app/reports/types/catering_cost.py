"""Report type ``catering_cost``: ingredients, waste, cost and margin per menu and per event.

Reads PostgreSQL history only (``catering_events``, ``catering_usage``,
``catering_ingredients``, ``catering_menus``, ``bookings``) inside a tenant transaction with
the organisation in every predicate; sums are exact ``numeric`` aggregates in SQL.

Definitions:

- an **event** is a ``catering_events`` row whose event date (a local date in the
  organisation's zone) is inside the request's range and whose booking is not cancelled;
  **covers** are the meals it served;
- **revenue** of an event: the amount of its booking (covers × the menu's price per cover
  when it was booked), exact minor units, in the booking's currency; a booking whose amount is
  not that, or that carries several events (each then counts its whole amount), is named in a
  validation warning;
- **quantity used** of an ingredient: what was taken from stock for the event, in the
  ingredient's unit (kg, l or piece); **quantity wasted**: the part of it thrown away;
- **ingredient cost** = Σ quantity used × unit cost (minor units per unit), exact, shown
  rounded half-even to the minor unit; **waste cost** = Σ quantity wasted × unit cost;
- **waste share**: per ingredient, quantity wasted ÷ quantity used × 100 (one unit, so the
  quantities add up); per menu and per event, where ingredients of different units meet,
  waste cost ÷ ingredient cost × 100 (the value-weighted share);
- **margin** = revenue − ingredient cost (rounded), and margin % = margin ÷ revenue × 100;
  ingredient cost only: labour, rent and other overheads are not in the data;
- ``ingredients`` of a menu: distinct ingredients used by its events; of an event: its usage
  lines.

A cost and a revenue in different currencies are never compared: an event with an ingredient
costed in a currency other than its booking's is left out of every figure (menus, events,
ingredients, key figures) and named in a validation warning with the currencies; the rest of
the report stands (it failed as a whole before: one such event stopped every figure).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg

from stream_app.db.tenancy import Organization
from stream_app.reports.model import Cell, ChartSpec, Column, Kpi, ReportSection, ReportTable
from stream_app.reports.types.base import ReportInputError, new_table
from stream_app.reports.types.columns import CURRENCY
from stream_app.reports.types.figures import money, money_grouped, percent, round_minor
from stream_app.reports.types.history import history_type

REPORT_TYPE = "catering_cost"

MENU_ID = Column("menu_id", "text", "menu id")
COVERS = Column("covers", "int", "meals served")
COSTS = (
    Column("ingredient_cost", "money", "Σ quantity used × unit cost, rounded half-even"),
    Column("waste_cost", "money", "Σ quantity wasted × unit cost, rounded half-even"),
    Column("waste_share", "percent", "waste cost / ingredient cost × 100"),
    Column("margin", "money", "revenue − ingredient cost"),
    Column("margin_percent", "percent", "margin / revenue × 100"),
)
"""The cost and margin columns of a menu and of an event (after their revenue)."""

COLUMNS = (
    MENU_ID,
    Column("menu_name", "text", "menu name"),
    Column("events", "int", "events served with the menu in the range"),
    COVERS,
    Column("ingredients", "int", "distinct ingredients used"),
    CURRENCY,
    Column("revenue", "money", "booking amounts of the events, exact"),
    *COSTS,
)

CHART = ChartSpec(
    title="Revenue and ingredient cost by menu",
    category_column="menu_name",
    value_columns=("revenue", "ingredient_cost"),
    series_column="currency",
)

EVENT_COLUMNS = (
    Column("event_id", "text", "event id"),
    Column("event_date", "date", "local date of the event"),
    MENU_ID,
    COVERS,
    Column("ingredients", "int", "usage lines (ingredients used)"),
    CURRENCY,
    Column("revenue", "money", "booking amount, exact"),
    *COSTS,
)

INGREDIENT_COLUMNS = (
    Column("ingredient_id", "text", "ingredient id"),
    Column("ingredient_name", "text", "ingredient name"),
    Column("unit", "text", "kg, l or piece"),
    Column("events", "int", "events that used it"),
    Column("quantity_used", "decimal", "units used, exact (3 decimals)"),
    Column("quantity_wasted", "decimal", "units wasted, exact (3 decimals)"),
    Column("waste_share", "percent", "quantity wasted / quantity used × 100"),
    Column("currency", "text", "ISO 4217 code of the cost"),
    Column("ingredient_cost", "money", "quantity used × unit cost, rounded half-even"),
    Column("waste_cost", "money", "quantity wasted × unit cost, rounded half-even"),
)

_IN_RANGE = """
    SELECT e.id, e.event_date, e.menu_id, e.covers, b.amount_minor, b.currency
    FROM catering_events e
    JOIN bookings b ON b.organization_id = e.organization_id AND b.id = e.booking_id
    WHERE e.organization_id = $1 AND b.organization_id = $1
      AND e.event_date BETWEEN $2 AND $3 AND b.status <> 'cancelled'
"""

_EVENTS = f"""
    {_IN_RANGE}
      AND NOT EXISTS (
        SELECT 1 FROM catering_usage u
        JOIN catering_ingredients i ON i.organization_id = $1 AND i.id = u.ingredient_id
        WHERE u.organization_id = $1 AND u.event_id = e.id AND i.currency <> b.currency
      )
"""
"""The report's events: in the range, booking not cancelled, every ingredient costed in the
booking's currency."""

MIXED_SQL = f"""
    WITH ev AS ({_IN_RANGE})
    SELECT ev.id, ev.currency,
           array_agg(DISTINCT i.currency ORDER BY i.currency) AS cost_currencies
    FROM ev
    JOIN catering_usage u ON u.organization_id = $1 AND u.event_id = ev.id
    JOIN catering_ingredients i ON i.organization_id = $1 AND i.id = u.ingredient_id
    WHERE i.currency <> ev.currency
    GROUP BY ev.id, ev.currency, ev.event_date
    ORDER BY ev.event_date, ev.id
"""
"""Events of the range left out: an ingredient costed in another currency than the booking."""

EVENT_SQL = f"""
    WITH ev AS ({_EVENTS}),
    used AS (
        SELECT u.event_id, count(*) AS lines,
               sum(u.quantity_used * i.unit_cost_minor) AS cost,
               sum(u.quantity_wasted * i.unit_cost_minor) AS waste
        FROM catering_usage u
        JOIN catering_ingredients i ON i.organization_id = $1 AND i.id = u.ingredient_id
        WHERE u.organization_id = $1 AND u.event_id IN (SELECT id FROM ev)
        GROUP BY u.event_id
    )
    SELECT ev.id, ev.event_date, ev.menu_id, ev.covers, ev.amount_minor, ev.currency,
           coalesce(used.lines, 0) AS lines, coalesce(used.cost, 0) AS cost,
           coalesce(used.waste, 0) AS waste
    FROM ev LEFT JOIN used ON used.event_id = ev.id
    ORDER BY ev.event_date, ev.id
"""

MENU_SQL = f"""
    WITH ev AS ({_EVENTS}),
    used AS (
        SELECT ev.menu_id, ev.currency, count(DISTINCT u.ingredient_id) AS ingredients,
               sum(u.quantity_used * i.unit_cost_minor) AS cost,
               sum(u.quantity_wasted * i.unit_cost_minor) AS waste
        FROM ev
        JOIN catering_usage u ON u.organization_id = $1 AND u.event_id = ev.id
        JOIN catering_ingredients i ON i.organization_id = $1 AND i.id = u.ingredient_id
        GROUP BY ev.menu_id, ev.currency
    ),
    sold AS (
        SELECT menu_id, currency, count(*) AS events, sum(covers)::bigint AS covers,
               sum(amount_minor)::bigint AS revenue
        FROM ev GROUP BY menu_id, currency
    )
    SELECT sold.menu_id, m.name, sold.currency, sold.events, sold.covers, sold.revenue,
           coalesce(used.ingredients, 0) AS ingredients, coalesce(used.cost, 0) AS cost,
           coalesce(used.waste, 0) AS waste
    FROM sold
    JOIN catering_menus m ON m.organization_id = $1 AND m.id = sold.menu_id
    LEFT JOIN used ON used.menu_id = sold.menu_id AND used.currency = sold.currency
    ORDER BY sold.menu_id, sold.currency
"""

INGREDIENT_SQL = f"""
    WITH ev AS ({_EVENTS})
    SELECT i.id, i.name, i.unit, i.currency, count(*) AS events,
           sum(u.quantity_used) AS used, sum(u.quantity_wasted) AS wasted,
           sum(u.quantity_used * i.unit_cost_minor) AS cost,
           sum(u.quantity_wasted * i.unit_cost_minor) AS waste
    FROM ev
    JOIN catering_usage u ON u.organization_id = $1 AND u.event_id = ev.id
    JOIN catering_ingredients i ON i.organization_id = $1 AND i.id = u.ingredient_id
    GROUP BY i.id, i.name, i.unit, i.currency
    ORDER BY i.id
"""


SHARED_SQL = f"""
    WITH ev AS ({_EVENTS})
    SELECT e.booking_id, array_agg(e.id ORDER BY e.id) AS events
    FROM catering_events e
    WHERE e.organization_id = $1 AND e.id IN (SELECT id FROM ev)
    GROUP BY e.booking_id HAVING count(*) > 1
    ORDER BY e.booking_id
"""
"""Bookings that carry more than one of the range's events: each event counts the booking's
whole amount as its revenue."""

PRICED_SQL = f"""
    WITH ev AS ({_EVENTS})
    SELECT ev.id, ev.covers, ev.amount_minor, ev.currency, m.price_per_cover_minor
    FROM ev JOIN catering_menus m ON m.organization_id = $1 AND m.id = ev.menu_id
    WHERE m.currency = ev.currency AND ev.amount_minor <> ev.covers * m.price_per_cover_minor
    ORDER BY ev.event_date, ev.id
"""
"""Events whose booking amount is not covers × the menu's price per cover (same currency)."""


def _findings(shared: list[Any], priced: list[Any], mixed: list[Any]) -> tuple[str, ...]:
    """Warnings about revenue the report takes as it stands: a booking counted by several
    events, an amount other than covers × price (a trial user's planner booked the whole
    wedding under the catering booking: 19,561.08 against 162 × 95.00); and the events left
    out because their cost and revenue are in different currencies."""
    out: list[str] = []
    if mixed:
        examples = "; ".join(
            f"{r['id']}: booking {r['currency'].strip()}, ingredients"
            f" {', '.join(c.strip() for c in r['cost_currencies'])}"
            for r in mixed[:3]
        )
        out.append(
            f"warning: {len(mixed)} event(s) left out of every figure: an ingredient is costed"
            " in a currency other than the booking's, and a margin across currencies is not"
            f" computed (e.g. {examples})"
        )
    if shared:
        examples = "; ".join(f"{r['booking_id']}: {', '.join(r['events'])}" for r in shared[:3])
        out.append(
            f"warning: {len(shared)} booking(s) carry more than one catering event in the range:"
            " each event takes the booking's whole amount as its revenue, so the menu and total"
            f" revenue count it once per event (e.g. {examples})"
        )
    if priced:
        r = priced[0]
        cur = r["currency"].strip()
        price = r["price_per_cover_minor"]
        out.append(
            f"warning: {len(priced)} event(s) have a booking amount other than covers × the"
            f" menu's price per cover; revenue is the booking's amount (e.g. {r['id']}:"
            f" {money(r['amount_minor'], cur)} against {r['covers']} × {money(price, cur)} ="
            f" {money(r['covers'] * price, cur)} {cur})"
        )
    return tuple(out)


def _figures(revenue: int, cost: Decimal, waste: Decimal, currency: str) -> list[Cell]:
    """revenue, ingredient cost, waste cost, waste share, margin, margin % of one row."""
    cost_minor = round_minor(cost)
    margin = revenue - cost_minor
    return [
        money(revenue, currency),
        money(cost_minor, currency),
        money(round_minor(waste), currency),
        percent(waste, cost),
        money(margin, currency),
        percent(margin, revenue),
    ]


async def _read(
    conn: asyncpg.Connection, org_id: str, date_from: date, date_to: date
) -> dict[str, Any]:
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM catering_menus WHERE organization_id = $1)", org_id
    ):
        raise ReportInputError(
            f"organization_id: {org_id!r} has no catering menus in its PostgreSQL history: load"
            " the `catering_*` rows (README, Loading your own history)"
        )
    return {
        "mixed": await conn.fetch(MIXED_SQL, org_id, date_from, date_to),
        "shared": await conn.fetch(SHARED_SQL, org_id, date_from, date_to),
        "priced": await conn.fetch(PRICED_SQL, org_id, date_from, date_to),
        "menus": await conn.fetch(MENU_SQL, org_id, date_from, date_to),
        "events": await conn.fetch(EVENT_SQL, org_id, date_from, date_to),
        "ingredients": await conn.fetch(INGREDIENT_SQL, org_id, date_from, date_to),
    }


def build_report(
    data: dict[str, Any], org: Organization, date_from: date, date_to: date
) -> ReportTable:
    """The report from the query results of :func:`_read` (pure; see the module docstring)."""
    totals: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0, Decimal(0), Decimal(0)])
    menus: list[list[Cell]] = []
    for r in data["menus"]:
        currency = r["currency"].strip()
        t = totals[currency]
        t[0] += r["events"]
        t[1] += r["covers"]
        t[2] += r["revenue"]
        t[3] += r["cost"]
        t[4] += r["waste"]
        menus.append(
            [r["menu_id"], r["name"], r["events"], r["covers"], r["ingredients"], currency,
             *_figures(r["revenue"], r["cost"], r["waste"], currency)]
        )  # fmt: skip
    events: list[list[Cell]] = []
    for r in data["events"]:
        currency = r["currency"].strip()
        events.append(
            [r["id"], r["event_date"].isoformat(), r["menu_id"], r["covers"], r["lines"],
             currency, *_figures(r["amount_minor"], r["cost"], r["waste"], currency)]
        )  # fmt: skip
    ingredients: list[list[Cell]] = []
    for r in data["ingredients"]:
        currency = r["currency"].strip()
        ingredients.append(
            [r["id"], r["name"], r["unit"], r["events"], str(r["used"]), str(r["wasted"]),
             percent(r["wasted"], r["used"]), currency,
             money(round_minor(r["cost"]), currency), money(round_minor(r["waste"]), currency)]
        )  # fmt: skip
    kpis: list[Kpi] = []
    for currency, (n_events, covers, revenue, cost, waste) in sorted(totals.items()):
        cost_minor = round_minor(cost)
        suffix = f" ({currency})" if len(totals) > 1 else ""
        kpis += [
            Kpi(f"Events{suffix}", f"{n_events:,}"),
            Kpi(f"Covers{suffix}", f"{covers:,}"),
            Kpi(f"Revenue ({currency})", money_grouped(revenue, currency)),
            Kpi(f"Ingredient cost ({currency})", money_grouped(cost_minor, currency)),
            Kpi(f"Waste share{suffix}", f"{percent(waste, cost) or '–'}%"),
            Kpi(f"Margin{suffix}", f"{percent(revenue - cost_minor, revenue) or '–'}%"),
        ]
    time_zone = org.time_zone
    return new_table(
        REPORT_TYPE,
        org,
        date_from,
        date_to,
        columns=COLUMNS,
        rows=menus,
        notes=(
            f"Events by their local date (time zone {time_zone}); cancelled bookings excluded.",
            "Waste share per menu and event = waste cost / ingredient cost (value-weighted); "
            "per ingredient = quantity wasted / quantity used.",
            "Margin = revenue − ingredient cost only (no labour or overheads).",
        ),
        chart=CHART,
        sections=(
            ReportSection(
                name="events",
                title="Cost and margin per event",
                columns=EVENT_COLUMNS,
                rows=events,
            ),
            ReportSection(
                name="ingredients",
                title="Ingredients used and wasted",
                columns=INGREDIENT_COLUMNS,
                rows=ingredients,
            ),
        ),
        kpis=kpis,
        validation=_findings(data.get("shared", []), data.get("priced", []), data.get("mixed", [])),
    )


REPORT = history_type(
    REPORT_TYPE,
    title="Catering cost and margin",
    cache_class="operational",
    read=_read,
    make=build_report,
    validated=("bookings", "payments"),
)
"""The type. Its builder refuses (:class:`~stream_app.reports.types.base.ReportInputError`)
data filters and a request where the organisation has no menus; an event that mixes
currencies is left out and named in a warning."""
