"""Make one delivery attempt, log it, and queue the next attempt or hand over the outcome.

:func:`deliver` makes **one** attempt of a :class:`~stream_app.delivery.base.DeliveryOrder`
(a schedule run's report, or a report request's own delivery) and never sleeps. When it
fails with a :class:`~stream_app.delivery.base.DeliveryError` whose ``retriable`` is true and
attempts are left (``retry.max_attempts`` in all), the next attempt is written to the
delivery queue (:mod:`stream_app.delivery.queue`) due ``min(base_backoff_s * 2**(n-1),
max_backoff_s)`` seconds after failed attempt ``n`` (computed by `tenacity`_'s
``wait_exponential``), and the caller's slot is free at once; the delivery worker
(:mod:`stream_app.delivery.worker`) makes the attempt when it is due. Every attempt is a
``delivery_log`` row: the log is the record of the outcome. The report's files stay in the
artifact store (nothing here deletes them). The signed links a delivered attempt handed out
are stored (``download_links``).

What an outcome means to whoever ordered the delivery (a schedule run's status) is not
decided here: each outcome is handed to the order's ``settle`` callback in the tenant
transaction that logs it (:class:`stream_app.delivery.worker.DeliverySource`).

The files sent are **derived** from the order's organisation, report id, report type and
each format (:func:`stream_app.reports.artifacts.artifact_path`); the ``path`` a
``report-results`` message carries is never opened. Every statement runs in the
organisation's tenant transaction.

.. _tenacity: https://tenacity.readthedocs.io/
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
from tenacity import RetryCallState, wait_exponential

from stream_app.crypto.keyring import KeyRing
from stream_app.crypto.keys import DataKeyNotFoundError, MasterKeyError
from stream_app.crypto.sealed import SealedValueError
from stream_app.db.tenancy import tenant_transaction
from stream_app.delivery.api import ApiMethod, LinkSigner
from stream_app.delivery.base import (
    DeliveryError,
    DeliveryFile,
    DeliveryJob,
    DeliveryMethod,
    DeliveryOrder,
    DeliveryResult,
    Outcome,
    PermanentDeliveryError,
    SendReceipt,
)
from stream_app.delivery.egress import EgressPolicy
from stream_app.delivery.email import DEFAULT_MAX_ATTACHMENT_BYTES, EmailMethod, SmtpConfig
from stream_app.delivery.links import record_issued
from stream_app.delivery.log import final_outcome, log_attempt
from stream_app.delivery.queue import remove, reschedule
from stream_app.delivery.sealing import unseal_target
from stream_app.delivery.sftp import DEFAULT_CONNECT_TIMEOUT_S, SftpMethod
from stream_app.delivery.targets import (
    ApiTarget,
    DeliveryTarget,
    EmailTarget,
    RetryPolicy,
    SftpTarget,
    WebhookTarget,
)
from stream_app.delivery.webhook import WebhookMethod
from stream_app.observability import DELIVERY_ATTEMPTS
from stream_app.reports.artifacts import (
    ArtifactIntegrityError,
    ArtifactMissingError,
    ArtifactPathError,
    ArtifactReader,
    artifact_path,
    artifact_relpath,
    download_url,
    open_artifact,
)
from stream_app.schemas.updates import ReportStatus
from stream_app.settings import Settings
from stream_app.transient import retry_transient

Settle = Callable[[asyncpg.Connection, DeliveryOrder, DeliveryResult], Awaitable[None]]
"""Told each outcome of an order (``delivered``, ``skipped``, ``retrying`` or ``failed``, with
its cause), in the organisation's tenant transaction that logs it."""

DEFAULT_SLOTS = 4
DEFAULT_POLL_S = 1.0
DEFAULT_LEASE_S = 900.0


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """Server-wide delivery settings.

    Attributes:
        smtp: the outgoing mail server.
        signer: download-link signer (base URL and secret).
        max_attachment_bytes: email attachment budget, bytes.
        sftp_connect_timeout_s: SFTP connect + login timeout, seconds.
        egress: addresses webhook and SFTP deliveries may reach (SSRF guard; default public
            addresses only).
        slots: delivery attempts at once per worker, shared fairly between organisations.
        poll_s: how often a worker looks for due deliveries, seconds.
        lease_s: how long a claimed delivery is reserved for the worker attempting it,
            seconds; it must outlast one attempt (webhook timeouts are at most 300 s),
            else another worker may attempt the same delivery again.
    """

    smtp: SmtpConfig
    signer: LinkSigner
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
    sftp_connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    slots: int = DEFAULT_SLOTS
    poll_s: float = DEFAULT_POLL_S
    lease_s: float = DEFAULT_LEASE_S


