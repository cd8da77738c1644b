"""The allow-list of the aggregation API: which tables and columns a query may name.

Part of the query layer (reports): nothing outside this module decides which table or column
text reaches SQL. A request names a dataset and fields; each resolves to a :class:`Dataset`
and :class:`FieldSpec` here, and the SQL uses the spec's ``column`` (a constant of this
module), never the request's text. Columns are those of migrations 001 and 003 (a planner's
offices, a caterer's events, menus and ingredients); personal data (client names, e-mail
addresses) and free text (names of offices, menus and ingredients) are not listed.

Per field type, what may be done with it (a field may narrow this further):

============  =========  ==========================================  ==============================
type          group by   metrics                                     filter operators
============  =========  ==========================================  ==============================
``text``      yes        count, distinct_count                       eq ne in not_in is_null
                                                                     is_not_null
``int``       yes        count sum avg min max distinct_count        every operator
                         percentile(_cont/_disc)
``money``     no         count sum avg min max percentile(_cont/     eq ne in not_in lt lte gt gte
                         _disc) (always per currency)                between
``date``      grains     count min max distinct_count                every operator
``timestamp`` grains     count min max                               every operator
============  =========  ==========================================  ==============================

Grains (``day``, ``week`` = ISO 8601 week starting Monday, ``month``, ``year``) of a
``timestamp`` (``timestamptz``) field are computed in the organisation's IANA zone; a
``date`` field is already a local date of the organisation (migration 001) and is truncated
as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["text", "int", "money", "date", "timestamp"]
Grain = Literal["day", "week", "month", "year"]
MetricOp = Literal[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "distinct_count",
    "percentile",
    "percentile_cont",
    "percentile_disc",
]
FilterOp = Literal[
    "eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "between", "is_null", "is_not_null"
]

GRAINS: tuple[Grain, ...] = ("day", "week", "month", "year")
_EQUALITY: frozenset[str] = frozenset({"eq", "ne", "in", "not_in"})
_ORDER: frozenset[str] = frozenset({"lt", "lte", "gt", "gte", "between"})
_NULLS: frozenset[str] = frozenset({"is_null", "is_not_null"})
_PERCENTILES: frozenset[str] = frozenset({"percentile", "percentile_cont", "percentile_disc"})

DEFAULT_METRICS: dict[FieldType, frozenset[str]] = {
    "text": frozenset({"count", "distinct_count"}),
    "int": frozenset({"count", "sum", "avg", "min", "max", "distinct_count"}) | _PERCENTILES,
    "money": frozenset({"count", "sum", "avg", "min", "max"}) | _PERCENTILES,
    "date": frozenset({"count", "min", "max", "distinct_count"}),
    "timestamp": frozenset({"count", "min", "max"}),
}
DEFAULT_FILTERS: dict[FieldType, frozenset[str]] = {
    "text": _EQUALITY | _NULLS,
    "int": _EQUALITY | _ORDER | _NULLS,
    "money": _EQUALITY | _ORDER,
    "date": _EQUALITY | _ORDER | _NULLS,
    "timestamp": _EQUALITY | _ORDER | _NULLS,
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One column a request may name.

    Attributes:
        name: the name in requests (equal to the SQL column name).
        type: the field type (see the module docstring); ``money`` is an integer amount in
            minor units whose currency is the dataset's ``currency_field`` of the same row.
        description: what the column holds, with its unit.
        groupable: may appear in ``group_by`` (``date``/``timestamp`` with a grain; a
            ``timestamp`` always needs one).
        metrics: the metric operators allowed on it (default: by type).
        filters: the filter operators allowed on it (default: by type).
    """

    name: str
    type: FieldType
    description: str
    groupable: bool = True
    metrics: frozenset[str] | None = None
    filters: frozenset[str] | None = None

    @property
    def allowed_metrics(self) -> frozenset[str]:
        """The metric operators allowed on this field."""
        return self.metrics if self.metrics is not None else DEFAULT_METRICS[self.type]

    @property
    def allowed_filters(self) -> frozenset[str]:
        """The filter operators allowed on this field."""
        return self.filters if self.filters is not None else DEFAULT_FILTERS[self.type]

    @property
    def column(self) -> str:
        """The quoted SQL identifier (a constant of this module, never request text)."""
        return f'"{self.name}"'


@dataclass(frozen=True, slots=True)
class Dataset:
    """A table the aggregation API may read.

    Attributes:
        name: the name in requests.
        table: the SQL table (migration 001); every query also filters ``organization_id``.
        description: what one row is.
        fields: the allowed columns by name.
        currency_field: the ISO 4217 column of the row's ``money`` fields, if it has any.
    """

    name: str
    table: str
    description: str
    fields: dict[str, FieldSpec]
    currency_field: str | None = None


_ID_ONLY_COUNTS = frozenset({"count", "distinct_count"})


