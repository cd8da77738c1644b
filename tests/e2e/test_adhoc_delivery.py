"""A report request's own ``delivery`` carried out by a real worker, for every method.

Real receivers (an aiohttp webhook, aiosmtpd SMTP, an asyncssh SFTP server) get exactly the
report's files (bytes compared with the files the API serves), exactly once, even when the
``report-results`` message is delivered again; a failing webhook is retried, then the report
status shows the delivery ``failed`` with its cause; an analyst may not ask for a delivery;
the other tenant sees neither the report nor its delivery log.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import functools
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import asyncssh
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller

from stream_app.db.roles import APP_ROLE, as_role
from stream_app.db.tenancy import (
    Organization,
    Venue,
    tenant_transaction,
    upsert_organization,
    upsert_venue,
)
from stream_app.delivery.redact import HIDDEN_CAUSE
from stream_app.delivery.webhook import verify_signature
from stream_app.devservices.common import free_ports
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from stream_app.topics import REPORT_REQUESTS, REPORT_RESULTS
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth, db_value, read_topic, send
from tests.serving import PasswordLogin

pytestmark = pytest.mark.slow
GROUP = "wedding-adhoc-delivery"
ORG, OTHER = "adhoc-org", "adhoc-other"
SECRET = "adhoc-webhook-secret-0123456789"
SFTP_USER, SFTP_PASSWORD = "reports", "sftp-password-0123"
REQUEST = {
    "report_type": "compliance",
    "date_from": "2026-01-01",
    "date_to": "2026-03-31",
    "output_formats": ["csv", "json"],
    "cache_strategy": "skip",
}
FAST_RETRY = {"max_attempts": 2, "base_backoff_s": 1, "max_backoff_s": 1}


@dataclass
class Receivers:
    """The three real receivers and what each got."""

    hook_url: str
    posts: dict[str, list[tuple[dict[str, str], bytes]]] = field(default_factory=dict)
    mails: list[bytes] = field(default_factory=list)
    smtp_port: int = 0
    sftp_root: Path = Path()
    sftp_port: int = 0
    sftp_host_key: str = ""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.setdefault(request.match_info["name"], []).append(
            (dict(request.headers), await request.read())
        )
        if request.match_info["name"] == "slow":
            self.arrived.set()
            await self.release.wait()  # the test reads the status while the receiver holds on
        return web.Response(status=503 if request.match_info["name"] == "busy" else 204)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(envelope.content)
        return "250 accepted"


@pytest.fixture(scope="module")
def smtp_port() -> int:
    return free_ports(1)[0]


@pytest.fixture(scope="module")
async def receivers(
    tmp_path_factory: pytest.TempPathFactory, smtp_port: int
) -> AsyncIterator[Receivers]:
    app = web.Application()
    runner = web.AppRunner(app)
    port = free_ports(1)[0]
    rec = Receivers(hook_url=f"http://127.0.0.1:{port}/hook")
    app.router.add_post("/hook/{name}", rec.handle)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    smtp = Controller(rec, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    rec.smtp_port = smtp_port
    root = tmp_path_factory.mktemp("sftp-root")
    key = asyncssh.generate_private_key("ssh-ed25519")

    class Chrooted(asyncssh.SFTPServer):
        def __init__(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
            super().__init__(chan, chroot=str(root).encode())

    sftp = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[key],
        server_factory=lambda: PasswordLogin(SFTP_USER, SFTP_PASSWORD),
        sftp_factory=Chrooted,
    )
    rec.sftp_root, rec.sftp_port = root, sftp.sockets[0].getsockname()[1]
    rec.sftp_host_key = key.export_public_key().decode().strip()
    try:
        yield rec
    finally:
        sftp.close()
        await sftp.wait_closed()
        smtp.stop()
        await runner.cleanup()


@pytest.fixture(scope="module")
async def worker(
    settings: Settings, worker_factory: WorkerFactory, receivers: Receivers
) -> AsyncIterator[WorkerProcess]:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for org in (ORG, OTHER):
            await upsert_organization(conn, Organization(org, org, "Europe/London", "GBP"))
        await upsert_venue(conn, ORG, Venue("v1", "Hall", 1))  # for the venue-scoped token
    finally:
        await conn.close()
    w = worker_factory.start(
        GROUP,
        "adhoc",
        WEDDING_OFFSET_RESET="latest",
        WEDDING_ALLOW_PRIVATE_TARGETS="1",  # the receivers listen on loopback
        WEDDING_DELIVERY_ALLOW_PRIVATE_NETWORKS="127.0.0.0/8",  # ... at delivery time too
        WEDDING_SMTP_HOST="127.0.0.1",
        WEDDING_SMTP_PORT=str(receivers.smtp_port),
        WEDDING_SMTP_TLS="none",
        WEDDING_DELIVERY_POLL_S="0.2",
    )
    await w.wait_ready(timeout_s=120, min_partitions=4)
    try:
        yield w
    finally:
        w.stop()  # its consumer group would answer later modules' report requests too


def token(settings: Settings, org: str, role: str = "admin") -> dict[str, str]:
    return auth(settings, org, f"{role}-1", role=role)


async def request_with_delivery(
    worker: WorkerProcess, settings: Settings, delivery: dict[str, Any]
) -> str:
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.post(
            f"/orgs/{ORG}/reports",
            json={**REQUEST, "delivery": delivery},
            headers=auth(settings, ORG),
        ) as r,
    ):
        body = await r.json()
        assert r.status == 202, body
    report_id: str = body["report_id"]
    return report_id


async def final_delivery(
    worker: WorkerProcess, settings: Settings, report_id: str, timeout_s: float = 120
) -> dict[str, Any]:
    """Poll the report status until its delivery is over; the status."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(worker.url) as s:
        while time.monotonic() < deadline:
            async with s.get(f"/orgs/{ORG}/reports/{report_id}", headers=auth(settings, ORG)) as r:
                body: dict[str, Any] = await r.json()
            delivery = body.get("delivery") or {}
            if body["status"] in ("failed", "cancelled"):
                raise AssertionError(f"report {body['status']}: {body['error']}")
            if delivery.get("outcome") in ("delivered", "failed", "skipped"):
                return body
            await asyncio.sleep(0.3)
    raise TimeoutError(f"delivery of {report_id} not over in {timeout_s} s")