def delivery_config(settings: Settings) -> DeliveryConfig:
    """The :class:`DeliveryConfig` of ``settings`` (its delivery section, the link secret and
    the web listener, which names the links' base URL unless ``public_base_url`` is set).

    Raises:
        ValueError: the link secret equals the JWT secret, or the base URL is not an http(s)
            URL.
    """
    d = settings.delivery
    if settings.link_secret == settings.jwt_secret:
        raise ValueError("WEDDING_LINK_SECRET: must differ from WEDDING_JWT_SECRET")
    smtp = SmtpConfig(
        host=d.smtp_host,
        port=d.smtp_port,
        sender=d.smtp_sender,
        username=d.smtp_username or None,
        password=d.smtp_password or None,
        use_tls=d.smtp_tls == "implicit",
        start_tls={"starttls": True, "none": False}.get(d.smtp_tls),
    )
    base_url = d.public_base_url or f"http://{settings.web_host}:{settings.web_port}"
    return DeliveryConfig(
        smtp=smtp,
        signer=LinkSigner(secret=settings.link_secret, base_url=base_url),
        max_attachment_bytes=d.max_attachment_bytes,
        sftp_connect_timeout_s=d.sftp_connect_timeout_s,
        egress=EgressPolicy(allow_networks=d.allow_private_networks),
        slots=d.slots,
        poll_s=d.poll_s,
        lease_s=d.lease_s,
    )


def build_method(target: DeliveryTarget, config: DeliveryConfig) -> DeliveryMethod:
    """The delivery method for ``target``."""
    if isinstance(target, EmailTarget):
        return EmailMethod(config.smtp, config.signer, config.max_attachment_bytes)
    if isinstance(target, WebhookTarget):
        return WebhookMethod(config.signer, config.egress)
    if isinstance(target, SftpTarget):
        return SftpMethod(config.sftp_connect_timeout_s, config.egress)
    assert isinstance(target, ApiTarget)
    return ApiMethod(config.signer)


async def resolve_files(
    status: ReportStatus,
    artifact_root: Path,
    keys: KeyRing,
    *,
    organization_id: str,
    report_type: str,
) -> tuple[DeliveryFile, ...]:
    """The files of a completed report, opened (decrypting) and checked against the size and
    SHA-256 of their plaintext. The check streams: one 64 KiB segment in memory at a time.

    Each file's path is derived from ``(organization_id, status.report_id, report_type,
    format)`` (the order's organisation and type, not the message's), so a
    ``report-results`` message cannot point the delivery at another file; the links handed
    on carry that derived relative path.

    Raises:
        PermanentDeliveryError: the status is another organisation's, a format or id is bad,
            or a file is missing, fails authentication or does not match its checksum.
    """
    if status.organization_id != organization_id:
        raise PermanentDeliveryError(
            f"report status of {status.organization_id!r} for a delivery of {organization_id!r}"
        )
    files = []
    for link in status.artifacts:
        try:
            rel = artifact_relpath(organization_id, status.report_id, report_type, link.format)
            artifact_path(
                artifact_root, organization_id, status.report_id, report_type, link.format
            )
        except ArtifactPathError as exc:
            raise PermanentDeliveryError(f"artifact {link.format!r}: {exc}") from exc
        try:
            reader = await open_artifact(artifact_root, organization_id, rel, keys)
            digest = await asyncio.to_thread(_plaintext_sha256, reader)
        except ArtifactIntegrityError as exc:
            raise PermanentDeliveryError(f"artifact {rel!r} fails authentication: {exc}") from exc
        except ArtifactMissingError as exc:  # an erasure or retention removed it since
            raise PermanentDeliveryError(
                f"artifact {rel!r} was removed before its delivery (a GDPR erasure purges the"
                " organisation's report files, the retention rule old ones); request the report"
                " again to deliver it"
            ) from exc
        except (OSError, DataKeyNotFoundError, MasterKeyError) as exc:
            raise PermanentDeliveryError(f"artifact {rel!r} unreadable: {exc}") from exc
        if reader.size != link.size_bytes or digest != link.sha256:
            raise PermanentDeliveryError(f"artifact {rel!r} does not match its checksum")
        derived = msgspec.structs.replace(
            link, path=rel, uri=download_url(organization_id, status.report_id, link.format)
        )
        files.append(DeliveryFile(link=derived, path=reader.path, reader=reader))
    return tuple(files)


