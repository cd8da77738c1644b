"""Schema of ``realtime-metrics-updates``: live metric changes and report status changes.

Both kinds share the topic (dashboards subscribe once) and are told apart by ``kind``.
Key: ``organization_id/<entity>`` (a venue for metric updates, the report id for reports).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec


class MetricWindow(msgspec.Struct, frozen=True, kw_only=True):
    """The calendar period a metric value belongs to.

    Attributes:
        grain: ``day`` or ``month`` (calendar periods in the organisation's IANA zone).
        period: ``YYYY-MM-DD`` for a day, ``YYYY-MM`` for a month.
    """

    grain: str
    period: str


class MetricValues(msgspec.Struct, frozen=True, kw_only=True):
    """Venue booking totals at one moment (see :mod:`stream_app.tables.bookings`).

    Attributes:
        bookings: count of bookings.
        cancellations: count of cancellations.
        revenue_minor: booked minus cancelled value per ISO 4217 currency, minor units.
    """

    bookings: int
    cancellations: int
    revenue_minor: dict[str, int]


class MetricUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One changed table row, published after the change is applied.

    Changes are coalesced over a short batch: ``old`` is the value before the first change in
    the batch and ``new`` the value after the last, so a consumer that applies ``new`` stays
    right even if it missed a message. Values are absolute, not deltas.

    Attributes:
        kind: always ``metric_update``.
        metric: the table, e.g. ``venue_bookings``.
        organization_id: the tenant.
        key: the entity within the tenant (the venue id).
        window: the calendar period.
        old: value before the change (zeros for a new row).
        new: value after the change.
        event_time: ``occurred_at`` of the latest event folded into ``new`` (UTC).
        published_at: when this message was produced (UTC).
        events: number of events folded since the previous update of this row.
    """

    kind: Literal["metric_update"]
    metric: str
    organization_id: str
    key: str
    window: MetricWindow
    old: MetricValues
    new: MetricValues
    event_time: datetime
    published_at: datetime
    events: int


class ArtifactLink(msgspec.Struct, frozen=True, kw_only=True):
    """A stored report file.

    Attributes:
        format: ``csv``, ``json``, ``excel``, ``pdf`` or ``powerpoint``.
        uri: ``file://`` URI of the artifact in the store.
        path: path relative to the artifact store root.
        sha256: hex SHA-256 of the file's bytes.
        size_bytes: file size in bytes.
        rows: data rows written.
    """

    format: str
    uri: str
    path: str
    sha256: str
    size_bytes: int
    rows: int


ReportStatusName = Literal["queued", "processing", "completed", "failed", "cancelled"]


class ReportStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A report's status change, published on ``realtime-metrics-updates`` and ``report-results``.

    Attributes:
        kind: always ``report_status``.
        report_id / organization_id / report_type: the request's identity.
        status: ``queued`` → ``processing`` → ``completed`` | ``failed`` | ``cancelled``.
        at: when the status was reached (UTC).
        artifacts: the stored files (only on ``completed``).
        error: the cause (only on ``failed``).
        processing_ms: wall time from reading the request to this status, milliseconds.
    """

    kind: Literal["report_status"]
    report_id: str
    organization_id: str
    report_type: str
    status: ReportStatusName
    at: datetime
    artifacts: list[ArtifactLink] = []
    error: str | None = None
    processing_ms: float | None = None


class GenericMetricUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One changed row of a table other than ``venue_bookings``, published after the change.

    Same coalescing and semantics as :class:`MetricUpdate` (absolute values, ``old`` before the
    batch's first change, ``new`` after its last), with the values as a JSON object whose shape
    is the table's (documented in its module under :mod:`stream_app.tables`): integers
    (counts, minor units), objects of integers keyed by currency, score, supplier or person,
    ISO 8601 timestamps or nulls; never floats.

    Attributes:
        kind: always ``generic_metric_update`` (tells it apart from ``metric_update``).
        metric: the table: ``booking_payments``, ``client_interactions`` or
            ``supplier_activity``.
        organization_id: the tenant.
        key: the entity within the tenant (booking, client or supplier id).
        window: the calendar period; ``grain`` ``month`` (UTC calendar month ``YYYY-MM``) or
            ``all`` (period ``all``: all time).
        old: values before the change (``{}`` for a new row).
        new: values after the change.
        event_time: ``occurred_at`` of the latest event folded into ``new`` (UTC).
        published_at: when this message was produced (UTC).
        events: number of events folded since the previous update of this row.
    """

    kind: Literal["generic_metric_update"]
    metric: str
    organization_id: str
    key: str
    window: MetricWindow
    old: dict[str, Any]
    new: dict[str, Any]
    event_time: datetime
    published_at: datetime
    events: int
