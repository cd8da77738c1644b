"""Email delivery against a real SMTP server (aiosmtpd) started by the test."""

from __future__ import annotations

import base64
import email
import email.policy
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from stream_app.delivery.api import LinkSigner
from stream_app.delivery.base import PermanentDeliveryError
from stream_app.delivery.email import EmailMethod, SmtpConfig, check_single_line_headers
from stream_app.delivery.targets import EmailTarget, RetryPolicy
from stream_app.schedules.model import RecipientFilter, Schedule
from tests.delivery.conftest import DELIVERED_AT_THE_THIRD_ATTEMPT, Deliverer
from tests.schedules.builders import per_org


@dataclass
class Mailbox:
    """aiosmtpd handler: records messages; replies from ``rcpt_replies`` first, in order."""

    rcpt_replies: list[str] = field(default_factory=list)
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    rcpt_commands: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        self.rcpt_commands += 1
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    def parsed(self, index: int) -> EmailMessage:
        msg = email.message_from_bytes(self.messages[index][2], policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class SmtpServer:
    """The test's SMTP server: what it received, and the email method that sends to it."""

    mailbox: Mailbox
    port: int
    signer: LinkSigner

    def method(self, limit: int = 1_000_000) -> EmailMethod:
        """An :class:`EmailMethod` sending to this server (attachments up to ``limit`` bytes)."""
        return method(self.port, self.signer, limit)


@pytest.fixture
def smtp_server(signer: LinkSigner) -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(mailbox, port, signer)
    finally:
        controller.stop()


FAST = RetryPolicy(max_attempts=3, base_backoff_s=0.01, max_backoff_s=0.05)


def email_schedule(recipients: tuple[str, ...], **overrides: Any) -> Callable[[str], Schedule]:
    return per_org(
        "mail",
        **{
            "output_formats": ("csv", "json"),
            "time_zone": "Europe/London",
            "delivery": EmailTarget(recipients=recipients, subject="Monthly numbers"),
            "retry": FAST,
            **overrides,
        },
    )


def method(port: int, signer: LinkSigner, limit: int = 1_000_000) -> EmailMethod:
    smtp = SmtpConfig(host="127.0.0.1", port=port, sender="reports@wedding.test", start_tls=False)
    return EmailMethod(smtp, signer, max_attachment_bytes=limit)


async def test_email_with_attachments(
    make_run: Any, smtp_server: SmtpServer, report_bytes: dict[str, bytes], delivering: Deliverer
) -> None:
    mailbox = smtp_server.mailbox
    run, (status,) = await make_run(
        email_schedule(("ceo@studio.test", "ops@studio.test")), rows=24
    )  # csv and json of 24 rows each: the report has 24 rows, not 48
    result = await delivering(run, status, smtp_server.method())

    assert result.outcome == "delivered" and result.attempts == 1
    (sender, rcpts, _raw) = mailbox.messages[0]
    assert sender == "reports@wedding.test"
    assert rcpts == ["ceo@studio.test", "ops@studio.test"]
    msg = mailbox.parsed(0)
    assert msg["Subject"] == "Monthly numbers"
    assert msg["X-Wedding-Report-Id"] == status.report_id
    attachments = {p.get_filename(): p.get_payload(decode=True) for p in msg.iter_attachments()}
    assert attachments == {
        "monthly_booking_summary.csv": report_bytes["csv"],
        "monthly_booking_summary.json": report_bytes["json"],
    }
    body = msg.get_body(("plain",))
    assert body is not None and "2030-12-01 to 2030-12-31" in body.get_content()
    assert "data rows: 24." in body.get_content()
    assert await delivering.run_row(run.run_id) == ("delivered", None)
    (entry,) = await delivering.log(run.run_id)
    assert (entry.attempt, entry.outcome, entry.method) == (1, "delivered", "email")
    assert entry.target is not None and "ceo@studio.test" in entry.target


async def test_email_over_the_size_limit_sends_a_link(
    make_run: Any, smtp_server: SmtpServer, report_bytes: dict[str, bytes], delivering: Deliverer
) -> None:
    mailbox = smtp_server.mailbox
    run, (status,) = await make_run(email_schedule(("ceo@studio.test",)))
    csv_size = len(report_bytes["csv"])
    # room for the csv only: the json (listed second) goes as a link
    result = await delivering(run, status, smtp_server.method(limit=csv_size))
    assert result.outcome == "delivered"
    msg = mailbox.parsed(0)
    names = [p.get_filename() for p in msg.iter_attachments()]
    assert names == ["monthly_booking_summary.csv"]
    (link,) = result.links
    body = msg.get_body(("plain",))
    assert body is not None and link in body.get_content()
    claims = smtp_server.signer.verify(link, now=datetime.now(UTC))
    json_artifact = next(a for a in status.artifacts if a.format == "json")
    assert claims.path == json_artifact.path
    assert claims.organization_id == status.organization_id


async def test_email_transient_refusal_is_retried(
    make_run: Any, smtp_server: SmtpServer, delivering: Deliverer
) -> None:
    mailbox = smtp_server.mailbox
    mailbox.rcpt_replies = ["451 4.7.1 greylisted, try later"] * 2
    run, (status,) = await make_run(email_schedule(("ceo@studio.test",)))
    result, waits = await delivering.with_retries(run, status, smtp_server.method())
    assert result.outcome == "delivered" and result.attempts == 3
    assert len(mailbox.messages) == 1
    assert waits == [0.01, 0.02]  # exponential: base, 2 × base
    log = await delivering.log(run.run_id)
    assert [(e.attempt, e.outcome, e.retriable) for e in log] == DELIVERED_AT_THE_THIRD_ATTEMPT
    assert log[0].detail is not None and "451" in log[0].detail


async def test_email_permanent_refusal_fails_the_run_and_keeps_the_report(
    make_run: Any, smtp_server: SmtpServer, delivering: Deliverer
) -> None:
    mailbox = smtp_server.mailbox
    mailbox.rcpt_replies = ["550 5.1.1 no such mailbox"]
    run, (status,) = await make_run(email_schedule(("nobody@studio.test",)))
    result = await delivering(run, status, smtp_server.method())
    assert result.outcome == "failed" and result.attempts == 1
    assert mailbox.messages == [] and mailbox.rcpt_commands == 1  # not retried
    state, error = await delivering.run_row(run.run_id)
    assert state == "failed"
    assert error is not None and "550" in error and "after 1 attempt" in error
    for artifact in status.artifacts:  # the report itself is kept
        assert (delivering.artifact_root / artifact.path).is_file()


async def test_email_server_down_retries_then_fails(
    make_run: Any, signer: LinkSigner, delivering: Deliverer
) -> None:
    run, (status,) = await make_run(email_schedule(("ceo@studio.test",)))
    closed_port = free_port()  # nothing listens there
    result, _ = await delivering.with_retries(run, status, method(closed_port, signer))
    assert result.outcome == "failed" and result.attempts == 3
    log = await delivering.log(run.run_id)
    assert [e.outcome for e in log] == ["retrying", "retrying", "failed"]
    assert (await delivering.run_row(run.run_id))[0] == "failed"


async def test_each_audience_gets_its_own_report(
    make_run: Any, smtp_server: SmtpServer, delivering: Deliverer
) -> None:
    mailbox = smtp_server.mailbox
    build = email_schedule(
        ("boss@studio.test", "venue1@studio.test"),
        recipient_filters=(
            RecipientFilter(recipient="venue1@studio.test", field="venue_id", values=("v1",)),
        ),
    )
    run, statuses = await make_run(build)
    assert len(statuses) == 2
    first = await delivering(run, statuses[0], smtp_server.method())
    assert first.outcome == "delivered"
    assert (await delivering.run_row(run.run_id))[0] == "submitted"  # one audience still pending
    await delivering(run, statuses[1], smtp_server.method())
    assert [m[1] for m in mailbox.messages] == [["boss@studio.test"], ["venue1@studio.test"]]
    assert [mailbox.parsed(i)["X-Wedding-Report-Id"] for i in (0, 1)] == [
        s.report_id for s in statuses
    ]
    assert (await delivering.run_row(run.run_id))[0] == "delivered"


async def test_redelivered_status_is_not_sent_twice(
    make_run: Any, smtp_server: SmtpServer, delivering: Deliverer
) -> None:
    mailbox = smtp_server.mailbox
    run, (status,) = await make_run(email_schedule(("ceo@studio.test",)))
    await delivering(run, status, smtp_server.method())
    again = await delivering(run, status, smtp_server.method())
    assert (again.outcome, again.attempts, again.detail) == ("delivered", 0, "already delivered")
    assert len(mailbox.messages) == 1


def test_a_header_that_decodes_to_several_lines_is_not_sent() -> None:
    """An attacker round's subject, ``=?utf-8?b?…?=`` holding CRLF and headers, wrote a second
    From and a body of its own from the platform's address. It is refused when a target is
    saved (tests/delivery/test_target_limits.py; a stored one stops its schedule); the message
    check refuses it too."""
    msg = EmailMessage()
    msg["From"] = "reports@wedding.test"
    msg["Subject"] = "=?utf-8?b?" + base64.b64encode(b"x\r\nFrom: ceo@bank.example").decode() + "?="
    assert "From: ceo@bank.example" in msg.as_string()  # what the package would write
    with pytest.raises(PermanentDeliveryError) as refused:
        check_single_line_headers(msg)
    assert str(refused.value) == "the Subject header would hold a line break once decoded: not sent"
    fine = EmailMessage()
    fine["Subject"] = "Réservations — été =? 2026"
    check_single_line_headers(fine)
