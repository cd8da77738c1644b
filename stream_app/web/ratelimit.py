"""Rate limits of the HTTP API, counted in a store every worker shares (the ``limits`` package).

Part of the HTTP layer; touches only the rate-limit store. Three kinds of limit:

- per token and route class (``reads``, ``reports``, ``aggregations``, ``downloads``,
  ``admin``): ``settings.rate_limits`` (``WEDDING_RATE_LIMITS``); a signed download link counts
  as a token of the ``downloads`` class;
- per organisation and route class, all its tokens together: ``settings.org_rate_limits``;
- per client address, requests with a bad token (lockout): ``settings.auth_failure_limit``;
  once over it, every request from the address is refused until the window frees a slot.

Over a limit: **429** with ``Retry-After`` (whole seconds until the window lets one more
request in) and ``{"error": {"code": "rate_limited", "field": ..., "reason": ...}}``, where
``field`` names what is limited (``Authorization`` for the token and the lockout, ``token``
for a signed download link, ``organization_id`` for the organisation).

Counting: the moving-window strategy (``limits``' ``MovingWindowRateLimiter``: no burst of
twice the limit at a window boundary). The store is Redis (``WEDDING_REDIS_URL``; ``limits``'
async Redis storage over redis-py's asyncio client, ``implementation="redispy"``: half the
worker CPU a hit of ``coredis``, limits' default client, whose calls were 15-28 % of a
worker's CPU under the HTTP load test): one counter per key for
all workers, updated by one atomic Lua script per hit, so N workers together allow the
limit, not N times it. A request's two limits (its token's and its organisation's) are
counted together by one script of ours (:data:`_ACQUIRE_ALL`: limits' own moving-window
script, ``acquire_moving_window.lua``, over several keys, all or nothing): a request refused
by one limit uses none of the other's budget. The checks of concurrent requests go to Redis
together, one pipeline a turn of the event loop (:mod:`stream_app.web.script_batch`):
``python -m loadtests.bench_ratelimit`` (2026-12-07) measured 290 µs of worker CPU a request
for two ``hit`` calls against 174 µs for the script alone, 46 µs with 10 requests in flight
and 31 µs with 50 (redis-py's cost per round trip, not Redis's, dominates). The script keeps
limits' key layout (``{prefix}:{item.key_for(...)}``), so ``get_window_stats``
(``Retry-After``) reads the same lists (a single Redis, not a cluster: the keys of one call
are in different hash slots). Why Redis: a limit check sits on every request, and Redis
answers in well under a millisecond with atomic scripts and key expiry built in; PostgreSQL
would add a write per request to the database the reports read. Without
``WEDDING_REDIS_URL`` each worker counts in its own memory (development only). If the store
cannot be reached, requests are let through, the error is logged and each such request counted
in ``wedding_ratelimit_store_failures_total`` (a rate limit must not take the API down with
it); ``/readyz`` shows the store's state as an advisory check (:func:`store_reachable`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aredis
from aiohttp import web
from async_lru import alru_cache
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from stream_app.app import settings
from stream_app.observability import RATE_LIMIT_STORE_FAILURES
from stream_app.web.auth import Principal
from stream_app.web.errors import ApiError
from stream_app.web.script_batch import ScriptBatcher

log = logging.getLogger(__name__)


class RateLimitedError(ApiError):
    """429 with a ``Retry-After`` header.

    Attributes:
        retry_after_s: whole seconds until one more request is allowed (at least 1).
    """

    def __init__(self, reason: str, field: str, retry_after_s: int) -> None:
        super().__init__(429, "rate_limited", reason, field=field)
        self.retry_after_s = retry_after_s

    def response(self) -> web.Response:
        """The JSON error with ``Retry-After``."""
        resp = super().response()
        resp.headers["Retry-After"] = str(self.retry_after_s)
        return resp


_limiter: MovingWindowRateLimiter | None = None
_items: dict[str, RateLimitItem] = {}
_acquire_all: ScriptBatcher | None = None

_ACQUIRE_ALL = """
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local limit, expiry = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local entry = redis.call('lindex', KEYS[i], limit - 1)
  if entry and tonumber(entry) >= now - expiry then
    return i
  end
end
for i = 1, #KEYS do
  local limit, expiry = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  redis.call('lpush', KEYS[i], now)
  redis.call('ltrim', KEYS[i], 0, limit - 1)
  redis.call('expire', KEYS[i], expiry)
