"""Make one delivery attempt, log it, and settle the run or queue the next attempt.

:func:`deliver` makes **one** attempt and never sleeps. When it fails with a
:class:`~stream_app.delivery.base.DeliveryError` whose ``retriable`` is true and attempts are
left (``retry.max_attempts`` in all), the next attempt is written to the delivery queue
(:mod:`stream_app.delivery.queue`) due ``min(base_backoff_s * 2**(n-1), max_backoff_s)``
seconds after failed attempt ``n`` (computed by `tenacity`_'s ``wait_exponential``), the run
becomes ``retrying`` and the caller's slot is free at once; the delivery worker
(:mod:`stream_app.delivery.worker`) makes the attempt when it is due. Every attempt is a
``delivery_log`` row. When the last attempt fails the run becomes ``failed`` with the cause;
the report's files stay in the artifact store (nothing here deletes them). The signed links a
delivered attempt handed out are stored (``download_links``).

The files sent are **derived** from the run's organisation, the planned report id, the
schedule's report type and each format (:func:`stream_app.reports.artifacts.artifact_path`);
the ``path`` a ``report-results`` message carries is never opened. Every statement on the
run's rows runs in the organisation's tenant transaction.

Run status after delivery: ``failed`` as soon as one of its reports fails (sticky);
``retrying`` while a report waits for its next attempt; once every planned report is
``delivered`` or ``skipped``, the run is ``delivered`` (if any was delivered) or ``skipped``.

.. _tenacity: https://tenacity.readthedocs.io/
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Mapping
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
    DeliveryResult,
    PermanentDeliveryError,
    SendReceipt,
)
from stream_app.delivery.egress import EgressPolicy, load_policy
from stream_app.delivery.email import DEFAULT_MAX_ATTACHMENT_BYTES, EmailMethod, SmtpConfig
from stream_app.delivery.links import record_issued
from stream_app.delivery.log import final_outcomes, log_attempt
from stream_app.delivery.queue import remove, reschedule
from stream_app.delivery.sftp import DEFAULT_CONNECT_TIMEOUT_S, SftpMethod
from stream_app.delivery.webhook import WebhookMethod
from stream_app.reports.artifacts import (
    ArtifactIntegrityError,
    ArtifactPathError,
    ArtifactReader,
    artifact_path,
    artifact_relpath,
    download_url,
    open_artifact,
)
from stream_app.schedules.model import (
    ApiTarget,
    DeliveryTarget,
    EmailTarget,
    RetryPolicy,
    SftpTarget,
    WebhookTarget,
)
from stream_app.schedules.sealing import unseal_schedule
from stream_app.schedules.store import ClaimedRun, update_run_status
from stream_app.schemas.updates import ReportStatus
from stream_app.settings import parse_float, parse_int

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


def load_delivery_config(
    env: Mapping[str, str] | None = None, *, fallback_secret: str | None = None
) -> DeliveryConfig:
    """Read :class:`DeliveryConfig` from the environment.

    Variables: ``WEDDING_SMTP_HOST`` (``127.0.0.1``), ``WEDDING_SMTP_PORT`` (25),
    ``WEDDING_SMTP_SENDER`` (``reports@localhost``), ``WEDDING_SMTP_USERNAME``,
    ``WEDDING_SMTP_PASSWORD``, ``WEDDING_SMTP_TLS`` (``implicit``, ``starttls``, ``none`` or
    unset = STARTTLS when offered), ``WEDDING_LINK_SECRET`` (default ``fallback_secret``, e.g.
    the JWT secret; at least 32 bytes), ``WEDDING_PUBLIC_BASE_URL``
    (``http://127.0.0.1:6066``), ``WEDDING_EMAIL_MAX_ATTACHMENT_BYTES`` (10 MiB),
    ``WEDDING_SFTP_CONNECT_TIMEOUT_S`` (20), ``WEDDING_DELIVERY_ALLOW_PRIVATE_NETWORKS``
    (empty: deliveries reach public addresses only; e.g. ``127.0.0.0/8`` for tests),
    ``WEDDING_DELIVERY_SLOTS`` (4), ``WEDDING_DELIVERY_POLL_S`` (1),
    ``WEDDING_DELIVERY_LEASE_S`` (900).

    Raises:
        ValueError: a number does not parse, TLS mode is unknown, or the link secret is
            missing or shorter than 32 bytes.
    """
    env = os.environ if env is None else env
    tls = env.get("WEDDING_SMTP_TLS", "").lower()
    if tls not in ("", "implicit", "starttls", "none"):
        raise ValueError(f"WEDDING_SMTP_TLS: {tls!r} is not implicit, starttls or none")
    secret = env.get("WEDDING_LINK_SECRET") or fallback_secret
    if not secret:
        raise ValueError("WEDDING_LINK_SECRET: required (at least 32 bytes)")
    smtp = SmtpConfig(
        host=env.get("WEDDING_SMTP_HOST", "127.0.0.1"),
        port=parse_int("WEDDING_SMTP_PORT", env.get("WEDDING_SMTP_PORT", "25"), 1, 65535),
        sender=env.get("WEDDING_SMTP_SENDER", "reports@localhost"),
        username=env.get("WEDDING_SMTP_USERNAME") or None,
        password=env.get("WEDDING_SMTP_PASSWORD") or None,
        use_tls=tls == "implicit",
        start_tls={"starttls": True, "none": False}.get(tls),
    )
    return DeliveryConfig(
        smtp=smtp,
        signer=LinkSigner(
            secret=secret, base_url=env.get("WEDDING_PUBLIC_BASE_URL", "http://127.0.0.1:6066")
        ),
        max_attachment_bytes=parse_int(
            "WEDDING_EMAIL_MAX_ATTACHMENT_BYTES",
            env.get("WEDDING_EMAIL_MAX_ATTACHMENT_BYTES", str(DEFAULT_MAX_ATTACHMENT_BYTES)),
            0,
            1 << 40,
        ),
        sftp_connect_timeout_s=parse_float(
            "WEDDING_SFTP_CONNECT_TIMEOUT_S",
            env.get("WEDDING_SFTP_CONNECT_TIMEOUT_S", str(DEFAULT_CONNECT_TIMEOUT_S)),
            0.1,
            3600,
        ),
        egress=load_policy(env),
        slots=parse_int("WEDDING_DELIVERY_SLOTS", env.get("WEDDING_DELIVERY_SLOTS", "4"), 1, 1024),
        poll_s=parse_float(
            "WEDDING_DELIVERY_POLL_S", env.get("WEDDING_DELIVERY_POLL_S", "1"), 0.05, 3600
        ),
        lease_s=parse_float(
            "WEDDING_DELIVERY_LEASE_S", env.get("WEDDING_DELIVERY_LEASE_S", "900"), 1, 86_400
        ),
    )


def build_method(target: DeliveryTarget, config: DeliveryConfig) -> DeliveryMethod:
    """The delivery method for a schedule's target."""
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
    format)`` (the run's organisation and the schedule's type, not the message's), so a
    ``report-results`` message cannot point the delivery at another file; the links handed
    on carry that derived relative path.

    Raises:
        PermanentDeliveryError: the status is another organisation's, a format or id is bad,
            or a file is missing, fails authentication or does not match its checksum.
    """
    if status.organization_id != organization_id:
        raise PermanentDeliveryError(
            f"report status of {status.organization_id!r} for a run of {organization_id!r}"
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
    the schedule's base and cap, evaluated for attempt ``n``.
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


async def _settle_run(conn: asyncpg.Connection, run: ClaimedRun) -> None:
    """Set the run's status from the final outcome of each planned report (see module)."""
    org = run.schedule.organization_id
    async with tenant_transaction(conn, org):
        current = await conn.fetchval(
            "SELECT status FROM schedule_runs WHERE organization_id = $1 AND id = $2 FOR UPDATE",
            org,
            run.run_id,
        )
        if current is None or current == "failed":
            return
        outcomes = await final_outcomes(conn, org, run.run_id)
        finals = [outcomes.get(p.report_id) for p in run.reports]
        if all(o in ("delivered", "skipped") for o in finals):
            await update_run_status(
                conn, org, run.run_id, "delivered" if "delivered" in finals else "skipped"
            )
        elif current != "retrying" and await conn.fetchval(
            "SELECT 1 FROM delivery_queue WHERE organization_id = $1 AND run_id = $2"
            " AND attempt > 1",
            org,
            run.run_id,
        ):
            await update_run_status(conn, org, run.run_id, "retrying")
        elif current == "retrying" and not await conn.fetchval(
            "SELECT 1 FROM delivery_queue WHERE organization_id = $1 AND run_id = $2"
            " AND attempt > 1",
            org,
            run.run_id,
        ):
            await update_run_status(conn, org, run.run_id, "submitted")


async def deliver(
    pool: asyncpg.Pool,
    run: ClaimedRun,
    status: ReportStatus,
    artifact_root: Path,
    method: DeliveryMethod,
    *,
    attempt: int = 1,
    now: datetime | None = None,
    keys: KeyRing | None = None,
) -> DeliveryResult:
    """Make attempt number ``attempt`` to deliver one finished report of ``run`` (no sleeping).

    * A report that ended ``failed`` or ``cancelled`` is not delivered: the run is marked
      ``failed`` with the report's cause (logged as attempt 0).
    * An empty report (no data rows in any file) of a ``skip_if_empty`` schedule is logged
      ``skipped``.
    * A report already delivered, skipped or failed for good for this run is not sent again
      (a redelivered ``report-results`` message is harmless).
    * Otherwise one attempt is made and logged. A retriable failure with attempts left is
      queued for ``now`` + the backoff (see the module docstring) and answered ``retrying``;
      after the last failed attempt the run becomes ``failed`` with the cause. The report
      files are never removed.

    Args:
        pool: PostgreSQL pool (scheduler role).
        run: the run (see :func:`stream_app.schedules.store.find_run_for_report`).
        status: the report's final status (``completed``, ``failed`` or ``cancelled``).
        artifact_root: the artifact store's root folder.
        method: the method for ``run.schedule.delivery`` (see :func:`build_method`).
        attempt: the number of this attempt (1-based; the queue keeps it between attempts).
        now: the time the backoff counts from (UTC-aware; default the clock after the
            attempt). Tests inject it to simulate time.
        keys: the worker's data-key cache (:func:`stream_app.crypto.keyring.get_keyring`);
            default: a new one on ``pool`` (the master key from the environment).

    Returns:
        The outcome (``delivered``, ``skipped``, ``failed`` or ``retrying`` with ``due_at``),
        the attempt number, detail and, when delivered, where it went and its links.

    Raises:
        ValueError: ``status`` is not a final status or names a report the run did not plan.
    """
    try:
        planned = run.planned(status.report_id)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from exc
    if status.status not in ("completed", "failed", "cancelled"):
        raise ValueError(f"status: {status.status!r} is not final")
    keys = keys or KeyRing(pool)
    try:
        schedule = await unseal_schedule(run.schedule, keys)  # secrets in memory only from here
    except (SealedValueError, DataKeyNotFoundError, MasterKeyError) as exc:
        schedule = run.schedule
        secrets_error: str | None = f"delivery secrets cannot be opened: {exc}"
    else:
        secrets_error = None
    target = method.describe_target(
        DeliveryJob(
            schedule=schedule,
            run_id=run.run_id,
            fire_time=run.fire_time,
            date_from=run.date_from,
            date_to=run.date_to,
            report_id=planned.report_id,
            recipients=planned.audience.recipients,
            filters=planned.audience.filters,
            status=status,
            files=(),
        )
    )

    async def write_log(
        conn: asyncpg.Connection,
        attempt: int,
        outcome: str,
        retriable: bool,
        detail: str,
        started: datetime,
        finished: datetime,
    ) -> None:
        await log_attempt(
            conn,
            run_id=run.run_id,
            schedule_id=schedule.schedule_id,
            organization_id=schedule.organization_id,
            report_id=planned.report_id,
            method=method.name,
            attempt=attempt,
            outcome=outcome,
            retriable=retriable,
            detail=detail,
            target=target,
            started_at=started,
            finished_at=finished,
        )

    async def fail_without_attempt(cause: str) -> DeliveryResult:
        now = datetime.now(UTC)
        async with pool.acquire() as conn, tenant_transaction(conn, schedule.organization_id):
            await write_log(conn, 0, "failed", False, cause, now, now)
            await remove(conn, run.run_id, planned.report_id)
            await update_run_status(
                conn, schedule.organization_id, run.run_id, "failed", error=cause
            )
        return DeliveryResult(outcome="failed", attempts=0, detail=cause)

    async with pool.acquire() as conn, tenant_transaction(conn, schedule.organization_id):
        previous = (await final_outcomes(conn, schedule.organization_id, run.run_id)).get(
            planned.report_id
        )
    if previous in ("delivered", "skipped", "failed"):
        async with pool.acquire() as conn, tenant_transaction(conn, schedule.organization_id):
            await remove(conn, run.run_id, planned.report_id)
        return DeliveryResult(
            outcome=(
                "delivered"
                if previous == "delivered"
                else "skipped"
                if previous == "skipped"
                else "failed"
            ),
            attempts=0,
            detail=f"already {previous}",
        )
    if status.status != "completed":
        return await fail_without_attempt(f"report {status.status}: {status.error or 'no cause'}")
    if schedule.skip_if_empty and sum(a.rows for a in status.artifacts) == 0:
        now = datetime.now(UTC)
        async with pool.acquire() as conn, tenant_transaction(conn, schedule.organization_id):
            await write_log(conn, 0, "skipped", False, "report has no rows", now, now)
            await remove(conn, run.run_id, planned.report_id)
            await _settle_run(conn, run)
        return DeliveryResult(outcome="skipped", attempts=0, detail="report has no rows")
    try:
        if secrets_error is not None:
            raise PermanentDeliveryError(secrets_error)
        files = await resolve_files(
            status,
            artifact_root,
            keys,
            organization_id=schedule.organization_id,
            report_type=schedule.report_type,
        )
    except PermanentDeliveryError as exc:
        return await fail_without_attempt(exc.detail)
    job = DeliveryJob(
        schedule=schedule,
        run_id=run.run_id,
        fire_time=run.fire_time,
        date_from=run.date_from,
        date_to=run.date_to,
        report_id=planned.report_id,
        recipients=planned.audience.recipients,
        filters=planned.audience.filters,
        status=status,
        files=files,
    )
    started = datetime.now(UTC)
    outcome = await attempt_once(method, job)
    finished = datetime.now(UTC)
    if isinstance(outcome, SendReceipt):
        async with pool.acquire() as conn, tenant_transaction(conn, schedule.organization_id):
            await write_log(conn, attempt, "delivered", False, outcome.detail, started, finished)
            await record_issued(
                conn,
                organization_id=schedule.organization_id,
                report_id=planned.report_id,
                schedule_id=schedule.schedule_id,
                run_id=run.run_id,
                method=method.name,
                links=outcome.issued,
            )
            await remove(conn, run.run_id, planned.report_id)
            await _settle_run(conn, run)
        return DeliveryResult(
            outcome="delivered",
            attempts=attempt,
            detail=outcome.detail,
            location=outcome.location,
            links=outcome.links,
        )
    error = outcome
    if error.retriable and attempt < schedule.retry.max_attempts:
        due = (now or finished) + timedelta(seconds=retry_wait_s(schedule.retry, attempt))
        detail = f"{error.detail}; attempt {attempt + 1} due at {due.isoformat()}"
        async with pool.acquire() as conn, tenant_transaction(conn, schedule.organization_id):
            await write_log(conn, attempt, "retrying", True, detail, started, finished)
            await reschedule(
                conn,
                organization_id=schedule.organization_id,
                run_id=run.run_id,
                schedule_id=schedule.schedule_id,
                report_id=planned.report_id,
                status=status,
                attempt=attempt + 1,
                due_at=due,
                error=error.detail,
            )
            await _settle_run(conn, run)
        return DeliveryResult(outcome="retrying", attempts=attempt, detail=detail, due_at=due)
    cause = f"{method.name} delivery failed after {attempt} attempt(s): {error.detail}"
    async with pool.acquire() as conn, tenant_transaction(conn, schedule.organization_id):
        await write_log(conn, attempt, "failed", error.retriable, error.detail, started, finished)
        await remove(conn, run.run_id, planned.report_id)
        await update_run_status(conn, schedule.organization_id, run.run_id, "failed", error=cause)
    return DeliveryResult(outcome="failed", attempts=attempt, detail=cause)
