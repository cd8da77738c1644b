"""A report request's own delivery (the brief's ``deliveryOptions``): ``ReportRequest.delivery``.

A request may carry ``"delivery": {"method": ..., <the target's fields>, "retry": {...}}``,
the shape of a schedule's ``delivery`` plus an optional retry policy. The HTTP API checks it
when the request is accepted (permission, fields, internal hosts) and seals its secrets
(:func:`seal_request_delivery`) before the request is recorded or published, so the
``reports`` row and the ``report-requests`` topic hold sealed text only, bound to
:func:`~stream_app.delivery.sealing.adhoc_owner` of the report id.

When the report completes, :class:`AdhocDeliveries` (a
:class:`~stream_app.delivery.worker.DeliverySource`) reads the delivery from the recorded
request row (never from the ``report-results`` message) and orders it: the same queue,
retries, egress guard, sealed secrets, delivery log and audit as a schedule run's delivery,
one queue row per (organisation, report), so a redelivered result or a second worker does
not send it twice. Its outcome is the report's latest delivery log row
(:func:`delivery_summary`, shown by the report status; targets only to readers with
``deliveries:read``). A report that fails or is cancelled has nothing to deliver: its
delivery is ``skipped`` with the reason, as is an invalid delivery of a Kafka request.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date
from typing import Any, Final

import asyncpg
import msgspec
import orjson

from stream_app.crypto.keys import DataKey
from stream_app.db.tenancy import tenant_read
from stream_app.delivery.base import DeliveryOrder, DeliveryResult
from stream_app.delivery.log import report_log
from stream_app.delivery.queue import QueuedDelivery
from stream_app.delivery.redact import HIDDEN_CAUSE, clip, mask_urls, public_detail, strip_urls
from stream_app.delivery.sealing import adhoc_owner, seal_target
from stream_app.delivery.targets import (
    DeliveryTarget,
    RetryPolicy,
    TargetValidationError,
    accept_retry,
    target_from_dict,
    target_to_dict,
)
from stream_app.schemas.updates import ReportStatus

log = logging.getLogger(__name__)

SOURCE: Final = "adhoc"
"""The :class:`~stream_app.delivery.worker.DeliverySource` name of a report's own delivery."""


@dataclass(frozen=True, slots=True)
class RequestDelivery:
    """A report request's ``delivery``, validated.

    Attributes:
        target: where the report goes.
        retry: how often and how patiently to try.
    """

    target: DeliveryTarget
    retry: RetryPolicy


_AT_ROOT = re.compile(r"`\$(?=[.\[`])")
"""The root ``$`` of a path in a msgspec message (`` `$.port` ``, `` `$[0]` ``, `` `$` ``)."""


_AT_PATH = re.compile(r"(?P<message>.*) - at `(?P<path>\$[^`]*)`", re.DOTALL)
"""A msgspec message ending with the path it names."""


def _under(path: str, exc: msgspec.ValidationError) -> Exception:
    """``exc`` with the paths of its message put under ``path`` (``$.delivery``): msgspec
    names a field of the object it converted (`` `$.max_attempts` ``) or none (a missing
    field of that object), not where that object sits in the request. A
    :class:`TargetValidationError` of the object's own check (msgspec wraps it) is given back
    as it is: it names its field itself."""
    if isinstance(exc.__cause__, TargetValidationError):
        return exc.__cause__
    message = str(exc)
    if " - at `$" in message:
        return msgspec.ValidationError(_AT_ROOT.sub(f"`{path}", message))
    return msgspec.ValidationError(f"{message} - at `{path}`")


def json_path(field: str) -> str:
    """The request's JSON path of a :class:`TargetValidationError`'s ``field`` as
    :func:`parse_delivery` raises it (``delivery.url`` → ``$.delivery.url``,
    ``retry.max_attempts`` → ``$.delivery.retry.max_attempts``)."""
    inside = field if field == "delivery" or field.startswith("delivery.") else f"delivery.{field}"
    return f"$.{inside}"


def parse_delivery(value: dict[str, Any]) -> RequestDelivery:
    """The target and retry policy of a request's ``delivery`` object.

    Raises:
        TargetValidationError: a field is invalid (``delivery.<field>``, ``retry.<field>``;
            a first wait under :data:`~stream_app.delivery.targets.MIN_BASE_BACKOFF_S`;
            :func:`json_path` gives the request's path).
        msgspec.ValidationError: a field is missing or has the wrong type (a number or
            boolean given as a string too); the message names the request's path
            (`` `$.delivery.port` ``, `` `$.delivery.retry.max_attempts` ``).
    """
    fields = dict(value)
    retry = fields.pop("retry", None)
    try:
        target = target_from_dict(fields)
    except msgspec.ValidationError as exc:
        raise _under("$.delivery", exc) from None
    if retry is None:
        return RequestDelivery(target, RetryPolicy())
    if not isinstance(retry, dict):
        raise TargetValidationError("retry", "must be an object")
    try:
        policy = msgspec.convert(retry, RetryPolicy)
    except msgspec.ValidationError as exc:
        raise _under("$.delivery.retry", exc) from None
    return RequestDelivery(target, accept_retry(policy))


