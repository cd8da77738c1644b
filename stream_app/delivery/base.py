"""What every delivery method shares: the job it is given, its result, and its errors.

Error taxonomy: a method raises :class:`DeliveryError` (never anything else for a failure it
can foresee). ``retriable`` says whether trying again may help: connection failures,
timeouts, HTTP 5xx and SMTP 4xx replies are retriable (:class:`TransientDeliveryError`);
rejected credentials, HTTP 4xx, SMTP 5xx replies, a wrong host key or a missing file are not
(:class:`PermanentDeliveryError`). :mod:`stream_app.delivery.dispatch` retries only the
former, with the order's backoff.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import ClassVar, Literal

from stream_app.delivery.redact import MAX_KEPT_CHARS, clip
from stream_app.delivery.targets import DeliveryTarget, RetryPolicy
from stream_app.errors import WeddingError
from stream_app.reports.artifacts import ArtifactReader
from stream_app.schemas.updates import ArtifactLink, ReportStatus

Outcome = Literal["delivered", "skipped", "failed", "retrying"]


class DeliveryError(WeddingError):
    """A delivery attempt failed.

    Attributes:
        retriable: whether another attempt may succeed.
        detail: the cause, in words (no secrets).
    """

    def __init__(self, detail: str) -> None:
        detail = clip(detail, 2 * MAX_KEPT_CHARS)  # parts come from the receiver
        super().__init__(detail)
        self.detail = detail


class TransientDeliveryError(DeliveryError):
    """A failure that may pass: connection refused or lost, timeout, HTTP 5xx, SMTP 4xx."""

    retriable = True


class PermanentDeliveryError(DeliveryError):
    """A failure that will repeat: bad credentials or address, HTTP 4xx, SMTP 5xx."""

    retriable = False


@dataclass(frozen=True, slots=True)
class DeliveryFile:
    """A report file to deliver.

    Attributes:
        link: the artifact as the report agent stored it (format, relative path, checksum).
        path: the file on this machine (artifact root / ``link.path``); encrypted: read it
            through ``reader``, never directly.
        reader: the opened artifact (:func:`stream_app.reports.artifacts.open_artifact`).
    """

    link: ArtifactLink
    path: Path
    reader: ArtifactReader

    def chunks(self) -> AsyncIterator[bytes]:
        """The decrypted file, one authenticated segment (at most 64 KiB) at a time.

        Raises:
            ArtifactIntegrityError: a segment fails authentication.
        """
        return self.reader.chunks()

    async def read_bytes(self) -> bytes:
        """The whole decrypted file (for bounded uses: email attachments).

        Raises:
            ArtifactIntegrityError: a segment fails authentication.
            OSError: the file cannot be read.
        """
        return await asyncio.to_thread(self.reader.read_all)

    @property
    def filename(self) -> str:
        """The file's base name (``monthly_booking_summary.csv``)."""
        return self.path.name


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryOrder:
    """One report to deliver to one target, whoever asked for it (a schedule run or the
    report request itself).

    Attributes:
        source: who asked: the name of the :class:`~stream_app.delivery.worker.DeliverySource`
            that made the order (``schedule``, ``adhoc``) and settles its outcome.
        organization_id: the tenant.
        report_id / report_type: the report.
        target: where it goes (secrets sealed as stored).
        secrets_owner: the owner its sealed secrets are bound to (a schedule id, or
            :func:`stream_app.delivery.sealing.adhoc_owner` of the report id).
        retry: how often and how patiently to try.
        date_from / date_to: the report's inclusive local date range.
        fire_time: the run's fire time, or when the report was requested (UTC); names the
            uploaded files.
        recipients: the email recipients (empty for other methods).
        filters: the audience's filters (recorded; applied by the report when supported).
        skip_if_empty: do not deliver a report whose files have no data rows.
        schedule_id / run_id: the schedule run that asked, or None for a report's own delivery.
    """

    source: str
    organization_id: str
    report_id: str
    report_type: str
    target: DeliveryTarget
    secrets_owner: str
    retry: RetryPolicy
    date_from: date
    date_to: date
    fire_time: datetime
    recipients: tuple[str, ...] = ()
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    skip_if_empty: bool = False
    schedule_id: str | None = None
    run_id: int | None = None


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """One order with the report's final status and its files: what a method sends.

    Attributes:
        order: what to deliver where (secrets opened).
        status: the report's ``completed`` status.
        files: the report's files, checked against their SHA-256.
    """

    order: DeliveryOrder
    status: ReportStatus
    files: tuple[DeliveryFile, ...]

    @property
    def organization_id(self) -> str:
        """The tenant."""
        return self.order.organization_id

    @property
    def target(self) -> DeliveryTarget:
        """Where it goes."""
        return self.order.target

    @property
    def report_id(self) -> str:
        """The report."""
        return self.order.report_id

    @property
    def schedule_id(self) -> str | None:
        """The schedule that asked, or None."""
        return self.order.schedule_id

    @property
    def recipients(self) -> tuple[str, ...]:
        """The email recipients (empty for other methods)."""
        return self.order.recipients

    @property
    def total_rows(self) -> int:
        """Data rows of the report, counted once: every file (csv, json, ...) holds the same
        rows, so this is the largest count of one file, not their sum."""
        return max((f.link.rows for f in self.files), default=0)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one delivery attempt came to.

    Attributes:
        outcome: ``delivered``, ``skipped`` (e.g. an empty report with ``skip_if_empty``),
            ``failed`` or ``retrying`` (the next attempt is queued).
        attempts: the number of the attempt made (0 when nothing was attempted).
        detail: what happened, in words (the cause when failed).
        location: where it went (recipients, URL, remote paths, links), when delivered.
        links: signed download links created for the delivery (API and email-link cases).
        due_at: when ``retrying``, the time the next attempt is due (UTC).
    """

    outcome: Outcome
    attempts: int
    detail: str
    location: str | None = None
    links: tuple[str, ...] = ()
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IssuedLink:
    """A signed download link a delivery handed out (recorded in ``download_links``).

    Attributes:
        url: the link (a credential until it expires or is revoked).
        format: the file's format.
        link_id: the link's ``jti``.
        issued_at / expires_at: UTC.
    """

    url: str
    format: str
    link_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """What one successful attempt reports back.

    Attributes:
        location: where the report went (no secrets).
        detail: anything worth logging (server reply, partial refusals).
        links: signed download links handed out.
        issued: the same links with their format, id and expiry (to record them).
    """

    location: str
    detail: str = ""
    links: tuple[str, ...] = ()
    issued: tuple[IssuedLink, ...] = ()


class DeliveryMethod(ABC):
    """One way of delivering a report. Implementations hold server-wide configuration only;
    the target is ``job.target``."""

    name: ClassVar[str]

    @abstractmethod
    async def send(self, job: DeliveryJob) -> SendReceipt:
        """Make one delivery attempt.

        Raises:
            DeliveryError: the attempt failed (``retriable`` says whether to try again).
        """

    @abstractmethod
    def describe_target(self, job: DeliveryJob) -> str:
        """Where ``job`` would go, for the delivery log (never a secret)."""
