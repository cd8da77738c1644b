"""Deterministic synthetic history of a photography chain, a caterer or a wedding planner.

Pure Python (no I/O): :func:`generate` yields the rows of every history table in chunks of
weddings, in the column order of :data:`TABLE_COLUMNS`, ready for ``COPY``. One
:class:`random.Random` seeded with ``config.seed`` drives everything in one fixed order, so
the same configuration gives the same rows, byte for byte, whatever the chunk size; a
different seed gives different rows.

Distributions (each draw is independent unless stated):

- **year** of a wedding: ``config.years`` consecutive calendar years from
  ``config.start_year``, weights growing 10 % a year (1, 1.1, 1.21, ...) so that
  year-over-year comparisons show growth;
- **month** (:data:`MONTH_WEIGHTS`, percent): Jan 4, Feb 4, Mar 5, Apr 8, May 10, Jun 12,
  Jul 11.5, Aug 11.5, Sep 12, Oct 10, Nov 6, Dec 6. May–October is the peak (67 %);
  June–September holds 47 %, close to Toronto's marriage licences (about 46 %, see
  ``../shared/data``);
- **weekday** (:data:`WEEKDAY_WEIGHTS`, percent): Mon 2, Tue 2, Wed 4, Thu 6, Fri 18, Sat 56,
  Sun 12; Saturday's 56 % is the share of Paris marriages on Saturdays (``../shared/data``).
  The date is uniform among the month's days of that weekday;
- **guests**: triangular(40, 250, mode 110), rounded down;
- **lead time** (booking → wedding): triangular(45, 600, mode 300) days, rounded down;
  the booking is at a uniform local time 09:00–19:59 in the organisation's zone;
- **cancellation**: Bernoulli (photography 8 %, catering 6 %, planner 10 %), at a uniform
  day between the booking and the earlier of the wedding and the as-of date;
- **as-of date** (the day the history ends): 31 October of the last year. Weddings after it
  that are not cancelled are ``booked``, the others ``completed``;
- **amounts** (integer minor units of the organisation's currency): photography =
  (package of 24, 30, 30, 36, 44 or 52 units + the photographer's premium of 0–20 units)
  × 50 GBP; planner = uniform 30–150 × 100 CAD; catering = covers × the menu's price per
  cover;
- **payments**: a deposit of 30 % (rounded down to the minor unit) at booking; the balance
  due 30 days before the wedding, paid (96 %) 0–20 days before the due date (never before
  the booking) when the due date is on or before the as-of date, else outstanding; a
  cancelled booking's deposit is refunded in full (30 %), half (20 %) or kept (50 %),
  1–14 days after the cancellation (when that is on or before the as-of date);
- **feedback**: 65 % of completed bookings, 3–60 days after the wedding (dropped when after
  the as-of date); rating = round(N(4.2 + 0.5 q, 0.8)) clamped to 1–5 and NPS answer =
  round(N(8 + 1.5 q + 1.2 (rating − 4), 1.2)) clamped to 0–10, where q ∈ [−1, 1] is the
  photographer's (office's, caterer's) uniform quality;
- **catering**: a uniform menu per wedding; per recipe line, quantity used = quantity per
  cover × covers × uniform 1.000–1.120 (over-preparation), wasted = used × uniform
  0.020–0.180, both in thousandths of the ingredient's unit, rounded down. Only weddings on or
  before the as-of date and not cancelled have an event and usage.

Sizes: photographers = clamp(weddings ÷ 400, 5, 500); offices = clamp(weddings ÷ 2,000,
3, 20), office weights uniform 0.5–2.0 growing a uniform −5 … +25 % a year; 8 menus and
24 ingredients.
"""

from __future__ import annotations

import calendar
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from stream_app.db.tenancy import Organization

Business = Literal["photography", "catering", "planner"]
BUSINESSES: tuple[Business, ...] = ("photography", "catering", "planner")

MIN_WEDDINGS = 1_000
MAX_WEDDINGS = 1_000_000

MONTH_WEIGHTS: tuple[float, ...] = (4, 4, 5, 8, 10, 12, 11.5, 11.5, 12, 10, 6, 6)
"""Percent of weddings per calendar month, January first (sums to 100)."""

WEEKDAY_WEIGHTS: tuple[float, ...] = (2, 2, 4, 6, 18, 56, 12)
"""Percent of weddings per weekday, Monday first (sums to 100)."""

