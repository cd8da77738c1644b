"""Schema of the ``report-requests`` topic: a request to generate a report."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any, Literal

import msgspec

from stream_app.errors import cut
from stream_app.schemas.base import Identifier, UtcDateTime
from stream_app.schemas.ids import ID_RULE, is_valid_id, quoted

REPORT_CONFIGS: dict[str, type[msgspec.Struct] | None] = {
    "monthly_booking_summary": None,
    "compliance": None,
    "venue_occupancy": None,
    "photography_business": None,
    "catering_cost": None,
    "planner_portfolio": None,
}
"""Report type → the options its requests' ``configuration`` may carry, as a msgspec Struct
(``forbid_unknown_fields=True``); ``None``: the type takes no options (only ``{}``). Part of
the wire contract; the types themselves are :mod:`stream_app.reports.registry`'s."""
REPORT_TYPES = frozenset(REPORT_CONFIGS)
OUTPUT_FORMATS = frozenset({"csv", "json", "excel", "pdf", "powerpoint"})
REPORT_REQUEST_SCHEMA_VERSIONS = frozenset({1})
FIRST_REPORT_DATE = date(1900, 1, 1)
LAST_REPORT_DATE = date(2099, 12, 31)
"""The dates a report may cover (a range outside them is refused before any query runs)."""
FILTER_DIMENSIONS = frozenset({"venue_id"})
DELIVERY_METHODS = frozenset({"email", "webhook", "sftp", "api"})
PRIORITIES: tuple[str, ...] = ("critical", "high", "normal", "low")
"""The priority lanes, most urgent first (see :mod:`stream_app.reports.lanes`)."""


class ReportRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A report to generate.

    Key on the topic: ``organization_id/report_id``.

    Attributes:
        schema_version: 1.
        report_id: caller-chosen unique id (a UUID is usual); re-sending a request with a known
            id does not generate the report twice.
        organization_id: the tenant whose data the report reads.
        user_id: who asked (for the audit log).
        report_type: one of :data:`REPORT_TYPES`.
        date_from / date_to: inclusive range of local calendar dates in the organisation's zone.
        output_formats: one or more of :data:`OUTPUT_FORMATS`, no repeats.
        priority: ``low``, ``normal``, ``high`` or ``critical``.
        requested_at: when the request was made (UTC).
        data_filters: restrictions of the report's rows, ``{dimension: [allowed values]}``;
            dimensions: :data:`FILTER_DIMENSIONS` (``venue_id``). Empty = everything.
        cache_strategy: ``use_cache`` (serve an equal earlier report while its data has not
            changed and its time to live lasts), ``refresh`` (generate, then cache the result)
            or ``skip`` (generate; the cache is neither read nor written: scheduled runs send
            ``skip``, they always read fresh data). See :mod:`stream_app.reports.cache`.
        configuration: options of the report type, validated against its struct in
            :data:`REPORT_CONFIGS`: an unknown key is an error naming it
            (``$.configuration.<key>``); a type without options accepts only ``{}``.
        delivery: where to send the finished report, the shape of a schedule's ``delivery``
            (``{"method": "email"|"webhook"|"sftp"|"api", ...}``); recorded with the report.
            ``None``: the caller downloads the files.
    """

    schema_version: int
    report_id: Identifier
    organization_id: Identifier
    user_id: Identifier
    report_type: str
    date_from: date
    date_to: date
    output_formats: list[str]
    requested_at: UtcDateTime
    priority: Literal["low", "normal", "high", "critical"] = "normal"
    data_filters: dict[str, list[str]] = {}
    cache_strategy: Literal["use_cache", "refresh", "skip"] = "use_cache"
    configuration: dict[str, Any] = {}
    delivery: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for dimension, values in self.data_filters.items():
            if dimension not in FILTER_DIMENSIONS:
                raise ValueError(
                    f"$.data_filters.{cut(dimension, 64)}: not a filter dimension"
                    f" (one of {sorted(FILTER_DIMENSIONS)})"
                )
            if not values:
                raise ValueError(f"$.data_filters.{dimension}: at least one value is required")
            bad = [v for v in values if not is_valid_id(v)]
            if bad:
                raise ValueError(
                    f"$.data_filters.{dimension}: {quoted(bad[0])} breaks the id rule ({ID_RULE})"
                )
        if self.schema_version not in REPORT_REQUEST_SCHEMA_VERSIONS:
            raise ValueError(f"$.schema_version: version {self.schema_version} is not supported")
        if self.report_type not in REPORT_TYPES:
            raise ValueError(
                f"$.report_type: {self.report_type!r} is not one of {sorted(REPORT_TYPES)}"
            )
        for name, value in (("date_from", self.date_from), ("date_to", self.date_to)):
            if not FIRST_REPORT_DATE <= value <= LAST_REPORT_DATE:
                raise ValueError(
                    f"$.{name}: must be between {FIRST_REPORT_DATE} and {LAST_REPORT_DATE}"
                )
        if self.date_to < self.date_from:
            raise ValueError("$.date_to: must not be before date_from")
        if (self.date_to - self.date_from).days > 366 * 10:
            raise ValueError("$.date_to: the range may span at most 10 years")
        if not self.output_formats:
            raise ValueError("$.output_formats: at least one format is required")
        unknown = [f for f in self.output_formats if f not in OUTPUT_FORMATS]
        if unknown:
            raise ValueError(
                f"$.output_formats: {unknown} not supported (choose from {sorted(OUTPUT_FORMATS)})"
            )
        if len(set(self.output_formats)) != len(self.output_formats):
            raise ValueError("$.output_formats: a format is listed twice")
        check_configuration(self.report_type, self.configuration)
        method = None if self.delivery is None else self.delivery.get("method")
        if self.delivery is not None and (
            not isinstance(method, str) or method not in DELIVERY_METHODS  # {} is unhashable
        ):
            raise ValueError(
                f"$.delivery.method: {str(method)[:80]!r} is not one of {sorted(DELIVERY_METHODS)}"
            )


def new_report_request(
    organization_id: str,
    user_id: str,
    report_type: str,
    date_from: date,
    date_to: date,
    output_formats: list[str],
    **options: Any,
) -> ReportRequest:
    """A version-1 :class:`ReportRequest` with a fresh report id (a UUID4), requested now (UTC).

    Args:
        options: the request's other fields (``report_id`` or ``requested_at`` to choose them,
            ``priority``, ``data_filters``, ``cache_strategy``, ``configuration``,
            ``delivery``).

    Raises:
        ValueError / msgspec.ValidationError: a field is invalid (:class:`ReportRequest`).
    """
    fields: dict[str, Any] = {
        "schema_version": 1,
        "report_id": str(uuid.uuid4()),
        "requested_at": datetime.now(UTC),
        "organization_id": organization_id,
        "user_id": user_id,
        "report_type": report_type,
        "date_from": date_from,
        "date_to": date_to,
        "output_formats": output_formats,
    }
    return ReportRequest(**{**fields, **options})


def check_configuration(report_type: str, configuration: dict[str, Any]) -> None:
    """Validate ``configuration`` against the struct of ``report_type`` in :data:`REPORT_CONFIGS`.

    Raises:
        ValueError: ``"$.configuration.<key>: ..."`` for an unknown key (naming every unknown
            key) or a value of the wrong type.
    """
    spec = REPORT_CONFIGS[report_type]
    allowed = set(spec.__struct_fields__) if spec is not None else set()
    unknown = sorted(set(configuration) - allowed)
    if unknown:
        raise ValueError(
            f"$.configuration.{unknown[0]}: unknown key(s) {unknown} for {report_type!r}"
            f" (allowed: {sorted(allowed)})"
        )
    if spec is not None:
        try:
            msgspec.convert(configuration, spec)
        except msgspec.ValidationError as exc:
            text = str(exc)
            where = text.rsplit(" - at `", 1)
            path = (
                where[1].rstrip("`").replace("$", "$.configuration", 1)
                if len(where) == 2
                else "$.configuration"
            )
            raise ValueError(f"{path}: {where[0]}") from None