def _dataset(
    name: str,
    description: str,
    id_description: str,
    fields: list[FieldSpec],
    currency_field: str | None = None,
) -> Dataset:
    """The dataset of table ``name``: its ``id`` (counted only, never grouped), then
    ``fields``."""
    row_id = FieldSpec("id", "text", id_description, groupable=False, metrics=_ID_ONLY_COUNTS)
    fields = [row_id, *fields]
    return Dataset(name, name, description, {f.name: f for f in fields}, currency_field)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        _dataset(
            "bookings",
            "one booking of a venue, supplier or service (migration 001 ``bookings``)",
            "booking id",
            [
                FieldSpec("venue_id", "text", "venue id (empty for non-venue bookings)"),
                FieldSpec("supplier_id", "text", "supplier id"),
                FieldSpec("client_id", "text", "client id"),
                FieldSpec("wedding_id", "text", "wedding id"),
                FieldSpec("office_id", "text", "the planner office that booked it (migration 003)"),
                FieldSpec("service_date", "date", "local date of the service (wedding, arrival)"),
                FieldSpec("nights", "int", "nights of a stay (0 for a day service)"),
                FieldSpec("booked_at", "timestamp", "when the booking was made (UTC)"),
                FieldSpec("amount_minor", "money", "booked value, minor units of currency"),
                FieldSpec("currency", "text", "ISO 4217 code of amount_minor"),
                FieldSpec("status", "text", "booked, cancelled, completed or no_show"),
                FieldSpec("cancelled_at", "timestamp", "when it was cancelled (UTC), if it was"),
            ],
            currency_field="currency",
        ),
        _dataset(
            "payments",
            "one payment or refund of a booking (migration 001 ``payments``)",
            "payment id",
            [
                FieldSpec("booking_id", "text", "the booking paid"),
                FieldSpec("kind", "text", "payment or refund"),
                FieldSpec("amount_minor", "money", "amount, minor units of currency"),
                FieldSpec("currency", "text", "ISO 4217 code of amount_minor"),
                FieldSpec("occurred_at", "timestamp", "when it was paid or refunded (UTC)"),
            ],
            currency_field="currency",
        ),
        _dataset(
            "feedback",
            "one client feedback (migration 001 ``feedback``)",
            "feedback id",
            [
                FieldSpec("client_id", "text", "client id"),
                FieldSpec("booking_id", "text", "the booking it is about"),
                FieldSpec("rating", "int", "rating 1..5"),
                FieldSpec("nps", "int", "likelihood to recommend 0..10"),
                FieldSpec("submitted_at", "timestamp", "when it was submitted (UTC)"),
            ],
        ),
        _dataset(
            "weddings",
            "one wedding (migration 001 ``weddings``)",
            "wedding id",
            [
                FieldSpec("client_id", "text", "client id"),
                FieldSpec("wedding_date", "date", "local date of the wedding"),
                FieldSpec("venue_id", "text", "venue id"),
                FieldSpec("guest_count", "int", "guests"),
            ],
        ),
        _dataset(
            "clients",
            "one client (migration 001 ``clients``; names and e-mail addresses not exposed)",
            "client id",
            [
                FieldSpec("country", "text", "country as recorded"),
                FieldSpec("created_at", "timestamp", "when the client was recorded (UTC)"),
            ],
        ),
        _dataset(
            "suppliers",
            "one supplier (migration 001 ``suppliers``)",
            "supplier id",
            [
                FieldSpec("kind", "text", "photographer, caterer, planner office, ..."),
                FieldSpec("capacity", "int", "events per day"),
            ],
        ),
        _dataset(
            "venues",
            "one venue (migration 001 ``venues``)",
            "venue id",
            [
                FieldSpec("capacity", "int", "events per day"),
            ],
        ),
        _dataset(
            "offices",
            "one planner office (migration 003 ``offices``)",
            "office id",
            [
                FieldSpec("city", "text", "city as recorded"),
                FieldSpec("opened_on", "date", "local date the office opened"),
            ],
        ),
        _dataset(
            "catering_events",
            "one catered event (a wedding's meal) under one booking (migration 003"
            " ``catering_events``)",
            "catering event id",
            [
                FieldSpec("booking_id", "text", "the booking it is served under"),
                FieldSpec("wedding_id", "text", "wedding id"),
                FieldSpec("menu_id", "text", "the menu served"),
                FieldSpec("event_date", "date", "local date of the event"),
                FieldSpec("covers", "int", "meals served"),
            ],
        ),
        _dataset(
            "catering_menus",
            "one menu of a caterer (migration 003 ``catering_menus``)",
            "menu id",
            [
                FieldSpec(
                    "price_per_cover_minor", "money", "price of one cover, minor units of currency"
                ),
                FieldSpec("currency", "text", "ISO 4217 code of price_per_cover_minor"),
            ],
            currency_field="currency",
        ),
        _dataset(
            "catering_ingredients",
            "one ingredient a caterer buys (migration 003 ``catering_ingredients``)",
            "ingredient id",
            [
                FieldSpec("unit", "text", "kg, l or piece"),
                FieldSpec("unit_cost_minor", "money", "cost of one unit, minor units of currency"),
                FieldSpec("currency", "text", "ISO 4217 code of unit_cost_minor"),
            ],
            currency_field="currency",
        ),
    ]
}
"""Every dataset by name."""


def describe_datasets() -> list[dict[str, object]]:
    """The allow-list as JSON (what ``GET /orgs/{org}/aggregations/datasets`` answers).

    Returns:
        One object per dataset: ``name``, ``description``, ``currency_field`` and ``fields``
        (each with ``name``, ``type``, ``description``, ``groupable``, ``grains``,
        ``metrics`` and ``filters``, the last two sorted).
    """
    out: list[dict[str, object]] = []
    for ds in DATASETS.values():
        fields = [
            {
                "name": f.name,
                "type": f.type,
                "description": f.description,
                "groupable": f.groupable,
                "grains": list(GRAINS) if f.type in ("date", "timestamp") else [],
                "metrics": sorted(f.allowed_metrics),
                "filters": sorted(f.allowed_filters),
            }
            for f in ds.fields.values()
        ]
        out.append(
            {
                "name": ds.name,
                "description": ds.description,
                "currency_field": ds.currency_field,
                "fields": fields,
            }
        )
    return out