CANCEL_SHARE: dict[Business, float] = {"photography": 0.08, "catering": 0.06, "planner": 0.10}
DEPOSIT_PERCENT = 30
BALANCE_DUE_DAYS = 30
BALANCE_PAID_SHARE = 0.96
FEEDBACK_SHARE = 0.65
YEAR_GROWTH = 1.10

Row = tuple[Any, ...]
Chunk = dict[str, list[Row]]
"""Table name → rows (tuples in :data:`TABLE_COLUMNS` order)."""

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "suppliers": ("organization_id", "id", "name", "kind", "capacity"),
    "offices": ("organization_id", "id", "name", "city", "opened_on"),
    "catering_menus": ("organization_id", "id", "name", "price_per_cover_minor", "currency"),
    "catering_ingredients": (
        "organization_id", "id", "name", "unit", "unit_cost_minor", "currency",
    ),
    "catering_menu_items": ("organization_id", "menu_id", "ingredient_id", "quantity_per_cover"),
    "clients": ("organization_id", "id", "display_name", "email", "country", "created_at"),
    "weddings": ("organization_id", "id", "client_id", "wedding_date", "venue_id", "guest_count"),
    "bookings": (
        "organization_id", "id", "venue_id", "supplier_id", "office_id", "client_id",
        "wedding_id", "service_date", "nights", "booked_at", "amount_minor", "currency",
        "status", "cancelled_at", "source_event_id",
    ),
    "payments": (
        "organization_id", "id", "booking_id", "kind", "amount_minor", "currency", "occurred_at",
    ),
    "feedback": (
        "organization_id", "id", "client_id", "booking_id", "rating", "nps", "submitted_at",
    ),
    "catering_events": (
        "organization_id", "id", "booking_id", "wedding_id", "menu_id", "event_date", "covers",
    ),
    "catering_usage": (
        "organization_id", "event_id", "ingredient_id", "quantity_used", "quantity_wasted",
    ),
}  # fmt: skip
"""Every table the generator fills, with its columns; the key order is a valid load order
(referenced rows first)."""

_ORGS: dict[Business, tuple[str, str, str, str, str]] = {
    # id, name, IANA zone, currency, client country
    "photography": (
        "synth-photography", "Lumière Photography Chain (synthetic)", "Europe/London", "GBP", "GB",
    ),
    "catering": ("synth-catering", "Saveurs Catering (synthetic)", "Europe/Paris", "EUR", "FR"),
    "planner": (
        "synth-planner", "Évora Wedding Planners (synthetic)", "America/Toronto", "CAD", "CA",
    ),
}  # fmt: skip

