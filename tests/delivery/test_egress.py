"""SSRF through webhook host names (issue 9, attack 5): names are resolved when the delivery is
made and internal addresses are refused, against real HTTP receivers on loopback."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web

from stream_app.delivery.api import LinkSigner
from stream_app.delivery.egress import EgressPolicy, parse_allow_networks, refusal
from stream_app.delivery.log import fetch_run_log
from stream_app.delivery.targets import RetryPolicy, WebhookTarget
from stream_app.delivery.webhook import WebhookMethod
from stream_app.schedules.model import Schedule
from tests.delivery.conftest import Deliverer
from tests.schedules.builders import per_org
from tests.serving import serving

SECRET = "whsec-0123456789-abcdefghij"


@dataclass
class Receiver:
    """Counts every request; answers ``reply`` (status, headers)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    calls: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        await request.read()
        return web.Response(status=self.status, headers=self.headers, text="internal reply")


@asynccontextmanager
async def _internal_service(host: str) -> AsyncIterator[tuple[Receiver, int]]:
    """A :class:`Receiver` answering every method and path on ``host``, and its port."""
    recv = Receiver()
    async with serving({"/{tail:.*}": recv.handle}, host=host, method="*") as port:
        yield recv, port


@pytest_asyncio.fixture
async def internal() -> AsyncIterator[tuple[Receiver, int]]:
    """An 'internal service' on 127.0.0.1."""
    async with _internal_service("127.0.0.1") as served:
        yield served


@pytest_asyncio.fixture
async def other_internal() -> AsyncIterator[tuple[Receiver, int]]:
    """A second internal service, on 127.0.0.2 (Linux answers the whole of 127/8)."""
    async with _internal_service("127.0.0.2") as served:
        yield served


def hook(url: str) -> Callable[[str], Schedule]:
    return per_org(
        "ssrf",
        created_by="attacker",
        date_range="previous_week",
        delivery=WebhookTarget(url=url, secret=SECRET, timeout_s=5),
        retry=RetryPolicy(max_attempts=5, base_backoff_s=0.01, max_backoff_s=1),
    )


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("100.64.0.1", "shared address space (CGNAT)"),
        ("100.100.100.200", "shared address space (CGNAT)"),  # Alibaba metadata
        ("169.254.169.254", "link-local (cloud metadata)"),  # AWS/GCP/Azure metadata
        ("fd00:ec2::254", "private"),  # AWS metadata over IPv6 (unique local)
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local (cloud metadata)"),
        ("240.0.0.1", "reserved"),
        ("::ffff:8.8.8.8", "IPv4-mapped IPv6"),
        ("::ffff:127.0.0.1", "IPv4-mapped IPv6"),
        ("2002:7f00:1::", "6to4 address of 127.0.0.1"),
        ("192.0.2.1", "private"),  # documentation range
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_refused_ranges(address: str, reason: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


def test_allow_list_is_explicit() -> None:
    policy = EgressPolicy(allow_networks=parse_allow_networks("127.0.0.1/32"))
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.2")) == "loopback"
    assert EgressPolicy().refusal(ipaddress.ip_address("127.0.0.1")) == "loopback"
    with pytest.raises(ValueError, match="WEDDING_DELIVERY_ALLOW_PRIVATE_NETWORKS"):
        parse_allow_networks("127.0.0.1/8")  # host bits set: a typo, not a network


@pytest.mark.parametrize(
    "host",
    [
        "localhost",  # a name: resolved at delivery time, to 127.0.0.1
        "127.0.0.1",  # a literal: aiohttp skips the resolver, checked before connecting
        # (2130706433, 127.0.0.1 as one number, is refused when the target is made:
        # tests/delivery/test_targets.py)
        "127\u30020\u30020\u30021",  # ideographic full stops: yarl makes them '.'
        "127\uff0e0\uff0e0\uff0e1",  # fullwidth full stops
        "127\uff610\uff610\uff611",  # halfwidth ideographic full stops
    ],
)
async def test_internal_address_is_refused_at_delivery(
    db: asyncpg.Pool,
    make_run: Any,
    signer: LinkSigner,
    internal: tuple[Receiver, int],
    host: str,
    delivering: Deliverer,
) -> None:
    recv, port = internal
    run, (status,) = await make_run(hook(f"http://{host}:{port}/orgs/victim/schedules"))
    result = await delivering(run, status, WebhookMethod(signer, EgressPolicy()))
    assert (result.outcome, result.attempts) == ("failed", 1)  # refused, never retried
    assert recv.calls == 0  # the internal service got nothing
    async with db.acquire() as conn:
        (entry,) = await fetch_run_log(conn, run.run_id)
        row = await conn.fetchrow(
            "SELECT status, error FROM schedule_runs WHERE id = $1", run.run_id
        )
        queued = await conn.fetchval(
            "SELECT count(*) FROM delivery_queue WHERE run_id = $1", run.run_id
        )
    assert (entry.outcome, entry.retriable) == ("failed", False)
    detail = entry.detail or ""  # absent: the search below fails
    # localhost may also answer ::1 where /etc/hosts lists it
    checked = host if host.isascii() else "127.0.0.1"  # what aiohttp would connect to
    assert re.search(rf"refused: {checked!r} resolves to (127\.0\.0\.1|::1) \(loopback\)", detail)
    assert "internal reply" not in detail  # no reply of the internal service is shown
    assert row is not None and row["status"] == "failed" and "refused" in row["error"]
    assert queued == 0


async def test_name_of_an_allowed_address_is_delivered(
    make_run: Any, signer: LinkSigner, internal: tuple[Receiver, int], delivering: Deliverer
) -> None:
    """The same name with 127.0.0.1 on the allow-list goes through: the refusal above is the
    address check, not a broken resolver."""
    recv, port = internal
    run, (status,) = await make_run(hook(f"http://localhost:{port}/hook"))
    allow = EgressPolicy(allow_networks=parse_allow_networks("127.0.0.1/32, ::1/128"))
    result = await delivering(run, status, WebhookMethod(signer, allow))
    assert result.outcome == "delivered" and recv.calls == 1


async def test_redirect_to_an_internal_address_is_refused(
    make_run: Any,
    signer: LinkSigner,
    internal: tuple[Receiver, int],
    other_internal: tuple[Receiver, int],
    delivering: Deliverer,
) -> None:
    """An allowed receiver answers 307 to a refused address: the POST does not follow."""
    allowed, port = internal
    target, target_port = other_internal
    allowed.status = 307
    allowed.headers = {"Location": f"http://127.0.0.2:{target_port}/orgs/victim/schedules"}
    run, (status,) = await make_run(hook(f"http://127.0.0.1:{port}/hook"))
    allow = EgressPolicy(allow_networks=parse_allow_networks("127.0.0.1/32"))
    result = await delivering(run, status, WebhookMethod(signer, allow))
    assert (result.outcome, result.attempts) == ("failed", 1)
    assert allowed.calls == 1 and target.calls == 0
    assert "redirect to 'http://127.0.0.2:" in result.detail
    assert "never followed" in result.detail
