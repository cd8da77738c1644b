"""Webhook delivery against a real aiohttp server started by the test, which checks the
HMAC-SHA256 signature itself (independently of the code under test)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web

from stream_app.delivery.targets import RetryPolicy, WebhookTarget
from stream_app.delivery.webhook import WebhookMethod
from stream_app.schedules.deliveries import deliver_run
from stream_app.schedules.model import Schedule
from tests.delivery.conftest import DELIVERED_AT_THE_THIRD_ATTEMPT, Deliverer
from tests.faults import tcp_proxy
from tests.schedules.builders import per_org
from tests.serving import serving

SECRET = "whsec-0123456789-abcdefghij"


@dataclass
class Receiver:
    """Replies with ``script`` in order (then 200); ``"slow"`` sleeps past the timeout."""

    script: list[str] = field(default_factory=list)
    calls: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    timestamps: list[str] = field(default_factory=list)
    delivery_keys: list[str] = field(default_factory=list)
    before: Callable[[], Awaitable[None]] | None = None  # run first on each request

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.before is not None:
            await self.before()
        body = await request.read()
        timestamp = request.headers["X-Wedding-Timestamp"]
        self.timestamps.append(timestamp)
        self.delivery_keys.append(request.headers.get("X-Wedding-Delivery", "absent"))
        expected = hmac.new(
            SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(request.headers["X-Wedding-Signature"], f"sha256={expected}"):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        action = self.script.pop(0) if self.script else "200"
        if action == "slow":
            await asyncio.sleep(1.0)
            return web.Response(status=200)
        if action != "200":
            return web.Response(status=int(action), text=f"scripted {action}")
        self.accepted.append(json.loads(body))
        return web.Response(status=200, text="ok")


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    recv = Receiver()
    async with serving({"/hook": recv.handle}) as port:
        yield recv, f"http://127.0.0.1:{port}/hook"


def hook_schedule(
    url: str, *, attempts: int = 4, timeout_s: float = 5.0
) -> Callable[[str], Schedule]:
    return per_org(
        "hook",
        date_range="previous_week",
        time_zone="America/New_York",
        delivery=WebhookTarget(url=url, secret=SECRET, timeout_s=timeout_s),
        retry=RetryPolicy(max_attempts=attempts, base_backoff_s=0.01, max_backoff_s=1),
    )


async def test_signed_post_is_accepted(
    make_run: Any, receiver: tuple[Receiver, str], delivering: Deliverer, webhook: WebhookMethod
) -> None:
    recv, url = receiver
    run, (status,) = await make_run(hook_schedule(url))
    result = await delivering(run, status, webhook)
    assert result.outcome == "delivered" and result.attempts == 1
    assert recv.bad_signatures == 0
    (doc,) = recv.accepted
    assert doc["report_id"] == status.report_id
    assert doc["schedule_id"] == run.schedule.schedule_id
    assert doc["fire_time"] == "2031-01-06T10:00:00+00:00"
    # fire 10:00 UTC = 05:00 EST on Mon 6 Jan: the previous ISO week is 30 Dec – 5 Jan
    assert (doc["date_from"], doc["date_to"]) == ("2030-12-30", "2031-01-05")
    (artifact,) = doc["artifacts"]
    assert artifact["sha256"] == status.artifacts[0].sha256
    claims = webhook.signer.verify(artifact["download_url"], now=datetime.now(UTC))
    assert claims.path == status.artifacts[0].path
    # the timestamp header is the current Unix time in whole seconds
    assert abs(int(recv.timestamps[0]) - datetime.now(UTC).timestamp()) < 30
    # the idempotency key names the tenant as well as its report (ids hold no "/")
    assert recv.delivery_keys == [f"{run.schedule.organization_id}/{status.report_id}"]


async def test_503_is_retried_with_backoff(
    make_run: Any, receiver: tuple[Receiver, str], delivering: Deliverer, webhook: WebhookMethod
) -> None:
    recv, url = receiver
    recv.script = ["503", "503"]
    run, (status,) = await make_run(hook_schedule(url))
    result, waits = await delivering.with_retries(run, status, webhook)
    assert result.outcome == "delivered" and result.attempts == 3
    assert recv.calls == 3 and len(recv.accepted) == 1 and recv.bad_signatures == 0
    assert waits == [0.01, 0.02]
    log = await delivering.log(run.run_id)
    assert [(e.attempt, e.outcome, e.retriable) for e in log] == DELIVERED_AT_THE_THIRD_ATTEMPT
    assert log[0].detail is not None and "HTTP 503" in log[0].detail


async def test_400_is_not_retried_and_fails_the_run(
    make_run: Any, receiver: tuple[Receiver, str], delivering: Deliverer, webhook: WebhookMethod
) -> None:
    recv, url = receiver
    recv.script = ["400"]
    run, (status,) = await make_run(hook_schedule(url))
    result = await delivering(run, status, webhook)
    assert result.outcome == "failed" and result.attempts == 1
    assert recv.calls == 1
    log = await delivering.log(run.run_id)
    assert [(e.attempt, e.outcome, e.retriable) for e in log] == [(1, "failed", False)]
    state, error = await delivering.run_row(run.run_id)
    assert state == "failed" and error is not None and "HTTP 400" in error
    assert (delivering.artifact_root / status.artifacts[0].path).is_file()


async def test_timeout_is_retried(
    make_run: Any, receiver: tuple[Receiver, str], delivering: Deliverer, webhook: WebhookMethod
) -> None:
    recv, url = receiver
    recv.script = ["slow"]
    run, (status,) = await make_run(hook_schedule(url, timeout_s=0.3))
    result, _ = await delivering.with_retries(run, status, webhook)
    assert result.outcome == "delivered" and result.attempts == 2
    log = await delivering.log(run.run_id)
    assert [e.outcome for e in log] == ["retrying", "delivered"]
    assert log[0].detail is not None and "no response within 0.3 s" in log[0].detail


async def test_5xx_until_attempts_run_out(
    make_run: Any, receiver: tuple[Receiver, str], delivering: Deliverer, webhook: WebhookMethod
) -> None:
    recv, url = receiver
    recv.script = ["500", "502", "503"]
    run, (status,) = await make_run(hook_schedule(url, attempts=3))
    result, _ = await delivering.with_retries(run, status, webhook)
    assert result.outcome == "failed" and result.attempts == 3 and recv.calls == 3
    assert "after 3 attempt(s)" in result.detail and "HTTP 503" in result.detail


@pytest.mark.parametrize("tamper", ["body", "timestamp"])
async def test_the_receiver_would_reject_a_tampered_delivery(
    receiver: tuple[Receiver, str], tamper: str
) -> None:
    """The test receiver's own check works (so its acceptance above means something)."""
    import aiohttp

    from stream_app.delivery.webhook import sign

    recv, url = receiver
    body, ts = b'{"a":1}', "1700000000"
    signature = sign(SECRET, ts, body)
    if tamper == "body":
        body = b'{"a":2}'
    else:
        ts = "1700000001"
    headers = {"X-Wedding-Timestamp": ts, "X-Wedding-Signature": signature}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        assert r.status == 401
    assert recv.bad_signatures == 1