def _plaintext_sha256(reader: ArtifactReader) -> str:
    sha = hashlib.sha256()
    for chunk in reader.iter_chunks():
        sha.update(chunk)
    return sha.hexdigest()


def retry_wait_s(policy: RetryPolicy, failed_attempt: int) -> float:
    """Seconds to wait after failed attempt ``failed_attempt`` (1-based) before the next.

    ``min(base_backoff_s * 2**(n-1), max_backoff_s)``: tenacity's ``wait_exponential`` with
    the policy's base and cap, evaluated for attempt ``n``.
    """
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = failed_attempt
    wait = wait_exponential(multiplier=policy.base_backoff_s, max=policy.max_backoff_s)
    return float(wait(state))


async def attempt_once(method: DeliveryMethod, job: DeliveryJob) -> SendReceipt | DeliveryError:
    """Make one attempt: the receipt, or the error it failed with.

    An exception other than :class:`DeliveryError` (a bug in a method) becomes a permanent
    failure naming its type.
    """
    try:
        return await method.send(job)
    except DeliveryError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a bug in a method fails the delivery
        return PermanentDeliveryError(f"{type(exc).__name__}: {exc}")


async def deliver(
    pool: asyncpg.Pool,
    order: DeliveryOrder,
    status: ReportStatus,
    artifact_root: Path,
    method: DeliveryMethod,
    *,
    attempt: int = 1,
    now: datetime | None = None,
    keys: KeyRing | None = None,
    settle: Settle | None = None,
) -> DeliveryResult:
    """Make attempt number ``attempt`` to deliver one finished report (no sleeping).

    * A report that ended ``failed`` or ``cancelled`` is not delivered: logged ``failed``
      (attempt 0) with the report's cause.
    * An empty report (no data rows in any file) of an order with ``skip_if_empty`` is logged
      ``skipped``.
    * A report already delivered, skipped or failed for good is not sent again (a
      redelivered ``report-results`` message or a second worker is harmless).
    * Otherwise one attempt is made and logged. A retriable failure with attempts left is
      queued for ``now`` + the backoff (see the module docstring) and answered ``retrying``;
      after the last failed attempt the outcome is ``failed`` with the cause. The report
      files are never removed.

    Every outcome but "already" is handed to ``settle`` in the transaction that logs it.

    Args:
        pool: PostgreSQL pool of the application role.
        order: what to deliver where (its sealed secrets are opened here, in memory only).
        status: the report's final status (``completed``, ``failed`` or ``cancelled``).
        artifact_root: the artifact store's root folder.
        method: the method for ``order.target`` (see :func:`build_method`).
        attempt: the number of this attempt (1-based; the queue keeps it between attempts).
        now: the time the backoff counts from (UTC-aware; default the clock after the
            attempt). Tests inject it to simulate time.
        keys: the worker's data-key cache (:func:`stream_app.crypto.keyring.get_keyring`);
            default: a new one on ``pool`` (the master key from the environment).
        settle: the orderer's callback (e.g. a schedule run's status), or None.

    Returns:
        The outcome (``delivered``, ``skipped``, ``failed`` or ``retrying`` with ``due_at``),
        the attempt number, detail (the cause when failed) and, when delivered, where it went
        and its links.

    Raises:
        ValueError: ``status`` is not a final status or is another report's.
    """
    if status.report_id != order.report_id:
        raise ValueError(f"report_id: {status.report_id!r} is not the order's {order.report_id!r}")
    if status.status not in ("completed", "failed", "cancelled"):
        raise ValueError(f"status: {status.status!r} is not final")
    org = order.organization_id
    keys = keys or KeyRing(pool)
    secrets_error: str | None = None
    try:  # secrets in memory only from here
        target = await unseal_target(order.target, keys, org, order.secrets_owner)
    except (SealedValueError, DataKeyNotFoundError, MasterKeyError) as exc:
        target, secrets_error = order.target, f"delivery secrets cannot be opened: {exc}"
    opened = dataclasses.replace(order, target=target)
    where = method.describe_target(DeliveryJob(opened, status, ()))

    async def finish(
        outcome: str,
        attempt: int,
        detail: str,
        result: DeliveryResult,
        *,
        retriable: bool = False,
        started: datetime | None = None,
        finished: datetime | None = None,
        receipt: SendReceipt | None = None,
    ) -> DeliveryResult:
        """Log the attempt, update the queue, record links and settle: one transaction,
        done again while PostgreSQL is away or restarting (:func:`retry_transient`): the
        attempt has happened, so its outcome must be recorded, not the delivery made again
        once the lease runs out."""
        stamp = datetime.now(UTC)

        async def record() -> None:
            async with pool.acquire() as conn, tenant_transaction(conn, org):
                await log_attempt(
                    conn,
                    run_id=order.run_id,
                    schedule_id=order.schedule_id,
                    organization_id=org,
                    report_id=order.report_id,
                    method=method.name,
                    attempt=attempt,
                    outcome=outcome,
                    retriable=retriable,
                    detail=detail,
                    target=where,
                    started_at=started or stamp,
                    finished_at=finished or stamp,
                )
                if receipt is not None:
                    await record_issued(
                        conn,
                        organization_id=org,
                        report_id=order.report_id,
                        schedule_id=order.schedule_id,
                        run_id=order.run_id,
                        method=method.name,
                        links=receipt.issued,
                    )
                if result.due_at is not None:
                    await reschedule(
                        conn, order, status, attempt=attempt + 1, due_at=result.due_at, error=detail
                    )
                else:
                    await remove(conn, org, order.report_id)
                if settle is not None:
                    await settle(conn, order, result)

        await retry_transient(record, f"delivery of report {order.report_id}: recording {outcome}")
        DELIVERY_ATTEMPTS.labels(method.name, outcome).inc()
        return result

    async with pool.acquire() as conn, tenant_transaction(conn, org):
        previous = await final_outcome(conn, org, order.report_id)
    if previous in ("delivered", "skipped", "failed"):
        async with pool.acquire() as conn, tenant_transaction(conn, org):
            await remove(conn, org, order.report_id)
        done: Outcome = (
            "delivered"
            if previous == "delivered"
            else "skipped"
            if previous == "skipped"
            else "failed"
        )
        return DeliveryResult(outcome=done, attempts=0, detail=f"already {previous}")
    if status.status != "completed":
        cause = f"report {status.status}: {status.error or 'no cause'}"
        return await finish("failed", 0, cause, DeliveryResult("failed", 0, cause))
    if order.skip_if_empty and sum(a.rows for a in status.artifacts) == 0:
        detail = "report has no rows"
        return await finish("skipped", 0, detail, DeliveryResult("skipped", 0, detail))
    try:
        if secrets_error is not None:
            raise PermanentDeliveryError(secrets_error)
        files = await resolve_files(
            status, artifact_root, keys, organization_id=org, report_type=order.report_type
        )
    except PermanentDeliveryError as exc:
        return await finish("failed", 0, exc.detail, DeliveryResult("failed", 0, exc.detail))
    started = datetime.now(UTC)
    outcome = await attempt_once(method, DeliveryJob(opened, status, files))
    finished = datetime.now(UTC)
    if isinstance(outcome, SendReceipt):
        result = DeliveryResult(
            outcome="delivered",
            attempts=attempt,
            detail=outcome.detail,
            location=outcome.location,
            links=outcome.links,
        )
        return await finish(
            "delivered",
            attempt,
            outcome.detail,
            result,
            started=started,
            finished=finished,
            receipt=outcome,
        )
    error = outcome
    if error.retriable and attempt < order.retry.max_attempts:
        due = (now or finished) + timedelta(seconds=retry_wait_s(order.retry, attempt))
        detail = f"{error.detail}; attempt {attempt + 1} due at {due.isoformat()}"
        return await finish(
            "retrying",
            attempt,
            detail,
            DeliveryResult("retrying", attempt, detail, due_at=due),
            retriable=True,
            started=started,
            finished=finished,
        )
    cause = f"{method.name} delivery failed after {attempt} attempt(s): {error.detail}"
    return await finish(
        "failed",
        attempt,
        error.detail,
        DeliveryResult("failed", attempt, cause),
        retriable=error.retriable,
        started=started,
        finished=finished,
    )