async def served_files(
    worker: WorkerProcess, settings: Settings, status: dict[str, Any]
) -> dict[str, bytes]:
    """Each file of the report as the API serves it, by format."""
    out = {}
    async with aiohttp.ClientSession(worker.url) as s:
        for artifact in status["artifacts"]:
            async with s.get(artifact["download_url"], headers=auth(settings, ORG)) as r:
                assert r.status == 200, await r.text()
                out[artifact["format"]] = await r.read()
            assert hashlib.sha256(out[artifact["format"]]).hexdigest() == artifact["sha256"]
    return out


async def delivered(
    worker: WorkerProcess, settings: Settings, delivery: dict[str, Any]
) -> tuple[str, dict[str, Any], dict[str, bytes]]:
    """Request a report with ``delivery``, wait until it is delivered; its id, final status
    and files as the API serves them."""
    report_id = await request_with_delivery(worker, settings, delivery)
    status = await final_delivery(worker, settings, report_id)
    assert status["delivery"]["outcome"] == "delivered", status["delivery"]
    return report_id, status, await served_files(worker, settings, status)


Deliver = Callable[[dict[str, Any]], Awaitable[tuple[str, dict[str, Any], dict[str, bytes]]]]


@pytest.fixture
def deliver(settings: Settings, worker: WorkerProcess) -> Deliver:
    """:func:`delivered` through the module's worker: ``await deliver(delivery)``."""
    return functools.partial(delivered, worker, settings)


async def redeliver_result(settings: Settings, report_id: str) -> None:
    """Publish the report's ``completed`` status on ``report-results`` once more."""
    records = [
        r
        for r in await read_topic(settings.kafka_bootstrap, REPORT_RESULTS)
        if orjson.loads(r.value).get("report_id") == report_id
        and orjson.loads(r.value).get("status") == "completed"
    ]
    assert records, "the report's completed status was published"
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(REPORT_RESULTS, records[-1].value, key=records[-1].key)
    finally:
        await producer.stop()


