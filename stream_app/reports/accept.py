"""One path accepts a report request, whatever its entry.

The entries: the HTTP API (``POST /orgs/{org}/reports``), a producer of ``report-requests``
(the ``wedding-engine report`` command, any other producer: the router accepts what arrives
there, :mod:`stream_app.reports.route`) and the scheduler (:mod:`stream_app.agents.scheduler`).
Each calls :func:`validate` on the request's JSON, then :func:`accept`, which

1. records the request ``queued`` in PostgreSQL, once: the ``reports`` row is keyed by
   ``(organization_id, report_id)``, a request already recorded is not recorded again;
2. audits it, once, in the same transaction as the row (``report.requested``, with the entry
   as its ``channel``), so there is an audit record exactly when there is a row;
3. publishes ``queued`` on the status topics and sends the request to the lane of its
   priority (:mod:`stream_app.reports.lanes`), keyed ``organization_id/<cache key>``.

A request whose id is known is not an error for the asynchronous entries (a redelivered
message, a re-submitted schedule run): it is published again while its report is ``queued``
or ``processing`` (the lanes claim a report once), and not at all once final. The HTTP API is
*interactive*: a known id is refused (409), and a request that cannot be published is marked
``failed`` with the cause (the client is told to retry, 503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import asyncpg
import orjson
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from stream_app.db import audit_events
from stream_app.db import reports as report_db
from stream_app.db.tenancy import UnknownOrganizationError, tenant_transaction
from stream_app.errors import WeddingError
from stream_app.reports.audit_details import Channel, request_details, status_details
from stream_app.reports.cache import cache_key, message_key
from stream_app.reports.status import Send, publish_status, report_status, worker_send
from stream_app.schemas.base import decode_event
from stream_app.schemas.reports import ReportRequest
from stream_app.topology import report_lane_topics

log = logging.getLogger(__name__)

LIVE = frozenset({"queued", "processing"})
"""Statuses of a report whose request is (still) sent to its lane."""


class ReportIdTakenError(WeddingError):
    """The organisation's ``report_id`` already names a report (another request, or, for an
    interactive entry, any request). The message is the reason; the field is ``$.report_id``."""

    retriable = False


class NotPublishedError(WeddingError):
    """The request is recorded but could not be sent to Kafka.

    Attributes:
        reason: why (no acknowledgement in time, or the broker's refusal).
        too_large: Kafka refused it for its size (:func:`refused_for_size`): sending it again
            cannot help.
    """

    retriable = True

    def __init__(self, reason: str, *, too_large: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_large = too_large
        self.retriable = not too_large


def kafka_cause(exc: BaseException) -> BaseException:
    """The Kafka client's error behind ``exc`` (faust wraps it in ``ProducerSendError``; the
    chain of causes is followed), or ``exc`` itself when there is none."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KafkaError):
            found: BaseException = seen  # aiokafka is untyped
            return found
        seen = seen.__cause__ or seen.__context__
    return exc


def refused_for_size(exc: BaseException) -> bool:
    """True when ``exc`` (any producer error, wrapped or not) says the message is larger than
    Kafka takes: the client's ``max_request_size`` or the broker's ``message.max.bytes``."""
    return isinstance(kafka_cause(exc), MessageSizeTooLargeError | RecordTooLargeError)


@dataclass(frozen=True, slots=True)
class Acceptance:
    """What :func:`accept` did with a request.

    Attributes:
        recorded: True when this call recorded it (and audited it): a new request.
        status: the report's stored status when it was accepted (``queued`` for a new one).
        published: True when the request was sent to its lane (its report is ``queued`` or
            ``processing``); False for a report already final.
    """

    recorded: bool
    status: str
    published: bool


def validate(raw: bytes) -> ReportRequest:
    """The request in ``raw`` (JSON of :class:`~stream_app.schemas.reports.ReportRequest`),
    checked against the wire contract (types, ids, dates, formats, filters, configuration).

    Raises:
        stream_app.schemas.base.EventValidationError: naming the field and the reason.
    """
    return decode_event(raw, ReportRequest)


