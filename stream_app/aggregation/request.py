"""The aggregation request: its JSON shape (msgspec Structs) and the decoding of a body.

Shape checks (types, ranges, unknown keys) happen here with msgspec; whether the named
dataset, fields, operators and grains exist and fit together is checked by
:mod:`stream_app.aggregation.compiler`. Both raise :class:`AggregationError` naming the JSON
path of the offending value.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from stream_app.errors import WeddingError
from stream_app.schemas.base import EventValidationError, decode_event, known_fields

MAX_GROUP_BY = 6
MAX_METRICS = 20
MAX_FILTERS = 20
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
"""A dataset, field, operator or grain name (its allow-listing is the compiler's)."""
Alias = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
"""An output column name chosen by the caller."""


class AggregationError(WeddingError, ValueError):
    """A request that cannot be run as it is (HTTP 400).

    Attributes:
        field: JSON path of the offending value (``$.metrics[2].field``), ``$`` for the body.
        reason: what is wrong, in words.
        code: ``invalid_field`` (bad value), ``missing_field``, or ``invalid_json``.
    """

    retriable = False

    def __init__(self, field: str, reason: str, code: str = "invalid_field") -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.code = code


class GroupKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A group-by field with a time grain: ``{"field": "service_date", "grain": "month"}``.

    Attributes:
        field: a groupable field of the dataset.
        grain: ``day``, ``week`` (ISO 8601), ``month`` or ``year``; only on date/time fields,
            required for ``timestamp`` fields.
        alias: the output column's name (default ``<field>_<grain>``, or ``<field>``).
    """

    field: Name
    grain: Name | None = None
    alias: Alias | None = msgspec.field(default=None, name="as")


class Metric(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One figure per group: ``{"op": "sum", "field": "amount_minor"}``.

    Attributes:
        op: ``count`` (rows; with a field: rows where it is not null), ``sum``, ``avg``,
            ``min``, ``max``, ``distinct_count``, ``percentile`` (= ``percentile_cont``),
            ``percentile_cont`` (linear interpolation), ``percentile_disc`` (a value of the
            column); the allowed ones depend on the field's type.
        field: the field it is computed over (required except for ``count``).
        p: the percentile's fraction, 0..1 (required for percentiles only).
        alias: the output column's name (default e.g. ``sum_amount_minor``, ``p90_amount_minor``).
    """

    op: Name
    field: Name | None = None
    p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    alias: Alias | None = msgspec.field(default=None, name="as")


class Filter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A row condition: ``{"field": "status", "op": "in", "value": ["booked"]}``.

    Attributes:
        field: a field of the dataset.
        op: ``eq``, ``ne``, ``in``, ``not_in`` (a list of 1..1,000 values), ``lt``, ``lte``,
            ``gt``, ``gte``, ``between`` (``[low, high]``, inclusive), ``is_null``,
            ``is_not_null`` (no value).
        value: of the field's type: text → string, int and money → integer (minor units),
            date → ``YYYY-MM-DD``, timestamp → ISO 8601 with an offset. Always sent as a
            query parameter, never spliced into SQL.
    """

    field: Name
    op: Name
    value: Any = None


class TimeRange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Inclusive local dates of the organisation: ``{"field", "from", "to"}``.

    A ``timestamp`` field is compared with the organisation-zone midnight of ``from`` and of
    the day after ``to``; a ``date`` field with the dates themselves.
    """

    field: Name
    date_from: str = msgspec.field(name="from")
    date_to: str = msgspec.field(name="to")


class Sample(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``TABLESAMPLE``: read about ``percent`` % of the rows; the results are then estimates.

    Attributes:
        percent: 0 < percent <= 100.
        seed: ``REPEATABLE`` seed: the same seed on unchanged data reads the same rows.
        method: ``bernoulli`` (each row with probability percent/100; default) or ``system``
            (whole pages: faster, clumpier).
    """

    percent: Annotated[float, msgspec.Meta(gt=0, le=100)]
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    method: Literal["bernoulli", "system"] = "bernoulli"


class AggregationRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An aggregation over one dataset of one organisation (see the package docstring).

    Attributes:
        dataset: ``bookings``, ``payments``, ``feedback``, ``weddings``, ``clients``,
            ``suppliers``, ``venues``.
        metrics: 1..20 metrics.
        group_by: 0..6 field names or :class:`GroupKey`.
        filters: 0..20 filters, all of which must hold.
        time_range: optional date range on one date/timestamp field.
        sample: optional sampling.
        limit: at most this many result rows (1..10,000; default 1,000); ``truncated`` in the
            result says whether there were more.
    """

    dataset: Name
    metrics: Annotated[list[Metric], msgspec.Meta(min_length=1, max_length=MAX_METRICS)]
    group_by: Annotated[list[Name | GroupKey], msgspec.Meta(max_length=MAX_GROUP_BY)] = (
        msgspec.field(default_factory=list)
    )
    filters: Annotated[list[Filter], msgspec.Meta(max_length=MAX_FILTERS)] = msgspec.field(
        default_factory=list
    )
    time_range: TimeRange | None = None
    sample: Sample | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT


def decode_request(raw: bytes) -> AggregationRequest:
    """Decode and shape-check a JSON request body.

    Raises:
        AggregationError: not JSON (``invalid_json``), a missing key (``missing_field``), an
            unknown key, a wrong type or an out-of-range number (``invalid_field``); ``field``
            is the JSON path.
    """
    try:
        return decode_event(raw, AggregationRequest)
    except EventValidationError as exc:
        reason = exc.reason
        if reason.startswith("not valid JSON"):
            raise AggregationError(exc.field, reason, "invalid_json") from None
        if reason == "required field is missing":
            raise AggregationError(exc.field, reason, "missing_field") from None
        if reason == "unknown field":  # no near miss to suggest: the keys that are known
            known = known_fields(AggregationRequest, exc.field.rpartition(".")[0])
            if known:
                reason += f" (known: {', '.join(known)})"
            raise AggregationError(exc.field, reason) from None
        # name the key itself, not the object holding it
        unknown = _UNKNOWN_RE.match(reason)
        if unknown:
            path = f"{exc.field}.{unknown.group(1)}"
            raise AggregationError(path, "unknown field") from None
        missing = _MISSING_RE.match(reason)
        if missing:
            path = f"{exc.field}.{missing.group(1)}"
            raise AggregationError(path, "required field is missing", "missing_field") from None
        raise AggregationError(exc.field, reason) from None


_UNKNOWN_RE = re.compile(r"^Object contains unknown field `([^`]+)`$")
_MISSING_RE = re.compile(r"^Object missing required field `([^`]+)`$")


def request_from_dict(body: dict[str, Any]) -> AggregationRequest:
    """Build a request from a JSON-like dict (the Python API's entry); errors as above."""
    return decode_request(msgspec.json.encode(body))
