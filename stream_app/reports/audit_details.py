"""What the audit log records of a report request and of a report's status changes.

Part of the reports layer; pure functions (the rows are written by
:func:`stream_app.db.audit_events.record`). Only settings, ids and counts: the values of
``data_filters`` (venue ids today, possibly client ids later) and error texts are left out,
because the audit log cannot be erased (GDPR Art. 17).
"""

from __future__ import annotations

from typing import Any, Literal

from stream_app.schemas.reports import ReportRequest

Channel = Literal["http", "kafka", "schedule"]
"""Where a request entered: the HTTP API, a producer of ``report-requests`` (the
``wedding-engine report`` command and any other), or the scheduler (a schedule's run)."""

REPORT_AGENT_ACTOR = "report-agent"
"""The actor of status changes made by the report pipeline (processing, completed, failed)."""


def request_details(req: ReportRequest, channel: Channel) -> dict[str, Any]:
    """The details of a ``report.requested`` event: channel, type, range, formats, priority,
    cache strategy and the names (not values) of the filters and configuration options."""
    return {
        "channel": channel,
        "report_type": req.report_type,
        "date_from": req.date_from.isoformat(),
        "date_to": req.date_to.isoformat(),
        "output_formats": list(req.output_formats),
        "priority": req.priority,
        "cache_strategy": req.cache_strategy,
        "filter_fields": sorted(req.data_filters),
        "configuration_keys": sorted(req.configuration),
        "delivery_method": _method(req.delivery),
    }


def _method(delivery: dict[str, Any] | None) -> str | None:
    method = None if delivery is None else delivery.get("method")
    return method[:16] if isinstance(method, str) else None


def status_details(
    status: str, report_type: str, *, formats: list[str] | None = None, attempts: int = 0
) -> dict[str, Any]:
    """The details of a ``report.status`` event: the new status, the type, the formats
    produced (``completed``) and the attempts made."""
    out: dict[str, Any] = {"status": status, "report_type": report_type}
    if formats is not None:
        out["formats"] = sorted(formats)
    if attempts:
        out["attempts"] = attempts
    return out