end
return 0
"""
"""One request into several moving windows at once: 0 when each had room (one entry pushed
on each), else the 1-based index of the first full one (nothing pushed). The steps per key
are limits 5.8's ``acquire_moving_window.lua`` with ``amount`` 1: a list of entry times per
key, newest first, trimmed to the limit; full when the entry at ``limit - 1`` is inside the
window. Redis runs a script atomically, so no other request interleaves."""


def _key_prefix() -> str:
    return f"wedding-limits:{settings.app_id}"


def limiter() -> MovingWindowRateLimiter:
    """The process's limiter over the configured store (created on first use)."""
    global _limiter
    if _limiter is None:
        uri = settings.redis_url
        if uri:  # redis:// or rediss:// (settings.parse_redis_url)
            uri = "async+" + uri
        # counters of one app id (its workers) apart from another's sharing the server
        options: dict[str, Any] = (
            {"key_prefix": _key_prefix(), "implementation": "redispy"} if uri else {}
        )
        storage: Any = storage_from_string(uri or "async+memory://", **options)
        _limiter = MovingWindowRateLimiter(storage)
    return _limiter


def _item(spec: str) -> RateLimitItem:
    found = _items.get(spec)
    if found is None:
        found = _items[spec] = parse(spec)
    return found


async def _retry_after(item: RateLimitItem, *keys: str) -> int:
    stats = await limiter().get_window_stats(item, *keys)
    return max(1, math.ceil(stats.reset_time - time.time()))


async def store_reachable() -> tuple[bool, str]:
    """Whether the shared store answers a ``PING`` (``(True, "not configured ...")`` without
    ``WEDDING_REDIS_URL``).

    Raises:
        Exception: the store's client error (connection refused, timeout, ...).
    """
    if not settings.redis_url:
        return True, "not configured (each worker counts alone)"
    ok = bool(await limiter().storage.check())
    return ok, "ok" if ok else "unreachable: requests are not limited"


async def _hit(item: RateLimitItem, *keys: str) -> bool:
    """Count one request; False when over the limit. True when the store fails (logged)."""
    try:
        return await limiter().hit(item, *keys)
    except Exception:  # any store failure: let the request through, loudly
        log.exception("rate-limit store %s failed; request not limited", settings.redis_url)
        RATE_LIMIT_STORE_FAILURES.inc()
        return True


_blocked: dict[tuple[str, ...], tuple[float, str, str]] = {}
"""Keys found over their limit by this worker → (monotonic time the window frees a request,
the refusal's reason and field). Until then the refusal is answered without asking the
store: no request could be allowed before that time, so a flood costs the store one round
trip per window, not one per request."""


def _blocked_error(key: tuple[str, ...]) -> RateLimitedError | None:
    found = _blocked.get(key)
    if found is None:
        return None
    until, reason, field = found
    remaining = until - time.monotonic()
    if remaining <= 0:
        del _blocked[key]
        return None
    retry = max(1, math.ceil(remaining))
    return RateLimitedError(f"{reason}; retry in {retry} s", field, retry)


_Limit = tuple[RateLimitItem, tuple[str, ...], str, str]
"""One limit a request counts against: (item, keys, the refusal's reason, its field)."""


async def _acquire(limits: Sequence[_Limit]) -> int:
    """Count one request against every limit, all or nothing: 0 when each had room, else the
    1-based index of the first full one (none counted). 0 when the store fails (logged).

    In Redis one :data:`_ACQUIRE_ALL` call, sent in one pipeline with the other requests'
    checks of this turn of the event loop (:class:`~stream_app.web.script_batch.ScriptBatcher`);
    in memory (no ``WEDDING_REDIS_URL``, development only) limits' hits one by one, the
    earlier ones kept when a later is full.
    """
    global _acquire_all
    try:
        if not settings.redis_url:
            for index, (item, keys, _, _) in enumerate(limits, 1):
                if not await limiter().hit(item, *keys):
                    return index
            return 0
        if _acquire_all is None:
            _acquire_all = ScriptBatcher(aredis.Redis.from_url(settings.redis_url), _ACQUIRE_ALL)
        prefix = _key_prefix()
        args: list[float | int] = [time.time()]
        for item, _, _, _ in limits:
            args += [item.amount, item.get_expiry()]
        names = [f"{prefix}:{item.key_for(*k)}" for item, k, _, _ in limits]
        return int(await _acquire_all.call(names, args))
    except Exception:  # any store failure: let the request through, loudly
        log.exception("rate-limit store %s failed; request not limited", settings.redis_url)
        RATE_LIMIT_STORE_FAILURES.inc()
        return 0


async def _limit(*limits: _Limit) -> None:
    """Count one request against ``limits`` (all or none); raise 429 naming the first that
    is full (a limit this worker already found full is answered without the store)."""
    for _, keys, _, _ in limits:
        if (blocked := _blocked_error(keys)) is not None:
            raise blocked
    full = await _acquire(limits)
    if full == 0:
        return
    item, keys, reason, field = limits[full - 1]
    retry = await _retry_after(item, *keys)
    if len(_blocked) > 100_000:  # stale entries of many tokens: start over
        _blocked.clear()
    _blocked[keys] = (time.monotonic() + retry, reason, field)
    raise RateLimitedError(f"{reason}; retry in {retry} s", field, retry)


