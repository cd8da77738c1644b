"""Email delivery over SMTP (aiosmtplib).

Files are attached in their listed order while the attachments' total stays within
``max_attachment_bytes``; a file that would pass the limit is sent as a signed download link
instead (see :mod:`stream_app.delivery.api`). Classification of failures: SMTP replies 4xx
(e.g. ``451`` greylisting), connection errors and timeouts are retriable; 5xx replies (``550``
unknown mailbox, ``535`` bad credentials) are permanent. When the server refuses some
recipients and accepts others, the message counts as delivered and the refusals are logged.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import ClassVar

import aiosmtplib

from stream_app.delivery.api import LinkSigner
from stream_app.delivery.base import (
    DeliveryError,
    DeliveryJob,
    DeliveryMethod,
    IssuedLink,
    PermanentDeliveryError,
    SendReceipt,
    TransientDeliveryError,
)
from stream_app.delivery.targets import EmailTarget, link_ttl_seconds
from stream_app.reports.artifacts import ArtifactIntegrityError

DEFAULT_MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """The outgoing mail server.

    Attributes:
        host / port: the SMTP server.
        sender: the ``From`` address.
        username / password: SMTP AUTH credentials (both or neither; password not in repr).
        use_tls: implicit TLS (port 465 style).
        start_tls: ``True`` requires STARTTLS, ``False`` forbids it, ``None`` uses it when
            the server offers it.
        timeout_s: per-operation timeout, seconds.
    """

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    start_tls: bool | None = None
    timeout_s: float = 30.0


def _code_error(code: int, message: str) -> DeliveryError:
    if 400 <= code < 500:
        return TransientDeliveryError(message)
    return PermanentDeliveryError(message)


def check_single_line_headers(msg: EmailMessage) -> None:
    """Refuse a message whose header decodes to more than one line: it would write headers or
    a body of its own (an attacker round's subject ``=?utf-8?b?<CRLF + From: …>?=``, decoded by
    Python's ``email`` package and written out raw: CPython's CVE-2024-6923). Encoded words
    are refused when a target is saved (:mod:`stream_app.delivery.targets`); this holds for
    any other way a header gets one.

    Raises:
        PermanentDeliveryError: naming the header.
    """
    for name, value in msg.items():
        if "\r" in str(value) or "\n" in str(value):
            raise PermanentDeliveryError(
                f"the {name} header would hold a line break once decoded: not sent"
            )


class EmailMethod(DeliveryMethod):
    """Delivery by email (see the module docstring).

    Attributes:
        smtp: the mail server.
        signer: signs links for files over the size limit.
        max_attachment_bytes: attachments' total size limit, bytes.
    """

    name: ClassVar[str] = "email"

    def __init__(
        self,
        smtp: SmtpConfig,
        signer: LinkSigner,
        max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES,
    ) -> None:
        if max_attachment_bytes < 0:
            raise ValueError("max_attachment_bytes: must not be negative")
        self.smtp = smtp
        self.signer = signer
        self.max_attachment_bytes = max_attachment_bytes

    def describe_target(self, job: DeliveryJob) -> str:
        """The recipients and the SMTP server."""
        return f"smtp {self.smtp.host}:{self.smtp.port} to {', '.join(job.recipients)}"

    async def build_message(
        self, job: DeliveryJob, now: datetime
    ) -> tuple[EmailMessage, list[IssuedLink]]:
        """The message for ``job`` and the download links it carries instead of attachments.

        Raises:
            PermanentDeliveryError: a file cannot be read.
        """
        target = job.target
        subject = target.subject if isinstance(target, EmailTarget) else None
        title = job.status.report_type.replace("_", " ")
        msg = EmailMessage()
        msg["From"] = self.smtp.sender
        msg["To"] = ", ".join(job.recipients)
        date_from, date_to = job.order.date_from, job.order.date_to
        msg["Subject"] = subject or f"{title} {date_from.isoformat()} – {date_to.isoformat()}"
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = make_msgid(domain=self.smtp.sender.rpartition("@")[2] or None)
        msg["X-Wedding-Report-Id"] = job.report_id
        check_single_line_headers(msg)
        kind, origin = (
            ("scheduled report", f"Schedule: {job.schedule_id}")
            if job.schedule_id is not None
            else ("report", f"Report: {job.report_id}")
        )
        lines = [
            f"The {kind} {title!r} for {date_from} to {date_to} is ready.",
            f"{origin}; data rows: {job.total_rows}.",
            "",
        ]
        attach: list[tuple[str, bytes]] = []
        links: list[IssuedLink] = []
        budget = self.max_attachment_bytes
        for f in job.files:
            if f.link.size_bytes <= budget:
                try:
                    data = await f.read_bytes()
                except (OSError, ArtifactIntegrityError) as exc:
                    raise PermanentDeliveryError(f"cannot read {f.link.path}: {exc}") from exc
                attach.append((f.filename, data))
                budget -= len(data)
                lines.append(f"Attached: {f.filename} ({f.link.size_bytes} bytes).")
            else:
                link = self.signer.sign(
                    job.organization_id,
                    f.link.path,
                    now=now,
                    report_id=job.report_id,
                    schedule_id=job.schedule_id,
                    ttl_s=link_ttl_seconds(job.target),
                )
                links.append(link.issued(f.link.format))
                lines.append(
                    f"Download {f.filename} ({f.link.size_bytes} bytes, too large to attach) "
                    f"until {link.expires_at:%Y-%m-%d %H:%M} UTC:\n{link.url}"
                )
        msg.set_content("\n".join(lines) + "\n")
        for filename, data in attach:
            mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
            maintype, subtype = mime.split("/", 1)
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        return msg, links

    async def send(self, job: DeliveryJob) -> SendReceipt:
        """Send the message once.

        Raises:
            TransientDeliveryError: connection error, timeout, SMTP 4xx reply.
            PermanentDeliveryError: SMTP 5xx reply (all recipients refused, bad credentials),
                no recipients, or a file cannot be read.
        """
        if not job.recipients:
            raise PermanentDeliveryError("no recipients")
        msg, links = await self.build_message(job, datetime.now(UTC))
        where = f"{', '.join(job.recipients)} via {self.smtp.host}:{self.smtp.port}"
        try:
            refused, reply = await aiosmtplib.send(
                msg,
                sender=self.smtp.sender,
                recipients=list(job.recipients),
                hostname=self.smtp.host,
                port=self.smtp.port,
                username=self.smtp.username,
                password=self.smtp.password,
                use_tls=self.smtp.use_tls,
                start_tls=self.smtp.start_tls,
                timeout=self.smtp.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            message = f"all recipients refused: {text}"
            if codes and all(400 <= c < 500 for c in codes):
                raise TransientDeliveryError(message) from exc
            raise PermanentDeliveryError(message) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _code_error(exc.code, f"SMTP {exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPNotSupported as exc:  # e.g. STARTTLS or AUTH not offered
            raise PermanentDeliveryError(f"SMTP: {exc}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientDeliveryError(f"SMTP {type(exc).__name__}: {exc}") from exc
        detail = reply
        if refused:
            detail += "; refused: " + "; ".join(
                f"{addr}: {r.code} {r.message}" for addr, r in refused.items()
            )
        return SendReceipt(
            location=where,
            detail=detail,
            links=tuple(link.url for link in links),
            issued=tuple(links),
        )