async def test_webhook_delivery_sends_the_report_once_with_sealed_secret(
    settings: Settings, receivers: Receivers, deliver: Deliver
) -> None:
    report_id, _, files = await deliver(
        {"method": "webhook", "url": f"{receivers.hook_url}/ok", "secret": SECRET},
    )
    await redeliver_result(settings, report_id)
    await asyncio.sleep(3)  # a second send would arrive within the poll interval
    posts = [(h, b) for h, b in receivers.posts.get("ok", []) if report_id.encode() in b]
    assert len(posts) == 1
    headers, body = posts[0]
    assert verify_signature(
        SECRET, headers["X-Wedding-Timestamp"], body, headers["X-Wedding-Signature"]
    )
    payload = orjson.loads(body)
    assert (payload["kind"], payload["report_id"], payload["schedule_id"]) == (
        "report",
        report_id,
        None,
    )
    async with aiohttp.ClientSession() as s:
        for artifact in payload["artifacts"]:
            async with s.get(artifact["download_url"]) as r:  # the signed link, no token
                assert r.status == 200
                assert await r.read() == files[artifact["format"]]
            assert artifact["sha256"] == hashlib.sha256(files[artifact["format"]]).hexdigest()
    assert sorted(a["format"] for a in payload["artifacts"]) == ["csv", "json"]
    # the recorded request holds the secret sealed, never in plaintext
    stored = await db_value(
        settings,
        "SELECT request::text FROM reports WHERE organization_id = $1 AND id = $2",
        ORG,
        report_id,
    )
    assert SECRET not in stored and "wedding-sealed:v1:" in stored