_FIRST = (
    "Zoë", "José", "Łukasz", "Ana", "Björn", "Chloé", "Dmitri", "Émilie", "Farah", "Giulia",
    "Hannah", "Ines", "Jürgen", "Kofi", "Léa", "Mateo", "Nadia", "Oskar", "Priya", "Quentin",
    "Rosa", "Søren", "Tomás", "Uma", "Valentina", "Wei", "Ximena", "Yusuf", "Zofia", "Amélie",
)  # fmt: skip
_LAST = (
    "Müller", "García", "Nowak", "Silva", "O'Brien", "Dubois", "Rossi", "Kowalczyk", "Smith",
    "Yılmaz", "Novák", "Jensen", "Costa", "Schäfer", "Ferreira", "Lindqvist", "Kim", "Haddad",
    "Brown", "Martín", "Nakamura", "Petrović", "Ó Súilleabháin", "Andersen",
)  # fmt: skip
_CITIES = (
    "Toronto", "Ottawa", "Montréal", "Québec", "Vancouver", "Calgary", "Edmonton", "Winnipeg",
    "Halifax", "Victoria", "Hamilton", "Kitchener", "London ON", "Saskatoon", "Regina",
    "St. John's", "Kelowna", "Niagara Falls", "Gatineau", "Moncton",
)  # fmt: skip
_MENUS = (
    # name, price per cover (minor units)
    ("Menu Classique", 6_500), ("Menu Prestige", 9_800), ("Menu Végétarien", 5_900),
    ("Menu Méditerranée", 7_400), ("Menu Terroir", 8_200), ("Buffet Champêtre", 4_800),
    ("Menu Océan", 10_500), ("Menu Enfant", 2_200),
)  # fmt: skip
_INGREDIENTS = (
    # name, unit, unit cost (minor units per unit)
    ("Bœuf (filet)", "kg", 4_200), ("Poulet fermier", "kg", 1_150), ("Saumon", "kg", 2_600),
    ("Bar de ligne", "kg", 3_400), ("Agneau", "kg", 2_900), ("Crevettes", "kg", 2_200),
    ("Pommes de terre", "kg", 180), ("Légumes de saison", "kg", 420), ("Salade", "kg", 650),
    ("Riz", "kg", 290), ("Pâtes fraîches", "kg", 540), ("Fromages affinés", "kg", 2_350),
    ("Crème", "l", 480), ("Beurre", "kg", 1_050), ("Farine", "kg", 95), ("Œufs", "piece", 32),
    ("Fruits rouges", "kg", 1_400), ("Chocolat noir", "kg", 1_800), ("Vin blanc", "l", 900),
    ("Vin rouge", "l", 1_100), ("Champagne", "l", 3_200), ("Eau minérale", "l", 60),
    ("Pain", "piece", 45), ("Café", "kg", 1_900),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SynthConfig:
    """What to generate.

    Attributes:
        business: ``photography``, ``catering`` or ``planner``.
        weddings: how many weddings (:data:`MIN_WEDDINGS` to :data:`MAX_WEDDINGS`).
        seed: the seed of the one random stream; same configuration → same rows.
        organization_id: the tenant id (default ``synth-<business>``).
        start_year: the first calendar year of weddings.
        years: how many consecutive years (at least 2, so year-over-year works).
    """

    business: Business
    weddings: int
    seed: int
    organization_id: str | None = None
    start_year: int = 2023
    years: int = 3

    def __post_init__(self) -> None:
        if self.business not in BUSINESSES:
            raise ValueError(f"business: {self.business!r} is not one of {list(BUSINESSES)}")
        if not MIN_WEDDINGS <= self.weddings <= MAX_WEDDINGS:
            raise ValueError(
                f"weddings: {self.weddings} is outside {MIN_WEDDINGS:,}..{MAX_WEDDINGS:,}"
            )
        if not 2 <= self.years <= 10:
            raise ValueError(f"years: {self.years} is outside 2..10")
        if not 1900 <= self.start_year <= 2200:
            raise ValueError(f"start_year: {self.start_year} is outside 1900..2200")
        if self.organization_id is not None and not self.organization_id.strip():
            raise ValueError("organization_id: must not be empty")

    @property
    def as_of(self) -> date:
        """The last day of the history (31 October of the last year)."""
        return date(self.start_year + self.years - 1, 10, 31)


def organization_for(config: SynthConfig) -> Organization:
    """The organisation of ``config`` (id, name, IANA zone, currency) for its business."""
    org_id, name, zone, currency, _ = _ORGS[config.business]
    return Organization(config.organization_id or org_id, name, zone, currency)


def _clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, value))