async def test_an_outcome_after_the_send_survives_a_database_outage(
    make_run: Any,
    receiver: tuple[Receiver, str],
    delivering: Deliverer,
    webhook: WebhookMethod,
    pg_dsn: str,
) -> None:
    """PostgreSQL's connections reset and new ones refused for 1.5 s while the receiver
    answers (what a restart does to its clients; a TCP proxy in between): the delivery is
    recorded once PostgreSQL answers again, once. It was lost: the outcome unrecorded, the
    queue row attempted again when its lease ran out, 15 minutes later, sent a second time."""
    recv, url = receiver
    run, (status,) = await make_run(hook_schedule(url))
    dsn = urlsplit(pg_dsn)
    assert dsn.hostname is not None and dsn.port is not None
    async with tcp_proxy(dsn.hostname, dsn.port) as proxy:
        through = urlunsplit(
            dsn._replace(netloc=dsn.netloc.replace(f":{dsn.port}", f":{proxy.port}"))
        )
        async with asyncpg.create_pool(through, min_size=2, max_size=2) as pool:

            async def outage() -> None:
                proxy.outage(1.5)

            recv.before = outage
            result = await deliver_run(pool, run, status, delivering.artifact_root, webhook)
    assert proxy.cut == 2 and proxy.refused >= 1  # both connections reset, a reconnect refused
    assert result.outcome == "delivered" and result.attempts == 1
    assert recv.calls == 1 and len(recv.accepted) == 1
    assert [(e.attempt, e.outcome) for e in await delivering.log(run.run_id)] == [(1, "delivered")]
    assert await delivering.run_row(run.run_id) == ("delivered", None)