async def accept(
    req: ReportRequest,
    raw: bytes,
    *,
    channel: Channel,
    pool: asyncpg.Pool,
    send: Send = worker_send,
    interactive: bool = False,
    publish_timeout_s: float | None = None,
) -> Acceptance:
    """Record ``req`` once, audit it once, publish ``queued`` and send it to its lane.

    Args:
        req: the request, from :func:`validate` of ``raw``.
        raw: its JSON as received (stored as the report's request and sent to the lane).
        channel: the entry, recorded in the audit event (``http``, ``kafka``, ``schedule``).
        pool: PostgreSQL (the app role: every statement inside the tenant's transaction).
        send: the Kafka producer (the worker's by default).
        interactive: the caller answers a client now (HTTP): a known id is refused, and a
            request that cannot be published is marked ``failed`` with the cause.
        publish_timeout_s: the longest wait for the broker's acknowledgements (None: no
            limit).

    Returns:
        What was done (:class:`Acceptance`).

    Raises:
        UnknownOrganizationError: the organisation does not exist (nothing recorded).
        ReportIdTakenError: the id names another request of the organisation, or (interactive)
            any request.
        NotPublishedError: recorded, but Kafka did not take it, whatever the producer's error
            (the recovery sweep of :mod:`stream_app.reports.recovery` sends a queued report
            round again unless ``interactive`` marked it failed); ``too_large`` when Kafka
            refused it for its size.
        asyncpg errors, OSError: PostgreSQL cannot be reached.
    """
    started = time.perf_counter()
    org, report_id = req.organization_id, req.report_id
    doc = orjson.loads(raw)
    key = cache_key(req)
    async with pool.acquire() as conn:
        try:
            async with tenant_transaction(conn, org):  # the audit row commits with the row
                recorded = await report_db.insert_queued(
                    conn,
                    report_id=report_id,
                    organization_id=org,
                    user_id=req.user_id,
                    report_type=req.report_type,
                    request=doc,
                    priority=req.priority,
                    cache_strategy=req.cache_strategy,
                    cache_key=key,
                )
                if recorded:
                    await audit_events.record(
                        conn,
                        org,
                        req.user_id,
                        "report.requested",
                        report_id,
                        request_details(req, channel),
                    )
        except asyncpg.ForeignKeyViolationError:
            raise UnknownOrganizationError(f"organization_id: {org!r} does not exist") from None
        status: str | None = "queued"
        if not recorded:
            if interactive:
                raise ReportIdTakenError(
                    f"report {report_id!r} already exists; read it at its status URL"
                )
            if await report_db.same_request(conn, org, report_id, doc) is False:
                raise ReportIdTakenError(
                    f"report_id {report_id!r} already names another request of"
                    f" organization {org!r}; the stored report is kept"
                )
            status = await report_db.current_status(conn, org, report_id)
    if status not in LIVE:  # cancelled before it was sent on, or a redelivered final report
        return Acceptance(recorded, status or "unknown", False)
    try:
        await asyncio.wait_for(_publish(req, raw, key, status, started, send), publish_timeout_s)
    except TimeoutError:
        reason = f"kafka did not acknowledge the report request within {publish_timeout_s:g} s"
        raise await _not_published(pool, req, reason, channel, interactive) from None
    except Exception as exc:  # any producer error: not published, said so
        reason = f"kafka refused the report request ({kafka_cause(exc)!r})"
        too_large = refused_for_size(exc)
        raise await _not_published(
            pool, req, reason, channel, interactive, too_large=too_large
        ) from exc
    try:
        async with pool.acquire() as conn:  # the lane has it: the recovery sweep leaves it be
            await report_db.mark_routed(conn, org, report_id)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # the request is in its lane all the same; at worst the sweep sends it once more
        log.warning("report %s/%s: routed_at not recorded: %s", org, report_id, exc)
    return Acceptance(recorded, status, True)


async def _publish(
    req: ReportRequest, raw: bytes, key: str, status: str, started: float, send: Send
) -> None:
    """``queued`` on the status topics (for a report not yet claimed), then the request to
    its lane."""
    if status == "queued":
        await publish_status(report_status(req, "queued", started), send)
    lane = report_lane_topics[req.priority].get_topic_name()
    await send(lane, message_key(req.organization_id, key), raw)


async def _not_published(
    pool: asyncpg.Pool,
    req: ReportRequest,
    reason: str,
    channel: Channel,
    interactive: bool,
    *,
    too_large: bool = False,
) -> NotPublishedError:
    """The error to raise for a request Kafka did not take; an interactive entry's report is
    first marked ``failed`` (from ``queued`` only) with the cause, and audited."""
    if interactive:
        org = req.organization_id
        async with pool.acquire() as conn, tenant_transaction(conn, org):
            if await report_db.set_status(
                conn,
                org,
                req.report_id,
                "failed",
                error=f"could not enqueue: {reason}",
                only_from=["queued"],
            ):
                await audit_events.record(
                    conn,
                    org,
                    f"{channel}-api",
                    "report.status",
                    req.report_id,
                    status_details("failed", req.report_type),
                    outcome="failed",
                )
    return NotPublishedError(reason, too_large=too_large)