def photographer_count(weddings: int) -> int:
    """Photographers of a chain with ``weddings`` weddings: clamp(weddings ÷ 400, 5, 500)."""
    return _clamp(weddings // 400, 5, 500)


def office_count(weddings: int) -> int:
    """Offices of a planner with ``weddings`` weddings: clamp(weddings ÷ 2,000, 3, 20)."""
    return _clamp(weddings // 2000, 3, 20)


class _Generator:
    """The state of one generation run (one random stream, consumed in a fixed order)."""

    def __init__(self, config: SynthConfig) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.org = organization_for(config)
        self.zone = ZoneInfo(self.org.time_zone)
        self.country = _ORGS[config.business][4]
        self.as_of = config.as_of
        self.years = list(range(config.start_year, config.start_year + config.years))
        self.year_cum = list(itertools.accumulate(YEAR_GROWTH**i for i in range(len(self.years))))
        self.month_cum = list(itertools.accumulate(MONTH_WEIGHTS))
        self.weekday_cum = list(itertools.accumulate(WEEKDAY_WEIGHTS))
        self.days: dict[tuple[int, int, int], list[date]] = {}
        for y in self.years:
            for m in range(1, 13):
                for d in range(1, calendar.monthrange(y, m)[1] + 1):
                    day = date(y, m, d)
                    self.days.setdefault((y, m, day.weekday()), []).append(day)
        self.quality: list[float] = []
        self.premium: list[int] = []
        self.office_cum: list[list[float]] = []
        self.menus: list[tuple[str, int, list[tuple[str, int]]]] = []

    # -- static rows ----------------------------------------------------------------------

    def static(self) -> Chunk:
        rng, org = self.rng, self.org.id
        out: Chunk = {name: [] for name in TABLE_COLUMNS}
        if self.cfg.business == "photography":
            for i in range(photographer_count(self.cfg.weddings)):
                name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
                self.quality.append(rng.uniform(-1.0, 1.0))
                self.premium.append(rng.randint(0, 20))
                out["suppliers"].append((org, f"ph-{i + 1:03d}", name, "photographer", 60))
        elif self.cfg.business == "planner":
            n = office_count(self.cfg.weddings)
            weights = []
            for i in range(n):
                base = rng.uniform(0.5, 2.0)
                growth = rng.uniform(-0.05, 0.25)
                self.quality.append(rng.uniform(-1.0, 1.0))
                weights.append([base * (1 + growth) ** k for k in range(len(self.years))])
                opened = date(self.cfg.start_year - rng.randint(1, 15), rng.randint(1, 12), 1)
                city = _CITIES[i]
                out["offices"].append((org, f"of-{i + 1:02d}", f"Évora {city}", city, opened))
            self.office_cum = [
                list(itertools.accumulate(w[k] for w in weights)) for k in range(len(self.years))
            ]
        else:
            currency = self.org.currency
            for i, (name, unit, cost) in enumerate(_INGREDIENTS):
                out["catering_ingredients"].append(
                    (org, f"in-{i + 1:02d}", name, unit, cost, currency)
                )
            self.quality.append(rng.uniform(-1.0, 1.0))
            for i, (name, price) in enumerate(_MENUS):
                menu_id = f"mn-{i + 1:02d}"
                out["catering_menus"].append((org, menu_id, name, price, currency))
                picks = rng.sample(range(len(_INGREDIENTS)), rng.randint(5, 8))
                recipe = []
                for j in sorted(picks):
                    unit = _INGREDIENTS[j][1]
                    # quantity per cover in ten-thousandths of the unit: 0.2 to 3 pieces,
                    # 0.01 to 0.35 kg or l
                    q = rng.randint(2, 30) * 1_000 if unit == "piece" else rng.randint(100, 3_500)
                    recipe.append((f"in-{j + 1:02d}", q))
                    out["catering_menu_items"].append(
                        (org, menu_id, f"in-{j + 1:02d}", Decimal(q).scaleb(-4))
                    )
                self.menus.append((menu_id, price, recipe))
        return out

    # -- one wedding ----------------------------------------------------------------------

    def _instant(self, day: date, hour: int, minute: int) -> datetime:
        return datetime.combine(day, time(hour, minute), self.zone).astimezone(UTC)

    def wedding(self, n: int, out: Chunk) -> None:
        rng, org, cfg = self.rng, self.org.id, self.cfg
        currency = self.org.currency
        year_idx = rng.choices(range(len(self.years)), cum_weights=self.year_cum)[0]
        month = rng.choices(range(1, 13), cum_weights=self.month_cum)[0]
        weekday = rng.choices(range(7), cum_weights=self.weekday_cum)[0]
        wedding_date = rng.choice(self.days[(self.years[year_idx], month, weekday)])
        guests = int(rng.triangular(40, 250, 110))
        lead = int(rng.triangular(45, 600, 300))
        booked_day = wedding_date - timedelta(days=lead)
        if booked_day > self.as_of:
            booked_day = self.as_of - timedelta(days=rng.randint(0, 30))
        booked_at = self._instant(booked_day, rng.randint(9, 19), rng.randint(0, 59))
        sid = f"{n:07d}"
        client_id, wedding_id, booking_id = f"c{sid}", f"w{sid}", f"b{sid}"
        first_a, first_b, last = rng.choice(_FIRST), rng.choice(_FIRST), rng.choice(_LAST)
        created = booked_at - timedelta(days=rng.randint(0, 30), minutes=rng.randint(0, 600))
        out["clients"].append(
            (org, client_id, f"{first_a} & {first_b} {last}", f"couple{sid}@example.com",
             self.country, created)
        )  # fmt: skip
        out["weddings"].append((org, wedding_id, client_id, wedding_date, None, guests))

        supplier_id = office_id = None
        quality = 0.0
        menu: tuple[str, int, list[tuple[str, int]]] | None = None
        if cfg.business == "photography":
            k = rng.randrange(len(self.quality))
            supplier_id, quality = f"ph-{k + 1:03d}", self.quality[k]
            units = rng.choice((24, 30, 30, 36, 44, 52)) + self.premium[k]
            amount = units * 5_000
        elif cfg.business == "planner":
            k = rng.choices(range(len(self.quality)), cum_weights=self.office_cum[year_idx])[0]
            office_id, quality = f"of-{k + 1:02d}", self.quality[k]
            amount = rng.randint(30, 150) * 10_000
        else:
            menu = self.menus[rng.randrange(len(self.menus))]
            quality = self.quality[0]
            amount = guests * menu[1]

        cancelled = rng.random() < CANCEL_SHARE[cfg.business]
        cancelled_at = None
        if cancelled:
            last_day = min(wedding_date, self.as_of)
            span = max(0, (last_day - booked_day).days)
            cancel_day = booked_day + timedelta(days=rng.randint(0, span))
            cancelled_at = max(
                booked_at, self._instant(cancel_day, rng.randint(9, 19), rng.randint(0, 59))
            )
            status = "cancelled"
        elif wedding_date <= self.as_of:
            status = "completed"
        else:
            status = "booked"
        out["bookings"].append(
            (org, booking_id, None, supplier_id, office_id, client_id, wedding_id, wedding_date,
             0, booked_at, amount, currency, status, cancelled_at, None)
        )  # fmt: skip

        deposit = amount * DEPOSIT_PERCENT // 100
        payments = out["payments"]
        payments.append((org, f"p{sid}-d", booking_id, "payment", deposit, currency, booked_at))
        if cancelled_at is not None:
            r = rng.random()
            refund = deposit if r < 0.30 else deposit // 2 if r < 0.50 else 0
            refund_day = cancelled_at.date() + timedelta(days=rng.randint(1, 14))
            if refund and refund_day <= self.as_of:
                payments.append(
                    (org, f"p{sid}-r", booking_id, "refund", refund, currency,
                     self._instant(refund_day, 12, 0))
                )  # fmt: skip
        else:
            due = wedding_date - timedelta(days=BALANCE_DUE_DAYS)
            if due <= self.as_of and rng.random() < BALANCE_PAID_SHARE:
                paid_day = max(booked_day, due - timedelta(days=rng.randint(0, 20)))
                paid_at = max(booked_at, self._instant(paid_day, rng.randint(9, 19), 0))
                payments.append(
                    (org, f"p{sid}-b", booking_id, "payment", amount - deposit, currency, paid_at)
                )

        if status == "completed":
            if rng.random() < FEEDBACK_SHARE:
                day = wedding_date + timedelta(days=rng.randint(3, 60))
                rating = _clamp(round(rng.gauss(4.2 + 0.5 * quality, 0.8)), 1, 5)
                nps = _clamp(round(rng.gauss(8 + 1.5 * quality + 1.2 * (rating - 4), 1.2)), 0, 10)
                if day <= self.as_of:
                    out["feedback"].append(
                        (org, f"f{sid}", client_id, booking_id, rating, nps,
                         self._instant(day, rng.randint(8, 22), rng.randint(0, 59)))
                    )  # fmt: skip
            if menu is not None:
                event_id = f"e{sid}"
                out["catering_events"].append(
                    (org, event_id, booking_id, wedding_id, menu[0], wedding_date, guests)
                )
                usage = out["catering_usage"]
                for ingredient_id, per_cover in menu[2]:
                    planned = per_cover * guests // 10  # thousandths of the unit
                    used = planned * rng.randint(1000, 1120) // 1000
                    wasted = used * rng.randint(20, 180) // 1000
                    usage.append(
                        (org, event_id, ingredient_id, Decimal(used).scaleb(-3),
                         Decimal(wasted).scaleb(-3))
                    )  # fmt: skip


def generate(config: SynthConfig, chunk_weddings: int = 20_000) -> Iterator[Chunk]:
    """The rows of ``config``'s history, ``chunk_weddings`` weddings per chunk.

    The first chunk also holds the organisation's static rows (photographers, offices, menus,
    ingredients, recipes). Memory is one chunk's rows at a time.

    Raises:
        ValueError: ``chunk_weddings`` is not positive.
    """
    if chunk_weddings <= 0:
        raise ValueError(f"chunk_weddings: must be positive, got {chunk_weddings}")
    gen = _Generator(config)
    chunk = gen.static()
    for n in range(1, config.weddings + 1):
        gen.wedding(n, chunk)
        if n % chunk_weddings == 0:
            yield chunk
            chunk = {name: [] for name in TABLE_COLUMNS}
    if any(chunk.values()):
        yield chunk


def generate_all(config: SynthConfig) -> Chunk:
    """Every row of ``config``'s history in one :data:`Chunk` (for tests and small sets)."""
    out: Chunk = {name: [] for name in TABLE_COLUMNS}
    for chunk in generate(config):
        for name, rows in chunk.items():
            out[name].extend(rows)
    return out