async def check_request(principal: Principal, rate_class: str) -> None:
    """Count a request of ``principal`` in ``rate_class`` against its token and organisation.

    Raises:
        RateLimitedError: 429 naming ``Authorization`` (the token's limit) or
            ``organization_id`` (the organisation's).
    """
    token_spec = settings.rate_limits[rate_class]
    token_key = principal.jti or f"sub:{principal.user_id}"
    org_spec = settings.org_rate_limits[rate_class]
    await _limit(
        (
            _item(token_spec),
            ("token", principal.organization_id, token_key, rate_class),
            f"this token's limit for {rate_class} ({token_spec}) is used up",
            "Authorization",
        ),
        (
            _item(org_spec),
            ("org", principal.organization_id, rate_class),
            f"the organisation's limit for {rate_class} ({org_spec}) is used up",
            "organization_id",
        ),
    )


async def check_link_download(organization_id: str, link_id: str) -> None:
    """Count a download through a signed link against the link and its organisation, in the
    ``downloads`` class (a link is a bearer credential: its limit is the token's).

    The organisation's links share a budget of their own (the size of its ``downloads``
    limit), apart from its staff's downloads with their tokens: links are handed to outside
    parties (a webhook receiver, the recipients of an e-mail and whoever they forward it to),
    and a link holder must not be able to use up the budget the organisation's own people
    download with.

    Args:
        organization_id: the organisation owning the file.
        link_id: the link's id (its ``jti``).

    Raises:
        RateLimitedError: 429 naming ``token`` (the link's limit) or ``organization_id`` (the
            organisation's links' budget).
    """
    link_spec = settings.rate_limits["downloads"]
    org_spec = settings.org_rate_limits["downloads"]
    await _limit(
        (
            _item(link_spec),
            ("link", organization_id, link_id, "downloads"),
            f"this link's limit for downloads ({link_spec}) is used up",
            "token",
        ),
        (
            _item(org_spec),
            ("org", organization_id, "link_downloads"),
            f"the organisation's limit for downloads through links ({org_spec}) is used up",
            "organization_id",
        ),
    )


LOCKOUT_RECHECK_S = 1.0
"""How long a worker trusts the store's "this address is not locked out" before asking again:
a lockout tripped on another worker is in force here within this many seconds (on the
worker that tripped it, at once). Keeps the store off the path of most good requests."""


async def _lockout_test(client: str) -> bool:
    """The store's answer: ``client`` has bad-token budget left (not locked out)."""
    return await limiter().test(_item(settings.auth_failure_limit), "authfail", client)


_cached_lockout_test = alru_cache(maxsize=100_000, ttl=LOCKOUT_RECHECK_S)(_lockout_test)
""":func:`_lockout_test` kept :data:`LOCKOUT_RECHECK_S` per address (``async-lru``): the
requests of an address arriving while the store is asked wait for that one answer."""


async def check_not_locked_out(client: str) -> None:
    """Refuse a client address that sent too many bad tokens recently (every request from it,
    good token or not: a locked-out address learns nothing from its guesses).

    A lockout tripped on this worker is in :data:`_blocked` (checked first, at once).

    Raises:
        RateLimitedError: 429 naming ``Authorization``.
    """
    keys = ("authfail", client)
    if (blocked := _blocked_error(keys)) is not None:
        raise blocked
    try:
        ok = await _cached_lockout_test(client)
    except Exception:
        log.exception("rate-limit store %s failed; lockout not checked", settings.redis_url)
        return
    if not ok:  # not kept: the lockout ends when the store's window says so
        _cached_lockout_test.cache_invalidate(client)
        await _lock_out(_item(settings.auth_failure_limit), client)


async def _lock_out(item: RateLimitItem, client: str) -> None:
    retry = await _retry_after(item, "authfail", client)
    reason = f"too many requests with a bad token from this address ({settings.auth_failure_limit})"
    _blocked[("authfail", client)] = (time.monotonic() + retry, reason, "Authorization")
    raise RateLimitedError(f"{reason}; retry in {retry} s", "Authorization", retry)


async def record_auth_failure(client: str) -> None:
    """Count one request with a bad token from ``client``.

    Raises:
        RateLimitedError: this failure is over the address's budget (the lockout starts; the
            caller answers 429 instead of 401).
    """
    item = _item(settings.auth_failure_limit)
    if not await _hit(item, "authfail", client):
        await _lock_out(item, client)
