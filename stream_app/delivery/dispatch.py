"""Run a delivery with the schedule's retry policy, log every attempt, settle the run.

Retries use `tenacity <https://tenacity.readthedocs.io/>`_: at most
``retry.max_attempts`` attempts, waiting ``min(base_backoff_s * 2**(n-1), max_backoff_s)``
seconds after failed attempt ``n`` (``wait_exponential``), and only after a
:class:`~stream_app.delivery.base.DeliveryError` whose ``retriable`` is true. Every attempt is
a ``delivery_log`` row. When the last attempt fails the run becomes ``failed`` with the cause;
the report's files stay in the artifact store (nothing here deletes them).

Run status after delivery: ``failed`` as soon as one of its reports fails (sticky);
otherwise, once every planned report is ``delivered`` or ``skipped``, the run is
``delivered`` (if any was delivered) or ``skipped``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from stream_app.crypto.keyring import KeyRing
from stream_app.crypto.keys import DataKeyNotFoundError, MasterKeyError
from stream_app.crypto.sealed import SealedValueError
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
from stream_app.delivery.email import DEFAULT_MAX_ATTACHMENT_BYTES, EmailMethod, SmtpConfig
from stream_app.delivery.log import final_outcomes, log_attempt
from stream_app.delivery.sftp import DEFAULT_CONNECT_TIMEOUT_S, SftpMethod
from stream_app.delivery.webhook import WebhookMethod
from stream_app.reports.artifacts import ArtifactIntegrityError, ArtifactReader, open_artifact
from stream_app.schedules.model import (
    ApiTarget,
    DeliveryTarget,
    EmailTarget,
    RetryPolicy,
    SftpTarget,
    WebhookTarget,
)
from stream_app.schedules.sealing import unseal_schedule
from stream_app.schedules.store import ClaimedRun, set_run_status
from stream_app.schemas.updates import ReportStatus
from stream_app.settings import parse_float, parse_int

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One finished attempt, as handed to the ``on_attempt`` callback.

    Attributes:
        attempt: 1-based number.
        outcome: ``delivered``, ``retrying`` or ``failed``.
        retriable: whether the error was retriable (False when delivered).
        detail: reply or cause.
        started_at / finished_at: UTC.
    """

    attempt: int
    outcome: str
    retriable: bool
    detail: str
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """Server-wide delivery settings.

    Attributes:
        smtp: the outgoing mail server.
        signer: download-link signer (base URL and secret).
        max_attachment_bytes: email attachment budget, bytes.
        sftp_connect_timeout_s: SFTP connect + login timeout, seconds.
    """

    smtp: SmtpConfig
    signer: LinkSigner
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
    sftp_connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S


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
    ``WEDDING_SFTP_CONNECT_TIMEOUT_S`` (20).

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
        raise ValueError(
            "WEDDING_LINK_SECRET: required (at least 32 bytes; it defaults to"
            " WEDDING_JWT_SECRET, which is empty)"
        )
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
    )


def build_method(target: DeliveryTarget, config: DeliveryConfig) -> DeliveryMethod:
    """The delivery method for a schedule's target."""
    if isinstance(target, EmailTarget):
        return EmailMethod(config.smtp, config.signer, config.max_attachment_bytes)
    if isinstance(target, WebhookTarget):
        return WebhookMethod(config.signer)
    if isinstance(target, SftpTarget):
        return SftpMethod(config.sftp_connect_timeout_s)
    assert isinstance(target, ApiTarget)
    return ApiMethod(config.signer)


async def resolve_files(
    status: ReportStatus, artifact_root: Path, keys: KeyRing
) -> tuple[DeliveryFile, ...]:
    """The files of a completed report, opened (decrypting) and checked against the size and
    SHA-256 of their plaintext. The check streams: one 64 KiB segment in memory at a time.

    Raises:
        PermanentDeliveryError: a file is missing, outside the store, fails authentication,
            or does not match its checksum.
    """
    files = []
    for link in status.artifacts:
        try:
            reader = await open_artifact(artifact_root, status.organization_id, link.path, keys)
            digest = await asyncio.to_thread(_plaintext_sha256, reader)
        except ArtifactIntegrityError as exc:
            raise PermanentDeliveryError(
                f"artifact {link.path!r} fails authentication: {exc}"
            ) from exc
        except (OSError, DataKeyNotFoundError, MasterKeyError) as exc:
            raise PermanentDeliveryError(f"artifact {link.path!r} unreadable: {exc}") from exc
        if reader.size != link.size_bytes or digest != link.sha256:
            raise PermanentDeliveryError(f"artifact {link.path!r} does not match its checksum")
        files.append(DeliveryFile(link=link, path=reader.path, reader=reader))
    return tuple(files)


def _plaintext_sha256(reader: ArtifactReader) -> str:
    sha = hashlib.sha256()
    for chunk in reader.iter_chunks():
        sha.update(chunk)
    return sha.hexdigest()


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.retriable


