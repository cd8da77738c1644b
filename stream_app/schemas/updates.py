"""Schema of ``realtime-metrics-updates``: live metric changes and report status changes.

Both kinds share the topic (dashboards subscribe once) and are told apart by ``kind``.
Key: ``organization_id/<entity>`` (a venue for metric updates, the report id for reports).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec


class MetricWindow(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The calendar period a metric value belongs to.

    Attributes:
        grain: ``day`` or ``month`` (calendar periods in the organisation's IANA zone).
        period: ``YYYY-MM-DD`` for a day, ``YYYY-MM`` for a month.
    """

    grain: str
    period: str


class MetricValues(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Venue booking totals at one moment (see :mod:`stream_app.tables.bookings`).

    Attributes:
        bookings: count of bookings.
        cancellations: count of cancellations.
        revenue_minor: booked minus cancelled value per ISO 4217 currency, minor units.
        lead_time_days_sum / lead_time_bookings: the sum of the bookings' lead times (days
            from booking to service date) and how many bookings state one; their quotient is
            the average lead time (see :class:`stream_app.tables.bookings.VenueTotals`).
    """

    bookings: int
    cancellations: int
    revenue_minor: dict[str, int]
    lead_time_days_sum: int = 0
    lead_time_bookings: int = 0


class MetricUpdate(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One changed table row, published after the change is applied.

    Changes are coalesced over a short batch: ``old`` is the value before the first change in
    the batch and ``new`` the value after the last, so a consumer that applies ``new`` stays
    right even if it missed a message. Values are absolute, not deltas.

    Not tracked by the cyclic garbage collector (``gc=False``, as :class:`MetricValues` and
    :class:`MetricWindow`: strings, numbers and dicts of them cannot form a cycle).

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
        final: ``true`` once, when the row is an event-time window (grains ``event_*``)
            that its organisation's watermark has closed (end + grace period passed): ``new``
            is its final value and no update of it follows. ``false`` for early updates (a
            window still open, and every service-date row). A worker that crashes after
            sending a final value can send it again, with the same value.
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
    final: bool = False


class ArtifactLink(msgspec.Struct, frozen=True, kw_only=True):
    """A stored report file.

    Attributes:
        format: ``csv``, ``json``, ``excel``, ``pdf`` or ``powerpoint``.
        uri: the download path of the file, ``/orgs/<org>/reports/<id>/files/<format>``
            (relative to the API's base URL; never a local ``file://`` path).
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

CacheLevel = Literal["l1", "l2", "l3", "in_flight", "miss", "skipped"]
"""Where a report's files came from: ``l1`` the worker's in-process LRU, ``l2`` the shared
RocksDB-backed cache table, ``l3`` an earlier stored report found in PostgreSQL, ``in_flight``
an identical request generating at the same time (single flight), ``miss`` generated
(and cached), ``skipped`` generated with the cache bypassed (strategy ``skip``)."""


class CacheInfo(msgspec.Struct, frozen=True, kw_only=True):
    """How the report cache answered a request (see :mod:`stream_app.reports.cache`).

    Attributes:
        level: :data:`CacheLevel`.
        key: hex SHA-256 of the request's canonical form.
        age_s: on a hit, seconds since the reused files were generated; 0 otherwise.
        source_report_id: on a hit, the report whose files were reused.
    """

    level: CacheLevel
    key: str
    age_s: float = 0.0
    source_report_id: str | None = None


class PerformanceMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """Measured cost of one report (all wall times in milliseconds).

    Attributes:
        query_ms: waiting for PostgreSQL and the tables (organisation, venues, figures).
        processing_ms: building the report's rows from what was read (build time − query).
        rendering_ms: writing every requested file (worker thread).
        total_ms: request read → final status.
        peak_memory_bytes: peak memory of the worker above its level at the report's start,
            bytes: resident set size sampled every 5 ms (default), or Python allocations
            (tracemalloc) with ``WEDDING_REPORT_MEMORY=tracemalloc``; reports that overlap on
            one worker share the process's peak (an upper bound for each).
        cpu_ms: CPU time of the render thread (``time.thread_time``) plus CPU time of the
            event-loop thread while building (which includes other work interleaved with it:
            an upper bound).
    """

    query_ms: float
    processing_ms: float
    rendering_ms: float
    total_ms: float
    peak_memory_bytes: int
    cpu_ms: float


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
        priority: the request's lane (``critical`` … ``low``).
        attempts: generation attempts started so far (retries included).
        generated_at: when the files were generated (UTC; on a cache hit, the original's).
        data_size_bytes / data_rows: total bytes and data rows of the files.
        metadata: what the report says about itself (title, cache class, reads, data
            versions read, date range).
        cache: how the cache answered (on ``completed``).
        performance: measured cost (on ``completed`` and ``failed``).
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
    priority: str = "normal"
    attempts: int = 0
    generated_at: datetime | None = None
    data_size_bytes: int | None = None
    data_rows: int | None = None
    metadata: dict[str, Any] = {}
    cache: CacheInfo | None = None
    performance: PerformanceMetrics | None = None


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
        window: the calendar period; ``grain`` ``month`` (``YYYY-MM``, a calendar month of
            the organisation's IANA zone) or ``all`` (period ``all``: all time).
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