def delivery_to_json(delivery: RequestDelivery) -> dict[str, Any]:
    """The stored form of ``delivery`` (its secrets as they are: sealed once sealed)."""
    return {
        **target_to_dict(delivery.target),
        "retry": {
            "max_attempts": delivery.retry.max_attempts,
            "base_backoff_s": delivery.retry.base_backoff_s,
            "max_backoff_s": delivery.retry.max_backoff_s,
        },
    }


def seal_request_delivery(
    delivery: RequestDelivery, key: DataKey, report_id: str
) -> dict[str, Any]:
    """The stored form of ``delivery`` with its secrets sealed under ``key`` for
    ``report_id`` (what the ``reports`` row and ``report-requests`` carry).

    Raises:
        ValueError: ``key`` is not an organisation's key (never: the caller's own).
    """
    sealed = seal_target(delivery.target, key, adhoc_owner(report_id))
    return delivery_to_json(RequestDelivery(sealed, delivery.retry))


async def _request_row(
    conn: asyncpg.Connection, organization_id: str, report_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT report_type, request->'delivery' AS delivery, request->>'date_from' AS date_from,"
        " request->>'date_to' AS date_to, created_at FROM reports"
        " WHERE organization_id = $1 AND id = $2",
        organization_id,
        report_id,
    )


def _order(organization_id: str, report_id: str, row: asyncpg.Record) -> DeliveryOrder | None:
    raw = row["delivery"]
    value = None if raw is None else orjson.loads(raw)
    if not isinstance(value, dict):
        return None
    try:
        delivery = parse_delivery(value)
    except (ValueError, msgspec.ValidationError) as exc:  # only a Kafka producer's mistake
        log.error("report %s/%s: its delivery is invalid: %s", organization_id, report_id, exc)
        return None
    target = delivery.target
    return DeliveryOrder(
        source=SOURCE,
        organization_id=organization_id,
        report_id=report_id,
        report_type=row["report_type"],
        target=target,
        secrets_owner=adhoc_owner(report_id),
        retry=delivery.retry,
        date_from=date.fromisoformat(row["date_from"]),
        date_to=date.fromisoformat(row["date_to"]),
        fire_time=row["created_at"].astimezone(UTC),
        recipients=getattr(target, "recipients", ()),
    )


class AdhocDeliveries:
    """The :class:`~stream_app.delivery.worker.DeliverySource` of report requests' own
    deliveries (see the module docstring). Its outcomes settle nothing: the delivery log is
    the record."""

    name: str = SOURCE

    async def order_for(
        self, conn: asyncpg.Connection, status: ReportStatus
    ) -> DeliveryOrder | None:
        """The delivery the completed report's request asked for, or None."""
        if status.status != "completed":
            return None
        row = await _request_row(conn, status.organization_id, status.report_id)
        return None if row is None else _order(status.organization_id, status.report_id, row)

    async def reload(self, conn: asyncpg.Connection, item: QueuedDelivery) -> DeliveryOrder | None:
        """The order of a queued row, read again from the request row."""
        row = await _request_row(conn, item.organization_id, item.report_id)
        return None if row is None else _order(item.organization_id, item.report_id, row)

    async def settle(
        self, conn: asyncpg.Connection, order: DeliveryOrder, result: DeliveryResult
    ) -> None:
        """Nothing to settle: the report status reads the delivery log."""


_EMAIL_ADDRESS_RE = re.compile(r"[^\s@<>,;:'\"]+@[^\s@<>,;:'\"]+")


def _hide_targets(text: str | None) -> str | None:
    """``text`` without URLs nor email addresses (for readers who may not see targets)."""
    return None if text is None else _EMAIL_ADDRESS_RE.sub("<recipient>", strip_urls(text))


def _hide_causes(text: str | None, outcome: str = "failed") -> str | None:
    """A delivery's detail for readers who may not see targets: :func:`public_detail` of
    ``text`` without URLs nor addresses (no host name, no resolution, no server reply); of a
    ``delivered`` attempt, what names no receiver or else ``delivered``."""
    hidden = _hide_targets(text)
    if hidden is None:
        return None
    shown = public_detail(hidden)
    return "delivered" if outcome == "delivered" and shown == HIDDEN_CAUSE else shown


