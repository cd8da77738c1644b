"""Rollups (pre-aggregations on Cube's model): definitions, matching, and their SQL.

Part of the query layer (reports); it touches no database (:mod:`.rollup_store` does). A
rollup is a dataset, dimensions (groupable ``text``/``int`` fields), an optional time
dimension with a grain, and additive measures::

    {"dataset": "bookings",
     "dimensions": ["venue_id", "status"],
     "time_dimension": {"field": "service_date", "grain": "month"},
     "measures": [{"op": "count"}, {"op": "sum", "field": "amount_minor"},
                  {"op": "avg", "field": "amount_minor"}, {"op": "max", "field": "nights"}]}

Measures are ``count`` (rows, or with a field rows where it is not null), ``sum``, ``min``,
``max`` and ``avg`` (stored as ``sum`` and ``count`` of the field): each can be recombined
exactly from the rollup's rows. ``distinct_count`` and percentiles cannot (a distinct count
or a percentile of groups is not one of their union) and are refused. A rollup with a money
measure always has the currency among its dimensions (as the base query groups by it).

An aggregation is answered from a rollup only when :func:`mismatch` finds nothing: same
dataset, no sample; every group field, filter field and the time range's field present in
the rollup; the requested grain derivable from the rollup's (a coarser grain from a finer
one: ``day`` gives every grain, ``month`` gives ``month`` and ``year``, ``week`` only
``week``), computed in the organisation's zone; a time range whose ends fall on the rollup's
bucket bounds; every metric additive and stored. The SQL then re-aggregates the rollup's rows
with the same select list as the base query (:func:`compile_from_rollup`), so the result
columns, their order and their values are those of the base query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any

import msgspec

from stream_app.aggregation.compiler import (
    CompiledQuery,
    _field,
    _filter_sql,
    _Params,
    _parse_date,
    compile_request,
)
from stream_app.aggregation.datasets import DATASETS, GRAINS, FieldSpec
from stream_app.aggregation.request import AggregationError, AggregationRequest, GroupKey
from stream_app.schemas.base import EventValidationError, decode_event

MAX_DIMENSIONS = 8
MAX_MEASURES = 30
ADDITIVE = ("count", "sum", "min", "max", "avg")
"""Measure operators a rollup may hold (``avg`` is stored as ``sum`` and ``count``)."""
NOT_ADDITIVE = frozenset({"distinct_count", "percentile", "percentile_cont", "percentile_disc"})

DERIVABLE: dict[str, frozenset[str]] = {
    "day": frozenset({"day", "week", "month", "year"}),
    "week": frozenset({"week"}),
    "month": frozenset({"month", "year"}),
    "year": frozenset({"year"}),
}
"""Requested grains each rollup grain can answer (weeks straddle months and years)."""

NO_PERIOD = "'-infinity'::date"
"""The bucket of rows whose time field is NULL, and of every row of a rollup without a time
dimension (``rollup_rows.period`` is NOT NULL)."""

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class MeasureSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``{"op": "sum", "field": "amount_minor"}``; ``{"op": "count"}`` counts rows."""

    op: Name
    field: Name | None = None