async def test_email_delivery_attaches_the_files_once(
    settings: Settings, worker: WorkerProcess, receivers: Receivers, deliver: Deliver
) -> None:
    report_id, status, files = await deliver(
        {"method": "email", "recipients": ["ops@wedding.example"]},
    )
    # the SMTP server's reply is the admin's to read; a viewer reads that it was delivered
    assert [a["detail"] for a in status["delivery"]["attempts"]] == ["accepted"]
    viewer = await report_status(worker, settings, report_id, "viewer")
    assert [a["detail"] for a in viewer["delivery"]["attempts"]] == ["delivered"]
    await asyncio.sleep(2)
    mails = [m for m in receivers.mails if report_id.encode() in m]
    assert len(mails) == 1
    msg = email.message_from_bytes(mails[0], policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["X-Wedding-Report-Id"] == report_id
    attached = {
        str(part.get_filename()).rsplit(".", 1)[-1]: part.get_payload(decode=True)
        for part in msg.iter_attachments()
    }
    assert attached == files


async def test_sftp_delivery_uploads_the_files_once(receivers: Receivers, deliver: Deliver) -> None:
    report_id, _, files = await deliver(
        {
            "method": "sftp",
            "host": "127.0.0.1",
            "port": receivers.sftp_port,
            "username": SFTP_USER,
            "password": SFTP_PASSWORD,
            "path": "/inbox",
            "host_key": receivers.sftp_host_key,
        },
    )
    uploaded = sorted((receivers.sftp_root / "inbox").glob(f"{ORG}_{report_id}_*"))
    assert {p.suffix.lstrip("."): p.read_bytes() for p in uploaded} == files
    assert not list((receivers.sftp_root / "inbox").glob(".*part*"))  # no temporary left


async def test_api_delivery_hands_out_links_to_the_files(
    settings: Settings, worker: WorkerProcess, deliver: Deliver
) -> None:
    _, status, files = await deliver(
        {"method": "api", "link_ttl_seconds": 3600},
    )
    links = status["delivery_links"]
    assert sorted(link["format"] for link in links) == ["csv", "json"]
    viewer = await report_status(worker, settings, status["report_id"], "viewer")
    assert viewer["delivery_links"] == []  # bearer links outlive a viewer's token
    async with aiohttp.ClientSession() as s:
        for link in links:
            async with s.get(link["url"]) as r:
                assert r.status == 200
                assert await r.read() == files[link["format"]]


async def test_failing_webhook_is_retried_then_failed_with_its_cause(
    settings: Settings, worker: WorkerProcess, receivers: Receivers
) -> None:
    report_id = await request_with_delivery(
        worker,
        settings,
        {
            "method": "webhook",
            "url": f"{receivers.hook_url}/busy",
            "secret": SECRET,
            "retry": FAST_RETRY,
        },
    )
    status = await final_delivery(worker, settings, report_id)
    delivery = status["delivery"]
    assert delivery["outcome"] == "failed"
    assert "HTTP 503" in delivery["error"]
    assert [(a["attempt"], a["outcome"]) for a in delivery["attempts"]] == [
        (1, "retrying"),
        (2, "failed"),
    ]
    assert len([b for _, b in receivers.posts.get("busy", []) if report_id.encode() in b]) == 2
    assert status["status"] == "completed"  # the files are kept


async def test_who_may_ask_for_a_delivery(settings: Settings, worker: WorkerProcess) -> None:
    body = {**REQUEST, "delivery": {"method": "api"}}
    async with aiohttp.ClientSession(worker.url) as s:
        for role, expected_field in (("viewer", None), ("analyst", "$.delivery")):
            async with s.post(
                f"/orgs/{ORG}/reports", json=body, headers=token(settings, ORG, role)
            ) as r:
                answer = await r.json()
                assert r.status == 403, answer
            if expected_field is not None:
                assert answer["error"]["field"] == expected_field
        async with s.post(
            f"/orgs/{ORG}/reports",
            json={**REQUEST, "delivery": {"method": "webhook", "url": "http://x.test/h"}},
            headers=token(settings, ORG),
        ) as r:
            answer = await r.json()
            assert r.status == 400, answer
            assert answer["error"]["field"] == "$.delivery.secret"
        # the analyst's report without a delivery is accepted
        async with s.post(
            f"/orgs/{ORG}/reports", json=REQUEST, headers=token(settings, ORG, "analyst")
        ) as r:
            assert r.status == 202, await r.text()


async def test_another_tenant_sees_neither_the_report_nor_its_delivery_log(
    settings: Settings, worker: WorkerProcess
) -> None:
    report_id = await request_with_delivery(worker, settings, {"method": "api"})
    await final_delivery(worker, settings, report_id)
    async with aiohttp.ClientSession(worker.url) as s:
        async with s.get(f"/orgs/{OTHER}/reports/{report_id}", headers=token(settings, OTHER)) as r:
            assert r.status == 404
        async with s.get(f"/orgs/{ORG}/reports/{report_id}", headers=token(settings, OTHER)) as r:
            assert r.status == 403
    conn = await asyncpg.connect(as_role(settings.postgres_dsn, APP_ROLE))
    try:
        counts = {}
        for org in (ORG, OTHER):
            async with tenant_transaction(conn, org):
                counts[org] = await conn.fetchval(
                    "SELECT count(*) FROM delivery_log WHERE report_id = $1", report_id
                )
    finally:
        await conn.close()
    assert counts == {ORG: 1, OTHER: 0}


async def report_status(
    worker: WorkerProcess, settings: Settings, report_id: str, role: str = "admin"
) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.get(f"/orgs/{ORG}/reports/{report_id}", headers=token(settings, ORG, role)) as r,
    ):
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
    return body