def _mask_targets(text: str | None) -> str | None:
    """``text`` with URLs masked (rows logged before masking was applied at write too)."""
    return None if text is None else mask_urls(text)


def _skip_reason(report_status: str | None, delivery: Any) -> str | None:
    """Why a delivery that was never queued nor attempted will not be: the report was
    cancelled or failed, or its delivery is invalid (only a Kafka producer's mistake); None
    while it may still be (the report is not final yet, or completed a moment ago)."""
    if report_status == "cancelled":
        return "the report was cancelled: nothing to deliver"
    if report_status == "failed":
        return "the report failed (see its error): nothing to deliver"
    if report_status == "completed" and isinstance(delivery, dict):
        try:
            parse_delivery(delivery)
        except TargetValidationError as exc:
            return f"the delivery is invalid: {json_path(exc.field)}: {exc.reason}"
        except (ValueError, msgspec.ValidationError) as exc:
            text = str(exc)
            if (at := _AT_PATH.fullmatch(text)) is not None:  # the path first, as above
                text = f"{at['path']}: {at['message']}"
            return f"the delivery is invalid: {clip(mask_urls(text), 200)}"
    return None


async def delivery_summary(
    conn: asyncpg.Connection,
    organization_id: str,
    report_id: str,
    *,
    show_targets: bool = False,
) -> dict[str, Any] | None:
    """The delivery of one report of ``organization_id`` as the report status shows it
    (a tenant read: :func:`~stream_app.db.tenancy.tenant_read`), or None when nothing asked
    for one.

    Args:
        show_targets: the reader may see delivery targets (``deliveries:read``): each
            attempt's ``target`` and ``detail`` (URLs masked: no userinfo nor query).
            Otherwise ``target`` is null, URLs and email addresses in ``reason`` are
            replaced by ``<target>`` / ``<recipient>``, and ``detail`` and ``error`` keep
            only what names no receiver (:func:`~stream_app.delivery.redact.public_detail`:
            an HTTP status, a timeout, links or files delivered).

    Returns:
        ``{"method", "outcome", "error", "reason", "next_attempt_at", "attempts":
        [{"attempt", "outcome", "detail", "target", "started_at", "finished_at"}]}``:
        ``outcome`` is ``pending`` until the report completes, then ``queued``,
        ``sending`` (an attempt is under way), ``retrying``, ``delivered``, ``skipped`` or
        ``failed`` (``error`` is the cause when
        failed); ``skipped`` (with ``reason``) also when the report was cancelled or failed,
        or the request's delivery is invalid.
    """
    async with tenant_read(conn, organization_id):
        row = await conn.fetchrow(
            "SELECT r.request->'delivery'->>'method' AS method, r.request->'delivery' AS delivery,"
            " r.status, q.due_at, q.claimed_until > now() AS sending FROM reports r"
            " LEFT JOIN delivery_queue q"
            " ON q.organization_id = r.organization_id AND q.report_id = r.id"
            " WHERE r.organization_id = $1 AND r.id = $2",
            organization_id,
            report_id,
        )
        entries = await report_log(conn, organization_id, report_id)
    method = None if row is None else row["method"]
    due_at = None if row is None else row["due_at"]
    if method is None and not entries:
        return None
    last = entries[-1] if entries else None
    reason: str | None = None
    if last is not None and last.outcome != "retrying":
        outcome = last.outcome
        reason = last.detail if outcome == "skipped" else None
    elif due_at is not None and row is not None and row["sending"]:
        outcome = "sending"  # a worker holds the attempt's lease: it is under way
    elif due_at is not None:
        outcome = "retrying" if last is not None else "queued"
    else:
        raw = None if row is None or row["delivery"] is None else orjson.loads(row["delivery"])
        reason = _skip_reason(None if row is None else row["status"], raw)
        outcome = "pending" if reason is None else "skipped"
    shown = _mask_targets if show_targets else _hide_targets
    detail = _mask_targets if show_targets else _hide_causes
    return {
        "method": method if method is not None else entries[-1].method,
        "outcome": outcome,
        "error": detail(last.detail) if last is not None and outcome == "failed" else None,
        "reason": shown(reason),
        "next_attempt_at": None if due_at is None or outcome == "sending" else due_at.isoformat(),
        "attempts": [
            {
                "attempt": e.attempt,
                "outcome": e.outcome,
                "detail": _mask_targets(e.detail)
                if show_targets
                else _hide_causes(e.detail, e.outcome),
                "target": _mask_targets(e.target) if show_targets else None,
                "started_at": e.started_at.isoformat(),
                "finished_at": e.finished_at.isoformat(),
            }
            for e in entries
        ],
    }