class TimeDimension(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``{"field": "service_date", "grain": "month"}``: a date/timestamp field and its grain."""

    field: Name
    grain: Name


class RollupDefinition(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A rollup as an admin sends it (``POST /orgs/{org}/rollups``), see the module docstring."""

    dataset: Name
    measures: Annotated[list[MeasureSpec], msgspec.Meta(min_length=1, max_length=MAX_MEASURES)]
    dimensions: Annotated[list[Name], msgspec.Meta(max_length=MAX_DIMENSIONS)] = msgspec.field(
        default_factory=list
    )
    time_dimension: TimeDimension | None = None


@dataclass(frozen=True, slots=True)
class Rollup:
    """A checked rollup in canonical form.

    Attributes:
        dataset: the dataset it aggregates.
        dimensions: its group fields, sorted (``currency`` added for money measures).
        time_field / time_type / grain: the time dimension (all None without one).
        measures: stored ``(op, field)`` pairs, sorted; ``avg`` expanded to sum and count.
    """

    dataset: str
    dimensions: tuple[str, ...]
    time_field: str | None
    time_type: str | None
    grain: str | None
    measures: tuple[tuple[str, str | None], ...]

    def to_json(self) -> dict[str, Any]:
        """The canonical definition (what is stored and listed)."""
        return {
            "dataset": self.dataset,
            "dimensions": list(self.dimensions),
            "time_dimension": (
                None if self.time_field is None else {"field": self.time_field, "grain": self.grain}
            ),
            "measures": [
                {"op": op} if field is None else {"op": op, "field": field}
                for op, field in self.measures
            ],
        }


def measure_key(op: str, field: str | None) -> str:
    """The key of a stored measure in ``rollup_rows.measures`` (``count``, ``sum_amount_minor``)."""
    return op if field is None else f"{op}_{field}"


def decode_definition(raw: bytes) -> Rollup:
    """Decode and check a rollup definition body.

    Raises:
        AggregationError: bad JSON, an unknown dataset or field, a field that cannot be a
            dimension, a non-additive measure (``field`` is the JSON path).
    """
    try:
        definition = decode_event(raw, RollupDefinition)
    except EventValidationError as exc:
        code = "invalid_json" if exc.reason.startswith("not valid JSON") else "invalid_field"
        raise AggregationError(exc.field, exc.reason, code) from None
    return check_definition(definition)


def definition_from_dict(body: dict[str, Any]) -> Rollup:
    """:func:`decode_definition` of a JSON-like dict (the Python API)."""
    return decode_definition(msgspec.json.encode(body))


def check_definition(definition: RollupDefinition) -> Rollup:
    """Check a definition against the allow-list and return its canonical form.

    Raises:
        AggregationError: as :func:`decode_definition`.
    """
    ds = DATASETS.get(definition.dataset)
    if ds is None:
        raise AggregationError(
            "$.dataset", f"unknown dataset {definition.dataset!r} (known: {sorted(DATASETS)})"
        )
    dims: set[str] = set()
    for i, name in enumerate(definition.dimensions):
        spec = _field(ds, name, f"$.dimensions[{i}]")
        if not spec.groupable or spec.type not in ("text", "int"):
            raise AggregationError(
                f"$.dimensions[{i}]",
                f"{name!r} cannot be a dimension (groupable text or int fields only; "
                "dates and timestamps go in time_dimension)",
            )
        dims.add(name)
    time_field = time_type = grain = None
    if definition.time_dimension is not None:
        td = definition.time_dimension
        spec = _field(ds, td.field, "$.time_dimension.field")
        if spec.type not in ("date", "timestamp") or not spec.groupable:
            raise AggregationError(
                "$.time_dimension.field", f"{td.field!r} is not a date or timestamp field"
            )
        if td.grain not in GRAINS:
            raise AggregationError(
                "$.time_dimension.grain", f"unknown grain {td.grain!r} (known: {list(GRAINS)})"
            )
        time_field, time_type, grain = td.field, spec.type, td.grain
    measures: set[tuple[str, str | None]] = set()
    money = False
    for i, m in enumerate(definition.measures):
        path = f"$.measures[{i}]"
        if m.op in NOT_ADDITIVE:
            raise AggregationError(
                f"{path}.op",
                f"{m.op} is not additive: it cannot be recombined from a rollup's groups "
                f"(rollup measures: {list(ADDITIVE)})",
            )
        if m.op not in ADDITIVE:
            raise AggregationError(
                f"{path}.op", f"unknown measure {m.op!r} (known: {list(ADDITIVE)})"
            )
        if m.field is None:
            if m.op != "count":
                raise AggregationError(f"{path}.field", f"{m.op} needs a field", "missing_field")
            measures.add(("count", None))
            continue
        spec = _field(ds, m.field, f"{path}.field")
        if m.op not in spec.allowed_metrics:
            raise AggregationError(
                f"{path}.op",
                f"{m.op!r} is not allowed on {spec.type} field {spec.name!r} "
                f"(allowed: {sorted(spec.allowed_metrics)})",
            )
        money = money or (spec.type == "money" and m.op != "count")
        if m.op == "avg":
            measures.update({("sum", m.field), ("count", m.field)})
        else:
            measures.add((m.op, m.field))
    if money and ds.currency_field is not None:
        dims.add(ds.currency_field)
    return Rollup(
        dataset=ds.name,
        dimensions=tuple(sorted(dims)),
        time_field=time_field,
        time_type=time_type,
        grain=grain,
        measures=tuple(sorted(measures, key=lambda m: (m[0], m[1] or ""))),
    )


def rollup_from_json(definition: dict[str, Any]) -> Rollup:
    """A stored canonical definition back as a :class:`Rollup` (no re-checking needed, but
    it is checked anyway: the allow-list may have narrowed since)."""
    return definition_from_dict(definition)


# --------------------------------------------------------------------------- matching


def _aligned(lo: date, hi: date, grain: str) -> bool:
    """Whether [lo, hi] is a union of whole buckets of ``grain``."""
    after = hi + timedelta(days=1)
    if grain == "day":
        return True
    if grain == "week":
        return lo.isoweekday() == 1 and after.isoweekday() == 1
    if grain == "month":
        return lo.day == 1 and after.day == 1
    return (lo.month, lo.day) == (1, 1) and (after.month, after.day) == (1, 1)


def mismatch(request: AggregationRequest, rollup: Rollup) -> str | None:
    """Why ``rollup`` cannot answer ``request`` exactly, or None when it can.

    The request is assumed valid (:func:`~.compiler.compile_request` accepted it).
    """
    if request.dataset != rollup.dataset:
        return f"dataset {request.dataset!r} is not the rollup's {rollup.dataset!r}"
    if request.sample is not None:
        return "a sampled request is answered from the rows"
    ds = DATASETS[request.dataset]
    dims = set(rollup.dimensions)
    for key in request.group_by:
        gk = key if isinstance(key, GroupKey) else GroupKey(field=key)
        if gk.field in dims and gk.grain is None:
            continue
        if gk.field != rollup.time_field:
            return f"group field {gk.field!r} is not a dimension of the rollup"
        assert rollup.grain is not None
        grain = gk.grain if gk.grain is not None else "day"  # a date grouped as it is
        if grain not in DERIVABLE[rollup.grain]:
            return f"grain {grain!r} cannot be derived from the rollup's {rollup.grain!r}"
    for i, flt in enumerate(request.filters):
        if flt.field in dims:
            continue
        if flt.field == rollup.time_field and rollup.time_type == "date" and rollup.grain == "day":
            continue
        return f"filters[{i}] field {flt.field!r} is not a dimension of the rollup"
    if request.time_range is not None:
        tr = request.time_range
        if tr.field != rollup.time_field:
            return f"time_range field {tr.field!r} is not the rollup's time dimension"
        assert rollup.grain is not None
        lo = _parse_date(tr.date_from, "$.time_range.from")
        hi = _parse_date(tr.date_to, "$.time_range.to")
        if not _aligned(lo, hi, rollup.grain):
            return f"time_range does not fall on whole {rollup.grain}s of the rollup"
    stored = set(rollup.measures)
    for i, m in enumerate(request.metrics):
        if m.op in NOT_ADDITIVE:
            return f"metrics[{i}] {m.op} is not additive"
        needed = [("sum", m.field), ("count", m.field)] if m.op == "avg" else [(m.op, m.field)]
        for need in needed:
            if need not in stored:
                return f"metrics[{i}] needs measure {measure_key(*need)!r}, not in the rollup"
    money = any(
        m.field is not None
        and m.op not in ("count", "distinct_count")
        and ds.fields[m.field].type == "money"
        for m in request.metrics
    )
    if money and ds.currency_field is not None and ds.currency_field not in dims:
        return "money metrics group by currency, which is not a dimension of the rollup"
    return None


# --------------------------------------------------------------------------- SQL

_CAST = {"text": "", "int": "::bigint", "money": "::bigint", "date": "::date"}
DATE_ORIGIN = "DATE '2000-01-01'"
"""Dates are stored as days after this day, timestamps as microseconds after the Unix epoch
(exact integers in ``numeric``; decoded by :func:`_decoded`)."""


def _dim_sql(rollup: Rollup, spec: FieldSpec) -> str:
    index = rollup.dimensions.index(spec.name) + 1
    return f"dims[{index}]{_CAST[spec.type]}"


def _measure_index(rollup: Rollup, op: str, field: str | None) -> int:
    return rollup.measures.index((op, field)) + 1


def _encoded(op: str, col: str, field_type: str | None) -> str:
    """A base aggregate as the ``numeric`` stored in ``rollup_rows.measures``."""
    expr = f"{op}({col})"
    if field_type == "date":
        return f"({expr} - {DATE_ORIGIN})::numeric"
    if field_type == "timestamp":
        return f"(extract(epoch FROM {expr}) * 1000000)::numeric"
    return f"{expr}::numeric"


def _decoded(expr: str, field_type: str | None) -> str:
    """The inverse of :func:`_encoded` over an aggregate of stored values."""
    if field_type == "date":
        return f"({DATE_ORIGIN} + ({expr})::integer)"
    if field_type == "timestamp":
        return f"('epoch'::timestamptz + (({expr})::text || ' microseconds')::interval)"
    return f"({expr})::bigint"  # a minimum or maximum of int or money values


def bucket_sql(rollup: Rollup, zone_param: str) -> str:
    """The bucket of a base row (``rollup_rows.period``); ``zone_param`` is the zone's
    placeholder. Mirrors the trigger of migration 017 and the compiler's grain SQL."""
    if rollup.time_field is None:
        return NO_PERIOD
    ds = DATASETS[rollup.dataset]
    col = ds.fields[rollup.time_field].column
    source = col if rollup.time_type == "date" else f"({col} AT TIME ZONE {zone_param})"
    return f"coalesce(date_trunc('{rollup.grain}', {source})::date, {NO_PERIOD})"


def build_sql(rollup: Rollup, partial: bool) -> str:
    """``INSERT … SELECT`` computing the rollup's rows from the base table.

    Parameters: ``$1`` organisation, ``$2`` rollup id, ``$3`` the zone (text), and when
    ``partial`` ``$4`` the buckets (``date[]``) to compute.
    """
    ds = DATASETS[rollup.dataset]
    bucket = bucket_sql(rollup, "$3::text")
    measures = []
    for op, field in rollup.measures:
        if field is None:
            measures.append("count(*)::numeric")
        else:
            spec = ds.fields[field]
            kind = spec.type if op in ("min", "max") else None
            measures.append(_encoded(op, spec.column, kind))
    groups = ", ".join(["1", *(ds.fields[d].column for d in rollup.dimensions)])
    where = "organization_id = $1"
    if rollup.time_type != "timestamp":
        where += " AND $3::text IS NOT NULL"  # the zone, unused by date buckets
    if partial:
        where += f" AND {bucket} = ANY($4::date[])"
    sql = (
        f"SELECT {bucket} AS period"
        + "".join(f", {ds.fields[d].column}" for d in rollup.dimensions)
        + f", ARRAY[{', '.join(measures)}]::numeric[] AS measures"
        f" FROM {ds.table} WHERE {where} GROUP BY {groups}"
    )
    dim_refs = ", ".join(f"g.{ds.fields[d].column}::text" for d in rollup.dimensions)
    return (
        "INSERT INTO rollup_rows (organization_id, rollup_id, period, dims, measures)"
        f" SELECT $1, $2, g.period, ARRAY[{dim_refs}]::text[], g.measures FROM ({sql}) g"
    )


def compile_from_rollup(
    request: AggregationRequest,
    rollup: Rollup,
    rollup_id: int,
    organization_id: str,
    time_zone: str,
) -> CompiledQuery:
    """The request as a query over ``rollup_rows`` with the base query's columns.

    The request must match (:func:`mismatch` is None). Parameters: ``$1`` organisation,
    ``$2`` rollup id, then the filter values and the limit.

    Raises:
        AggregationError: the request is invalid (as :func:`~.compiler.compile_request`).
    """
    base = compile_request(request, organization_id, time_zone)
    ds = DATASETS[request.dataset]
    params = _Params(organization_id)
    rid = params.add(rollup_id, "bigint")
    period = f"NULLIF(period, {NO_PERIOD})"
    select: list[str] = []
    for key in request.group_by:
        gk = key if isinstance(key, GroupKey) else GroupKey(field=key)
        spec = ds.fields[gk.field]
        if gk.field == rollup.time_field:
            grain = gk.grain if gk.grain is not None else "day"
            if grain == rollup.grain:
                select.append(period)
            else:
                select.append(f"NULLIF(date_trunc('{grain}', period)::date, {NO_PERIOD})")
        else:
            select.append(_dim_sql(rollup, spec))
    if base.currency_grouped:
        assert ds.currency_field is not None
        select.append(_dim_sql(rollup, ds.fields[ds.currency_field]))

    def measure(op: str, field: str | None) -> str:
        return f"measures[{_measure_index(rollup, op, field)}]"

    for m in request.metrics:
        if m.op == "count" or m.field is None:
            select.append(f"coalesce(sum({measure('count', m.field)}), 0)::bigint")
        elif m.op == "sum":
            select.append(f"sum({measure('sum', m.field)})")
        elif m.op == "avg":
            select.append(f"sum({measure('sum', m.field)})")
            select.append(f"coalesce(sum({measure('count', m.field)}), 0)::bigint")
        else:
            kind = ds.fields[m.field].type
            select.append(_decoded(f"{m.op}({measure(m.op, m.field)})", kind))
    positions = {p for e in base.extracts for p in e.positions}
    assert len(select) == len(positions), (select, base.extracts)

    where = ["organization_id = $1", f"rollup_id = {rid}"]
    for i, flt in enumerate(request.filters):
        spec = ds.fields[flt.field]
        column = period if flt.field == rollup.time_field else _dim_sql(rollup, spec)
        where.append(_filter_sql(spec, flt, f"$.filters[{i}]", params, column))
    if request.time_range is not None:
        lo = _parse_date(request.time_range.date_from, "$.time_range.from")
        hi = _parse_date(request.time_range.date_to, "$.time_range.to")
        where.append(f"period BETWEEN {params.add(lo, 'date')} AND {params.add(hi, 'date')}")
    cols = ", ".join(f"{expr} AS c{i}" for i, expr in enumerate(select))
    sql = f"SELECT {cols} FROM rollup_rows WHERE {' AND '.join(where)}"
    n_groups = len(request.group_by) + (1 if base.currency_grouped else 0)
    if n_groups:
        ordinals = ", ".join(str(i + 1) for i in range(n_groups))
        sql += f" GROUP BY {ordinals} ORDER BY {ordinals}"
    sql += f" LIMIT {params.add(request.limit + 1, 'bigint')}"
    return CompiledQuery(
        sql=sql,
        params=tuple(params.values),
        columns=base.columns,
        extracts=base.extracts,
        limit=base.limit,
        currency_grouped=base.currency_grouped,
        sample=None,
    )


def proposal_for(request: AggregationRequest) -> dict[str, Any] | None:
    """The smallest rollup definition that answers ``request`` (the optimiser's proposal), or
    None when it has non-additive metrics or a sample.

    Dimensions: the request's plain group and filter fields; time dimension: the grouped or
    time-ranged date/timestamp field at the request's grain (``day`` when it is grouped
    without one or filtered on, or when a time range does not fall on whole periods);
    measures: the request's metrics.
    """
    if request.sample is not None or any(m.op in NOT_ADDITIVE for m in request.metrics):
        return None
    ds = DATASETS.get(request.dataset)
    if ds is None:
        return None
    dims: list[str] = []
    time_field: str | None = None
    grain: str | None = None
    for key in request.group_by:
        gk = key if isinstance(key, GroupKey) else GroupKey(field=key)
        spec = ds.fields.get(gk.field)
        if spec is None:
            return None
        if spec.type in ("date", "timestamp"):
            if time_field not in (None, gk.field):
                return None  # two time fields: no single time dimension
            time_field, grain = gk.field, gk.grain or "day"
        elif gk.field not in dims:
            dims.append(gk.field)
    for flt in request.filters:
        spec = ds.fields.get(flt.field)
        if spec is None:
            return None
        if spec.type in ("date", "timestamp"):
            if time_field not in (None, flt.field) or spec.type == "timestamp":
                return None
            time_field, grain = flt.field, "day"
        elif flt.field not in dims:
            dims.append(flt.field)
    if request.time_range is not None:
        tr = request.time_range
        if time_field not in (None, tr.field):
            return None
        time_field = tr.field
        grain = grain or "month"
        lo, hi = date.fromisoformat(tr.date_from), date.fromisoformat(tr.date_to)
        for candidate in (grain, "month", "day"):
            if _aligned(lo, hi, candidate) and grain in DERIVABLE[candidate]:
                grain = candidate
                break
        else:
            grain = "day"
    measures = [
        {"op": m.op} if m.field is None else {"op": m.op, "field": m.field} for m in request.metrics
    ]
    body: dict[str, Any] = {"dataset": ds.name, "dimensions": dims, "measures": measures}
    if time_field is not None:
        body["time_dimension"] = {"field": time_field, "grain": grain}
    return body
