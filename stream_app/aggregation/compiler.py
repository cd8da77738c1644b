"""Compile an :class:`AggregationRequest` into one parameterised SQL statement.

Part of the query layer (reports); it touches no database. What reaches the SQL text:

- table and column identifiers from the allow-list (:mod:`stream_app.aggregation.datasets`),
  never from the request;
- fixed SQL fragments chosen by operator, metric and grain names that were checked against
  closed sets first;
- ``$n`` placeholders for every value (organisation id, filter values, dates, the zone,
  percentile fractions, sample size and seed, the limit).

The organisation is always the first predicate (``organization_id = $1``); the statement is
run inside :func:`stream_app.db.tenancy.tenant_transaction`, so row-level security is a
second wall (see :mod:`stream_app.aggregation.engine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from stream_app.aggregation.datasets import (
    DATASETS,
    GRAINS,
    Dataset,
    FieldSpec,
    FieldType,
    FilterOp,
    MetricOp,
)
from stream_app.aggregation.request import (
    AggregationError,
    AggregationRequest,
    Filter,
    GroupKey,
    Metric,
    Sample,
)

MAX_IN_VALUES = 1_000
MAX_TEXT_VALUE = 200
MAX_ABS_INT = 10**15
"""The largest absolute integer a filter may compare with (amounts are at most 10^15)."""

OutputType = Literal[
    "text",
    "int",
    "money_minor",
    "decimal",
    "date",
    "timestamp",
    "day",
    "week",
    "month",
    "year",
]
Convert = Literal[
    "plain", "int", "date", "timestamp", "avg", "float", "day", "week", "month", "year"
]

GRAIN_LABELS = {
    "day": "YYYY-MM-DD",
    "week": "YYYY-Www (ISO 8601 week-numbering year and week)",
    "month": "YYYY-MM",
    "year": "YYYY",
}
"""Labels of the grains. SQL groups by ``date_trunc(grain, …)::date`` (the period's first day;
PostgreSQL's ``week`` starts on the ISO Monday) and the engine writes the label from that
date in Python: cheaper per row than formatting in SQL."""

_SQL_TYPE: dict[FieldType, str] = {
    "text": "text",
    "int": "bigint",
    "money": "bigint",
    "date": "date",
    "timestamp": "timestamptz",
}
_COMPARE = {"eq": "=", "ne": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_SIMPLE_METRIC = {"min": "min", "max": "max", "sum": "sum"}
_PERCENTILE_SQL = {
    "percentile": "percentile_cont",
    "percentile_cont": "percentile_cont",
    "percentile_disc": "percentile_disc",
}
_METRIC_OPS: tuple[str, ...] = get_args(MetricOp)
_FILTER_OPS_ALL: tuple[str, ...] = get_args(FilterOp)


@dataclass(frozen=True, slots=True)
class OutputColumn:
    """A column of the result.

    Attributes:
        name: the key in each result row.
        type: ``text``; ``int``; ``money_minor`` (exact integer, minor units of the row's
            ``currency``); ``decimal`` (exact decimal string, e.g. an average, or a
            ``percentile_cont`` of an amount in minor units); ``date`` (``YYYY-MM-DD``);
            ``timestamp`` (ISO 8601, UTC); grain labels ``day`` (``YYYY-MM-DD``), ``week``
            (``YYYY-Www``, ISO 8601), ``month`` (``YYYY-MM``), ``year`` (``YYYY``).
        role: ``group`` or ``metric``.
        description: what it is, e.g. ``sum of amount_minor``.
    """

    name: str
    type: OutputType
    role: Literal["group", "metric"]
    description: str


@dataclass(frozen=True, slots=True)
class Extract:
    """How a result cell is made from the SQL row: ``convert`` of the values at ``positions``."""

    positions: tuple[int, ...]
    convert: Convert


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    """A request compiled to SQL.

    Attributes:
        sql: the statement, with ``$n`` placeholders only.
        params: the values of the placeholders, in order (``params[0]`` is the organisation).
        columns: the result's columns.
        extracts: per column, how its cell is read from the SQL row.
        limit: the requested row limit (the SQL fetches one row more to detect truncation).
        currency_grouped: the currency column was added to the groups because a money
            metric was asked for.
        sample: the request's sampling, if any.
    """

    sql: str
    params: tuple[object, ...]
    columns: tuple[OutputColumn, ...]
    extracts: tuple[Extract, ...]
    limit: int
    currency_grouped: bool
    sample: Sample | None


class _Params:
    def __init__(self, organization_id: str) -> None:
        self.values: list[object] = [organization_id]
        self._zone: str | None = None

    def add(self, value: object, sql_type: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{sql_type}"

    def zone(self, name: str) -> str:
        if self._zone is None:
            self._zone = self.add(name, "text")
        return self._zone


def _field(ds: Dataset, name: str, path: str) -> FieldSpec:
    spec = ds.fields.get(name)
    if spec is None:
        raise AggregationError(
            path, f"unknown field {name!r} of dataset {ds.name!r} (known: {sorted(ds.fields)})"
        )
    return spec


FIRST_YEAR, LAST_YEAR = 1900, 2099
"""Years a date or timestamp of a request may name (as for reports and table reads)."""


def _in_years(value: date, path: str) -> None:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise AggregationError(path, f"must be in the years {FIRST_YEAR}..{LAST_YEAR}")


def _parse_date(value: Any, path: str) -> date:
    if not isinstance(value, str) or len(value) != 10:
        raise AggregationError(path, f"expected a date YYYY-MM-DD, got {value!r}")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise AggregationError(path, f"expected a date YYYY-MM-DD, got {value!r}") from None
    _in_years(parsed, path)
    return parsed


def _parse_timestamp(value: Any, path: str) -> datetime:
    reason = f"expected an ISO 8601 timestamp with an offset, got {value!r}"
    if not isinstance(value, str) or len(value) > 40:
        raise AggregationError(path, reason)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise AggregationError(path, reason) from None
    if parsed.tzinfo is None:
        raise AggregationError(path, reason)
    _in_years(parsed.date(), path)
    return parsed


def _scalar(spec: FieldSpec, value: Any, path: str) -> object:
    """A filter value checked against the field's type (the Python value asyncpg sends)."""
    if spec.type == "text":
        if not isinstance(value, str) or len(value) > MAX_TEXT_VALUE:
            raise AggregationError(
                path, f"expected a string of at most {MAX_TEXT_VALUE} characters for {spec.name}"
            )
        if "\x00" in value:  # PostgreSQL text cannot hold it (its error named no field)
            raise AggregationError(
                path, f"a NUL character (at {value.index(chr(0)) + 1}) cannot be in text"
            )
        return value
    if spec.type in ("int", "money"):
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_ABS_INT:
            unit = " (minor units)" if spec.type == "money" else ""
            raise AggregationError(
                path, f"expected an integer{unit} of at most 10^15 for {spec.name}, got {value!r}"
            )
        return value
    if spec.type == "date":
        return _parse_date(value, path)
    return _parse_timestamp(value, path)


def _filter_sql(
    spec: FieldSpec, flt: Filter, path: str, params: _Params, column: str | None = None
) -> str:
    if flt.op not in _FILTER_OPS_ALL:
        raise AggregationError(
            f"{path}.op", f"unknown operator {flt.op!r} (known: {list(_FILTER_OPS_ALL)})"
        )
    if flt.op not in spec.allowed_filters:
        raise AggregationError(
            f"{path}.op",
            f"operator {flt.op!r} is not allowed on {spec.type} field {spec.name!r} "
            f"(allowed: {sorted(spec.allowed_filters)})",
        )
    col = spec.column if column is None else column
    sql_type = _SQL_TYPE[spec.type]
    vpath = f"{path}.value"
    if flt.op in ("is_null", "is_not_null"):
        if flt.value is not None:
            raise AggregationError(vpath, f"{flt.op} takes no value")
        return f"{col} IS NULL" if flt.op == "is_null" else f"{col} IS NOT NULL"
    if flt.value is None:
        raise AggregationError(vpath, f"{flt.op} needs a value", "missing_field")
    if flt.op in ("in", "not_in"):
        if not isinstance(flt.value, list) or not 1 <= len(flt.value) <= MAX_IN_VALUES:
            raise AggregationError(vpath, f"expected a list of 1..{MAX_IN_VALUES} values")
        values = [_scalar(spec, v, f"{vpath}[{i}]") for i, v in enumerate(flt.value)]
        placeholder = params.add(values, f"{sql_type}[]")
        test = f"{col} = ANY({placeholder})"
        return test if flt.op == "in" else f"NOT ({test})"
    if flt.op == "between":
        if not isinstance(flt.value, list) or len(flt.value) != 2:
            raise AggregationError(vpath, "expected [low, high]")
        low = _scalar(spec, flt.value[0], f"{vpath}[0]")
        high = _scalar(spec, flt.value[1], f"{vpath}[1]")
        if high < low:  # type: ignore[operator]
            raise AggregationError(f"{vpath}[1]", "high is below low")
        return f"{col} BETWEEN {params.add(low, sql_type)} AND {params.add(high, sql_type)}"
    value = _scalar(spec, flt.value, vpath)
    return f"{col} {_COMPARE[flt.op]} {params.add(value, sql_type)}"


def _time_range_sql(
    ds: Dataset, request: AggregationRequest, zone: ZoneInfo, params: _Params
) -> str | None:
    tr = request.time_range
    if tr is None:
        return None
    spec = _field(ds, tr.field, "$.time_range.field")
    if spec.type not in ("date", "timestamp"):
        raise AggregationError(
            "$.time_range.field", f"{spec.name!r} is a {spec.type} field, not a date or timestamp"
        )
    lo = _parse_date(tr.date_from, "$.time_range.from")
    hi = _parse_date(tr.date_to, "$.time_range.to")
    if hi < lo:
        raise AggregationError("$.time_range.to", "to is before from")
    if spec.type == "date":
        return f"{spec.column} BETWEEN {params.add(lo, 'date')} AND {params.add(hi, 'date')}"
    start = datetime.combine(lo, time(0), tzinfo=zone)
    end = datetime.combine(hi + timedelta(days=1), time(0), tzinfo=zone)
    return (
        f"{spec.column} >= {params.add(start, 'timestamptz')}"
        f" AND {spec.column} < {params.add(end, 'timestamptz')}"
    )


def _percent_label(p: float) -> str:
    text = f"{p * 100:.4f}".rstrip("0").rstrip(".")
    return text.replace(".", "_")


def compile_request(
    request: AggregationRequest, organization_id: str, time_zone: str
) -> CompiledQuery:
    """Check ``request`` against the allow-list and compile it.

    Args:
        request: the shape-checked request (:func:`~stream_app.aggregation.request.decode_request`).
        organization_id: the tenant; always ``$1`` and always in the predicate.
        time_zone: the organisation's IANA zone (grains of timestamps, time ranges).

    Returns:
        The statement, its parameters and the result's columns. Group columns come first
        (with ``currency`` appended when a money metric is asked for and the request does not
        group by currency already), then the metrics in request order.

    Raises:
        AggregationError: an unknown dataset, field, operator or grain, a metric or filter
            not allowed on a field's type, a value of the wrong type, duplicate output names;
            ``field`` is the JSON path of the offending value.
    """
    ds = DATASETS.get(request.dataset)
    if ds is None:
        raise AggregationError(
            "$.dataset", f"unknown dataset {request.dataset!r} (known: {sorted(DATASETS)})"
        )
    zone = ZoneInfo(time_zone)
    params = _Params(organization_id)
    select: list[str] = []
    columns: list[OutputColumn] = []
    extracts: list[Extract] = []
    names: set[str] = set()
    grouped_fields: set[str] = set()

    def emit(expr: str, column: OutputColumn, convert: Convert, path: str) -> int:
        if column.name in names:
            raise AggregationError(path, f"output column {column.name!r} appears twice")
        names.add(column.name)
        select.append(f"{expr} AS c{len(select)}")
        columns.append(column)
        extracts.append(Extract((len(select) - 1,), convert))
        return len(select) - 1

    # groups
    group_positions: list[int] = []
    for i, key in enumerate(request.group_by):
        path = f"$.group_by[{i}]"
        gk = key if isinstance(key, GroupKey) else GroupKey(field=key)
        fpath = f"{path}.field" if isinstance(key, GroupKey) else path
        spec = _field(ds, gk.field, fpath)
        if not spec.groupable:
            raise AggregationError(fpath, f"field {spec.name!r} cannot be grouped by")
        if gk.field in grouped_fields:
            raise AggregationError(fpath, f"field {spec.name!r} is grouped by twice")
        grouped_fields.add(gk.field)
        if gk.grain is not None:
            gpath = f"{path}.grain"
            if gk.grain not in GRAINS:
                raise AggregationError(gpath, f"unknown grain {gk.grain!r} (known: {list(GRAINS)})")
            if spec.type not in ("date", "timestamp"):
                raise AggregationError(
                    gpath, f"a grain needs a date or timestamp field; {spec.name!r} is {spec.type}"
                )
            source = spec.column
            if spec.type == "timestamp":
                source = f"({spec.column} AT TIME ZONE {params.zone(time_zone)})"
            if gk.grain == "day":
                expr = spec.column if spec.type == "date" else f"{source}::date"
            else:
                expr = f"date_trunc('{gk.grain}', {source})::date"
            out_type: OutputType = gk.grain
            name = gk.alias or f"{spec.name}_{gk.grain}"
            description = f"{spec.name} by {gk.grain}, {GRAIN_LABELS[gk.grain]} ({time_zone})"
            convert: Convert = gk.grain
        else:
            if spec.type == "timestamp":
                raise AggregationError(
                    fpath, f"timestamp field {spec.name!r} needs a grain (day/week/month/year)"
                )
            expr = spec.column
            out_type = "date" if spec.type == "date" else spec.type  # type: ignore[assignment]
            name = gk.alias or spec.name
            description = spec.description
            convert = "date" if spec.type == "date" else "plain"
        group_positions.append(
            emit(expr, OutputColumn(name, out_type, "group", description), convert, fpath)
        )

    # metrics (money metrics decide whether the currency joins the groups)
    money = [
        m.field is not None
        and m.op not in ("count", "distinct_count")
        and ds.fields.get(m.field) is not None
        and ds.fields[m.field].type == "money"
        for m in request.metrics
    ]
    currency_grouped = False
    if any(money) and ds.currency_field is not None:
        grouped_raw = any(
            (k if isinstance(k, str) else (k.field if k.grain is None else "")) == ds.currency_field
            for k in request.group_by
        )
        if not grouped_raw:
            cur = ds.fields[ds.currency_field]
            group_positions.append(
                emit(
                    cur.column,
                    OutputColumn(
                        cur.name, "text", "group", "ISO 4217 code (money is never summed across)"
                    ),
                    "plain",
                    "$.group_by",
                )
            )
            currency_grouped = True

    for i, metric in enumerate(request.metrics):
        _metric(ds, metric, f"$.metrics[{i}]", params, select, columns, extracts, names)

    where = ["organization_id = $1"]
    for i, flt in enumerate(request.filters):
        path = f"$.filters[{i}]"
        spec = _field(ds, flt.field, f"{path}.field")
        where.append(_filter_sql(spec, flt, path, params))
    time_sql = _time_range_sql(ds, request, zone, params)
    if time_sql is not None:
        where.append(time_sql)

    source = ds.table
    if request.sample is not None:
        method = "BERNOULLI" if request.sample.method == "bernoulli" else "SYSTEM"
        source = (
            f"{ds.table} TABLESAMPLE {method} ({params.add(request.sample.percent, 'float4')})"
            f" REPEATABLE ({params.add(request.sample.seed, 'float8')})"
        )
    sql = f"SELECT {', '.join(select)} FROM {source} WHERE {' AND '.join(where)}"
    if group_positions:
        ordinals = ", ".join(str(p + 1) for p in group_positions)
        sql += f" GROUP BY {ordinals} ORDER BY {ordinals}"
    sql += f" LIMIT {params.add(request.limit + 1, 'bigint')}"
    return CompiledQuery(
        sql=sql,
        params=tuple(params.values),
        columns=tuple(columns),
        extracts=tuple(extracts),
        limit=request.limit,
        currency_grouped=currency_grouped,
        sample=request.sample,
    )


def _metric(
    ds: Dataset,
    metric: Metric,
    path: str,
    params: _Params,
    select: list[str],
    columns: list[OutputColumn],
    extracts: list[Extract],
    names: set[str],
) -> None:
    op = metric.op
    if op not in _METRIC_OPS:
        raise AggregationError(f"{path}.op", f"unknown metric {op!r} (known: {list(_METRIC_OPS)})")
    is_percentile = op in _PERCENTILE_SQL
    if is_percentile and metric.p is None:
        raise AggregationError(f"{path}.p", f"{op} needs p (0..1)", "missing_field")
    if not is_percentile and metric.p is not None:
        raise AggregationError(f"{path}.p", f"p is only for percentiles, not {op}")
    if metric.field is None:
        if op != "count":
            raise AggregationError(f"{path}.field", f"{op} needs a field", "missing_field")
        spec = None
    else:
        spec = _field(ds, metric.field, f"{path}.field")
        if op not in spec.allowed_metrics:
            raise AggregationError(
                f"{path}.op",
                f"metric {op!r} is not allowed on {spec.type} field {spec.name!r} "
                f"(allowed: {sorted(spec.allowed_metrics)})",
            )

    def add(expr: str) -> int:
        select.append(f"{expr} AS c{len(select)}")
        return len(select) - 1

    def out(name: str, typ: OutputType, description: str, extract: Extract) -> None:
        final = metric.alias or name
        if final in names:
            raise AggregationError(
                f"{path}.as" if metric.alias else path,
                f'output column {final!r} appears twice (name one with "as")',
            )
        names.add(final)
        columns.append(OutputColumn(final, typ, "metric", description))
        extracts.append(extract)

    if spec is None:
        out("count", "int", "rows", Extract((add("count(*)"),), "int"))
        return
    col, fname = spec.column, spec.name
    numeric_type: OutputType = "money_minor" if spec.type == "money" else "int"
    unit = " (minor units)" if spec.type == "money" else ""
    if op == "count":
        out(f"count_{fname}", "int", f"rows with {fname}", Extract((add(f"count({col})"),), "int"))
    elif op == "distinct_count":
        out(
            f"distinct_count_{fname}",
            "int",
            f"distinct values of {fname}",
            Extract((add(f"count(DISTINCT {col})"),), "int"),
        )
    elif op == "sum":
        out(
            f"sum_{fname}",
            numeric_type,
            f"sum of {fname}{unit}",
            Extract((add(f"sum({col})"),), "int"),
        )
    elif op == "avg":
        pos = (add(f"sum({col})"), add(f"count({col})"))
        out(
            f"avg_{fname}",
            "decimal",
            f"mean of {fname}{unit}: exact sum / count, rounded half-even to 6 decimals",
            Extract(pos, "avg"),
        )
    elif op in ("min", "max"):
        typ: OutputType
        convert: Convert
        if spec.type in ("date", "timestamp"):
            typ, convert = spec.type, spec.type
        else:
            typ, convert = numeric_type, "int"
        out(
            f"{op}_{fname}", typ, f"{op} of {fname}{unit}", Extract((add(f"{op}({col})"),), convert)
        )
    else:
        assert metric.p is not None
        fn = _PERCENTILE_SQL[op]
        p = params.add(metric.p, "float8")
        label = _percent_label(metric.p)
        if fn == "percentile_disc":
            out(
                f"p{label}_disc_{fname}",
                numeric_type,
                f"percentile_disc({metric.p}) of {fname}{unit}: the first value whose "
                "cumulative share reaches p (PostgreSQL percentile_disc)",
                Extract((add(f"percentile_disc({p}) WITHIN GROUP (ORDER BY {col})"),), "int"),
            )
        else:
            out(
                f"p{label}_{fname}",
                "decimal",
                f"percentile_cont({metric.p}) of {fname}{unit}: linear interpolation between "
                "the two nearest values (PostgreSQL percentile_cont, in double precision)",
                Extract((add(f"percentile_cont({p}) WITHIN GROUP (ORDER BY {col})"),), "float"),
            )


def describe(columns: Sequence[OutputColumn]) -> list[dict[str, str]]:
    """The columns as JSON objects (``name``, ``type``, ``role``, ``description``)."""
    return [
        {"name": c.name, "type": c.type, "role": c.role, "description": c.description}
        for c in columns
    ]
