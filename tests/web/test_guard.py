"""The request guard's caches: verified tokens (until their ``exp``, keyed by the whole
token) and the lockout answer (one store question for the requests asking at once).

In-process, with the rate limits counted in memory (no ``WEDDING_REDIS_URL`` here).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request

from stream_app.app import settings
from stream_app.queries import routing
from stream_app.web import guard, ratelimit
from stream_app.web.auth import PRINCIPAL_KEY, issue_token
from stream_app.web.errors import ApiError
from stream_app.web.permissions import Permission


def test_a_verified_token_is_kept_until_it_expires_and_refused_after() -> None:
    token = issue_token(
        settings.jwt_secret, user_id="u1", organization_id="org-a", ttl_seconds=2, role="viewer"
    )
    first = guard.verified(token)
    assert first.organization_id == "org-a" and first.role == "viewer"
    assert guard.verified(token) is first  # the cached principal, not a second decode
    # another signature is another key: never answered from the cache
    head, _, sig = token.rpartition(".")
    forged = f"{head}.{('A' if sig[0] != 'A' else 'B')}{sig[1:]}"
    with pytest.raises(ApiError) as refused:
        guard.verified(forged)
    assert refused.value.status == 401
    # past its exp the cache drops it and the token is refused as expired
    lifetimes = [first.expires_at - first.issued_at] if first.expires_at and first.issued_at else []
    assert lifetimes == [timedelta(seconds=2)]  # the ttl asked for
    expiry = first.expires_at.timestamp() if first.expires_at else time.time()
    time.sleep(max(0.0, expiry - time.time()) + 0.1)
    assert token not in guard._verified
    with pytest.raises(ApiError) as expired:
        guard.verified(token)
    assert (expired.value.status, expired.value.code) == (401, "token_expired")


async def test_concurrent_lockout_checks_ask_the_store_once_and_a_lockout_holds() -> None:
    client = "203.0.113.7"
    before = ratelimit._cached_lockout_test.cache_info().misses
    await asyncio.gather(*(ratelimit.check_not_locked_out(client) for _ in range(50)))
    assert ratelimit._cached_lockout_test.cache_info().misses == before + 1
    # the address's bad-token budget (settings.auth_failure_limit) used up: locked out at once,
    # whatever the cache said a moment ago
    budget = int(settings.auth_failure_limit.split("/")[0])
    for _ in range(budget):
        await ratelimit.record_auth_failure(client)
    with pytest.raises(ratelimit.RateLimitedError):
        await ratelimit.record_auth_failure(client)
    with pytest.raises(ratelimit.RateLimitedError) as locked:
        await ratelimit.check_not_locked_out(client)
    assert locked.value.field == "Authorization" and locked.value.retry_after_s >= 1


def test_a_worker_to_worker_token_outlives_its_use_by_over_a_minute() -> None:
    # a forwarded read may wait in the other worker's queue (and be retried) for tens of
    # seconds under load; its token must still be valid there
    token = routing._internal_token("org-fwd")
    assert routing._internal_token("org-fwd") == token  # reused, verified once by the receiver
    principal = guard.verified(token)
    assert principal.internal and principal.organization_id == "org-fwd"
    lifetimes = (
        [principal.expires_at - principal.issued_at]
        if principal.expires_at and principal.issued_at
        else []
    )
    assert lifetimes == [timedelta(seconds=120)]  # short: it travels in plain HTTP
    renew_at, _ = routing._internal["org-fwd"]
    assert 23 <= renew_at - time.monotonic() <= 24  # used for its first fifth only


async def test_an_organisation_out_of_in_flight_slots_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """503 ``busy`` names what is full, like every refusal (an attacker's finding: no field)."""
    org = "guard-busy-org"
    token = issue_token(
        settings.jwt_secret, user_id="u1", organization_id=org, ttl_seconds=60, role="viewer"
    )
    request = make_mocked_request(
        "GET", f"/orgs/{org}/payments/summary", headers={"Authorization": f"Bearer {token}"}
    )
    monkeypatch.setitem(guard._inflight, org, asyncio.Semaphore(0))  # every slot taken
    monkeypatch.setattr(guard, "INFLIGHT_WAIT_S", 0.05)
    spec = guard.RouteSpec(Permission.TABLES_READ)
    with pytest.raises(ApiError) as refused:
        async with guard.guarded(request, spec, {"org": org}):
            pytest.fail("the handler ran without a slot")
    assert orjson.loads(refused.value.response().text or "") == {
        "error": {
            "code": "busy",
            "reason": "this organisation has too many requests in flight; retry later",
            "field": "organization_id",
        }
    }
    assert refused.value.status == 503


@pytest.mark.parametrize(
    "spec",
    [
        guard.RouteSpec(Permission.AUDIT_READ),
        guard.RouteSpec(Permission.SCHEDULES_MANAGE),  # the report links' revocation
        guard.RouteSpec(Permission.REPORTS_REQUEST, rate_class="admin", venue_aware=True),
        guard.RouteSpec(Permission.TABLES_READ),  # a table read the workers do not forward
    ],
)
@pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")  # the guard's key
async def test_a_worker_to_worker_token_is_refused_off_the_forwarded_reads(
    spec: guard.RouteSpec,
) -> None:
    """An internal token was an admin of its organisation, exempt from revocation and the
    limits (a security review's finding): now it passes only the forwarded reads."""
    org = "guard-internal-org"
    token = routing._internal_token(org)
    request = make_mocked_request(
        "GET", f"/orgs/{org}/audit", headers={"Authorization": f"Bearer {token}"}
    )
    with pytest.raises(ApiError) as refused:
        async with guard.guarded(request, spec, {"org": org}):
            pytest.fail("the handler ran for an internal token")
    assert refused.value.status == 403
    assert orjson.loads(refused.value.response().text or "") == {
        "error": {
            "code": "forbidden",
            "reason": "role 'internal' (a worker-to-worker token) may only read the tables"
            " the workers forward to each other",
            "field": "role",
        }
    }
    forwarded = guard.RouteSpec(Permission.TABLES_READ, forwarded=True)
    async with guard.guarded(request, forwarded, {"org": org}):
        assert request[PRINCIPAL_KEY].role == "internal"