async def one_failed_webhook(
    worker: WorkerProcess, settings: Settings, url: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A report delivered by webhook to ``url`` in one attempt, once it is over: its status as
    the admin reads it, then as a viewer does."""
    delivery = {"method": "webhook", "url": url, "secret": SECRET, "retry": {"max_attempts": 1}}
    report_id = await request_with_delivery(worker, settings, delivery)
    admin = await final_delivery(worker, settings, report_id)
    return admin, await report_status(worker, settings, report_id, "viewer")


async def test_only_delivery_log_readers_see_targets_and_urls_are_masked(
    settings: Settings, worker: WorkerProcess, receivers: Receivers
) -> None:
    """Attack s4-3: a webhook URL with credentials and an api key in its query. The admin
    (deliveries:read) sees the target with both masked; a viewer sees no target at all."""
    host = receivers.hook_url.removeprefix("http://")
    url = f"http://hookuser:hookpass@{host}/busy?api_key=TOPSECRETKEY"
    admin, viewer = await one_failed_webhook(worker, settings, url)
    (attempt,) = admin["delivery"]["attempts"]
    assert attempt["target"] == f"POST http://***@{host}/busy?***"
    assert f"POST http://***@{host}/busy?***: HTTP 503" in admin["delivery"]["error"]
    (seen,) = viewer["delivery"]["attempts"]
    assert seen["target"] is None
    assert seen["outcome"] == "failed" and seen["started_at"] == attempt["started_at"]
    assert "POST <target>: HTTP 503" in viewer["delivery"]["error"]
    for body in (admin, viewer):
        text = orjson.dumps(body).decode()
        assert "hookpass" not in text and "TOPSECRETKEY" not in text
    assert host not in orjson.dumps(viewer["delivery"]).decode()


async def test_a_connection_error_names_its_host_to_admins_only(
    settings: Settings, worker: WorkerProcess
) -> None:
    """Attack s5-1: a receiver that cannot be reached. The admin reads the connection error
    with the host and port; a viewer reads that the receiver did not take it, and neither."""
    free_port = free_ports(1)[0]  # nothing listens there
    url = f"http://127.0.0.1:{free_port}/closed"
    admin, viewer = await one_failed_webhook(worker, settings, url)
    assert admin["delivery"]["outcome"] == "failed"
    assert f"127.0.0.1:{free_port}" in admin["delivery"]["error"]
    assert viewer["delivery"]["error"] == HIDDEN_CAUSE
    assert [a["detail"] for a in viewer["delivery"]["attempts"]] == [HIDDEN_CAUSE]
    assert str(free_port) not in orjson.dumps(viewer["delivery"]).decode()


async def test_an_attempt_under_way_is_sending(
    settings: Settings, worker: WorkerProcess, receivers: Receivers
) -> None:
    """Attacker finding: an attempt in progress showed ``queued`` with no attempt listed."""
    receivers.release.clear()
    report_id = await request_with_delivery(
        worker,
        settings,
        {"method": "webhook", "url": f"{receivers.hook_url}/slow", "secret": SECRET},
    )
    await asyncio.wait_for(receivers.arrived.wait(), 60)
    held = await report_status(worker, settings, report_id)
    assert (held["delivery"]["outcome"], held["delivery"]["attempts"]) == ("sending", [])
    receivers.release.set()
    done = await final_delivery(worker, settings, report_id)
    assert done["delivery"]["outcome"] == "delivered"


async def test_delivery_fields_are_checked(settings: Settings, worker: WorkerProcess) -> None:
    """Attack s4-4/7: each bad ``delivery`` is a 400 naming the field, never a 500."""
    hook = {"method": "webhook", "url": "http://x.test/h", "secret": SECRET}
    mail = {"method": "email", "recipients": ["ops@wedding.example"]}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**hook, "url": "http://example.com:0/"}, "$.delivery.url"),
        ({**hook, "extra": 1}, "$.delivery.extra"),
        ({**hook, "url": "http://x.test/" + "a" * 2048}, "$.delivery.url"),
        ({**hook, "secret": "s" * 1025}, "$.delivery.secret"),
        ({**hook, "retry": {"max_attempts": 1, "nope": 2}}, "$.delivery.retry.nope"),
        ({**hook, "retry": {"max_attempts": 50}}, "$.delivery.retry.max_attempts"),
        ({**mail, "subject": "s" * 201}, "$.delivery.subject"),
        ({**mail, "subject": "a\u2028b"}, "$.delivery.subject"),
        ({**mail, "subject": "a\u0085b"}, "$.delivery.subject"),
        ({**mail, "subject": "a\x00b"}, "$.delivery.subject"),
        ({**mail, "recipients": ["a@[127.0.0.1]"]}, "$.delivery.recipients"),
        ({**mail, "recipients": ["a\x00b@wedding.example"]}, "$.delivery.recipients"),
        ({**mail, "recipients": ["a" * 250 + "@x.example"]}, "$.delivery.recipients"),
        (
            {**mail, "recipients": [f"r{n}@wedding.example" for n in range(51)]},
            "$.delivery.recipients",
        ),
        ({"method": {}}, "$.delivery.method"),
    ]
    async with aiohttp.ClientSession(worker.url) as s:
        for delivery, field_name in cases:
            async with s.post(
                f"/orgs/{ORG}/reports",
                json={**REQUEST, "delivery": delivery},
                headers=token(settings, ORG),
            ) as r:
                answer = await r.json()
                assert r.status == 400, (delivery, answer)
                assert answer["error"]["field"] == field_name, (delivery, answer)
                assert "unhashable" not in str(answer)
        # 50 recipients are still accepted
        async with s.post(
            f"/orgs/{ORG}/reports",
            json={
                **REQUEST,
                "delivery": {**mail, "recipients": [f"r{n}@wedding.example" for n in range(50)]},
            },
            headers=token(settings, ORG),
        ) as r:
            assert r.status == 202, await r.text()


async def test_a_venue_scoped_token_may_not_ask_for_a_delivery(
    settings: Settings, worker: WorkerProcess
) -> None:
    headers = auth(settings, ORG, "venue-admin", role="admin", venues=["v1"])
    # a type a venue scope may request (compliance covers the whole organisation: refused to
    # a venue-scoped token whatever the delivery, tests/e2e/test_web_abuse.py)
    request = {**REQUEST, "report_type": "monthly_booking_summary"}
    async with aiohttp.ClientSession(worker.url) as s:
        for delivery in ({"method": "api"}, {"method": "webhook", "url": "http://x.test/h"}):
            async with s.post(
                f"/orgs/{ORG}/reports", json={**request, "delivery": delivery}, headers=headers
            ) as r:
                answer = await r.json()
                assert r.status == 403, answer
                assert answer["error"]["field"] == "venue_scope"
        async with s.post(f"/orgs/{ORG}/reports", json=request, headers=headers) as r:
            assert r.status == 202, await r.text()  # without a delivery it is allowed


async def test_a_delivery_that_cannot_happen_is_skipped_with_its_reason(
    settings: Settings, worker: WorkerProcess
) -> None:
    """Attack s4-6: a failed report, and a Kafka request whose delivery is invalid.

    Both are produced to ``report-requests`` (the HTTP entry refuses an unknown venue at once)."""
    failed_id = f"kafka-failing-report-{time.time_ns()}"
    report_id = f"kafka-bad-delivery-{time.time_ns()}"
    base = {
        **REQUEST,
        "schema_version": 1,
        "organization_id": ORG,
        "user_id": "producer",
        "requested_at": "2026-04-01T00:00:00+00:00",
    }
    failing = {
        **base,
        "report_id": failed_id,
        "data_filters": {"venue_id": ["no-such-venue"]},
        "delivery": {"method": "api"},
    }
    doc = {
        **base,
        "report_id": report_id,
        "delivery": {"method": "webhook", "url": "http://x.test/h", "secret": "short"},
    }
    await send(
        settings.kafka_bootstrap,
        REPORT_REQUESTS,
        [
            (f"{ORG}/{failed_id}".encode(), orjson.dumps(failing)),
            (f"{ORG}/{report_id}".encode(), orjson.dumps(doc)),
        ],
    )
    outcomes: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(outcomes) < 2:
        for rid in (failed_id, report_id):
            async with (
                aiohttp.ClientSession(worker.url) as s,
                s.get(f"/orgs/{ORG}/reports/{rid}", headers=token(settings, ORG)) as r,
            ):
                body = await r.json() if r.status == 200 else {}
            if (body.get("delivery") or {}).get("outcome") not in (None, "pending"):
                outcomes[rid] = body
        await asyncio.sleep(0.5)
    assert set(outcomes) == {failed_id, report_id}, outcomes
    failed = outcomes[failed_id]
    assert failed["status"] == "failed"
    assert failed["delivery"]["outcome"] == "skipped"
    assert failed["delivery"]["reason"].startswith("the report failed")
    invalid = outcomes[report_id]
    assert invalid["status"] == "completed"
    assert invalid["delivery"]["outcome"] == "skipped"
    assert invalid["delivery"]["reason"] == (
        "the delivery is invalid: $.delivery.secret: must be at least 16 characters"
    )