async def send_with_retry(
    method: DeliveryMethod,
    job: DeliveryJob,
    policy: RetryPolicy,
    *,
    on_attempt: Callable[[AttemptRecord], Awaitable[None]] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> tuple[SendReceipt | None, int, DeliveryError | None]:
    """Run ``method.send(job)`` under ``policy`` (see the module docstring).

    An exception other than :class:`DeliveryError` (a bug) ends the delivery as a permanent
    failure naming its type.

    Args:
        method: the delivery method.
        job: what to deliver.
        policy: attempts and backoff (seconds).
        on_attempt: awaited after every attempt (e.g. to write the delivery log).
        sleep: the backoff sleep (seconds); injectable for tests.

    Returns:
        ``(receipt, attempts, None)`` when delivered, ``(None, attempts, error)`` when the
        last attempt failed.
    """
    attempts = 0
    receipt: SendReceipt | None = None
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait_exponential(multiplier=policy.base_backoff_s, max=policy.max_backoff_s),
        retry=retry_if_exception(_retriable),
        reraise=True,
        sleep=sleep,
    )
    try:
        async for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                started = datetime.now(UTC)
                error: DeliveryError | None = None
                try:
                    receipt = await method.send(job)
                except DeliveryError as exc:
                    error = exc
                except Exception as exc:  # noqa: BLE001 - a bug in a method fails the delivery
                    error = PermanentDeliveryError(f"{type(exc).__name__}: {exc}")
                if error is None:
                    assert receipt is not None
                    record = AttemptRecord(
                        attempts, "delivered", False, receipt.detail, started, datetime.now(UTC)
                    )
                else:
                    last = not error.retriable or attempts >= policy.max_attempts
                    record = AttemptRecord(
                        attempts,
                        "failed" if last else "retrying",
                        error.retriable,
                        error.detail,
                        started,
                        datetime.now(UTC),
                    )
                if on_attempt is not None:
                    await on_attempt(record)
                if error is not None:
                    raise error
    except DeliveryError as exc:
        return None, attempts, exc
    return receipt, attempts, None


async def _settle_run(conn: asyncpg.Connection, run: ClaimedRun) -> None:
    """Set the run's status from the final outcome of each planned report (see module)."""
    async with conn.transaction():
        current = await conn.fetchval(
            "SELECT status FROM schedule_runs WHERE id = $1 FOR UPDATE", run.run_id
        )
        if current is None or current == "failed":
            return
        outcomes = await final_outcomes(conn, run.run_id)
        finals = [outcomes.get(p.report_id) for p in run.reports]
        if all(o in ("delivered", "skipped") for o in finals):
            await set_run_status(
                conn, run.run_id, "delivered" if "delivered" in finals else "skipped"
            )


async def deliver(
    pool: asyncpg.Pool,
    run: ClaimedRun,
    status: ReportStatus,
    artifact_root: Path,
    method: DeliveryMethod,
    *,
    sleep: Sleep = asyncio.sleep,
    keys: KeyRing | None = None,
) -> DeliveryResult:
    """Deliver one finished report of ``run`` with ``method`` under the schedule's retries.

    * A report that ended ``failed`` or ``cancelled`` is not delivered: the run is marked
      ``failed`` with the report's cause (logged as attempt 0).
    * An empty report (no data rows in any file) of a ``skip_if_empty`` schedule is logged
      ``skipped``.
    * A report already delivered or skipped for this run is not sent again (a redelivered
      ``report-results`` message is harmless).
    * Otherwise every attempt is logged; after the last failed attempt the run becomes
      ``failed`` with the cause. The report files are never removed.

    Args:
        pool: PostgreSQL pool (scheduler role).
        run: the run (see :func:`stream_app.schedules.store.find_run_for_report`).
        status: the report's final status (``completed``, ``failed`` or ``cancelled``).
        artifact_root: the artifact store's root folder.
        method: the method for ``run.schedule.delivery`` (see :func:`build_method`).
        sleep: backoff sleep, seconds (tests inject a fast one).
        keys: the worker's data-key cache (:func:`stream_app.crypto.keyring.get_keyring`);
            default: a new one on ``pool`` (the master key from the environment).

    Returns:
        The outcome, attempts, detail and, when delivered, where it went.

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
        async with pool.acquire() as conn:
            await write_log(conn, 0, "failed", False, cause, now, now)
            await set_run_status(conn, run.run_id, "failed", error=cause)
        return DeliveryResult(outcome="failed", attempts=0, detail=cause)

    async with pool.acquire() as conn:
        previous = (await final_outcomes(conn, run.run_id)).get(planned.report_id)
    if previous in ("delivered", "skipped"):
        return DeliveryResult(
            outcome="delivered" if previous == "delivered" else "skipped",
            attempts=0,
            detail=f"already {previous}",
        )
    if status.status != "completed":
        return await fail_without_attempt(f"report {status.status}: {status.error or 'no cause'}")
    if schedule.skip_if_empty and sum(a.rows for a in status.artifacts) == 0:
        now = datetime.now(UTC)
        async with pool.acquire() as conn:
            await write_log(conn, 0, "skipped", False, "report has no rows", now, now)
            await _settle_run(conn, run)
        return DeliveryResult(outcome="skipped", attempts=0, detail="report has no rows")
    try:
        if secrets_error is not None:
            raise PermanentDeliveryError(secrets_error)
        files = await resolve_files(status, artifact_root, keys)
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

    async def on_attempt(record: AttemptRecord) -> None:
        async with pool.acquire() as conn:
            await write_log(
                conn,
                record.attempt,
                record.outcome,
                record.retriable,
                record.detail,
                record.started_at,
                record.finished_at,
            )

    receipt, attempts, error = await send_with_retry(
        method, job, schedule.retry, on_attempt=on_attempt, sleep=sleep
    )
    if receipt is None:
        assert error is not None
        cause = f"{method.name} delivery failed after {attempts} attempt(s): {error.detail}"
        async with pool.acquire() as conn:
            await set_run_status(conn, run.run_id, "failed", error=cause)
        return DeliveryResult(outcome="failed", attempts=attempts, detail=cause)
    async with pool.acquire() as conn:
        await _settle_run(conn, run)
    return DeliveryResult(
        outcome="delivered",
        attempts=attempts,
        detail=receipt.detail,
        location=receipt.location,
        links=receipt.links,
    )
