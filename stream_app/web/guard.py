"""The checks every HTTP request passes before its handler runs, in this order.

Part of the HTTP layer (called by :func:`stream_app.web.views.api` for every route):

1. a route open to all (:data:`~stream_app.web.permissions.PUBLIC`) passes; one that declared
   no permission is refused (403 ``field: "permission"``);
2. a client address over its bad-token budget gets 429 (lockout, :mod:`.ratelimit`), unless
   the request carries a valid worker-to-worker (internal) token;
3. the token is verified (401, counted as a bad-token request from the address);
4. its organisation must be the path's (403 ``organization_id``);
5. it must not be revoked (401 ``token_revoked``; :mod:`.revocation`, cached a few seconds);
6. its role must grant the route's permission (403 ``field: "role"`` naming the permission);
   a worker-to-worker (internal) token is accepted only by the routes the workers forward
   reads to (:attr:`RouteSpec.forwarded`), and is exempt from steps 5 and 8 and from the
   in-flight cap there only;
7. a venue-scoped token may read only its venues (403 ``path.venue``) and only at routes that
   enforce the scope themselves or name the venue (403 ``venue_scope`` elsewhere);
8. the token's and the organisation's rate limit for the route class (429, :mod:`.ratelimit`).

Steps 5 to 8 and the handler run within the organisation's share of the worker's requests in
flight (:func:`guarded`).

The verified principal is left on the request for :func:`stream_app.web.auth.authenticate`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from cachetools import TLRUCache

from stream_app.app import settings
from stream_app.web import ratelimit, revocation
from stream_app.web.auth import (
    PRINCIPAL_KEY,
    Principal,
    bearer_token,
    check_organization,
    decode_token,
)
from stream_app.web.errors import ApiError
from stream_app.web.inputs import read_within
from stream_app.web.permissions import (
    PUBLIC,
    UNDECLARED,
    Permission,
    RouteAccess,
    allowed,
    least_role,
)

_RATE_CLASS = {
    Permission.REPORTS_REQUEST: "reports",
    Permission.REPORTS_VALIDATE: "reports",
    Permission.AGGREGATIONS_RUN: "aggregations",
    Permission.ROLLUPS_MANAGE: "aggregations",
    Permission.SCHEDULES_MANAGE: "admin",
    Permission.DELIVERIES_READ: "admin",
    Permission.TOKENS_MANAGE: "admin",
    Permission.GDPR_MANAGE: "admin",
    Permission.RETENTION_MANAGE: "admin",
    Permission.AUDIT_READ: "admin",
}


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """What a route declares (``@page(..., permission=, rate_class=, venue_aware=)``).

    Attributes:
        access: the permission it needs, :data:`PUBLIC` or :data:`UNDECLARED`.
        rate_class: ``reads``, ``reports``, ``aggregations``, ``downloads``, ``admin`` or
            ``cancels``;
            None = from the permission (report requests → ``reports``, aggregations →
            ``aggregations``, admin permissions → ``admin``, the rest ``reads``).
        venue_aware: the handler restricts its answer to a venue-scoped token's venues (or the
            path names the venue, checked here); otherwise such tokens are refused.
        streaming: a long-lived response (Server-Sent Events): the token may also come in the
            ``access_token`` query parameter (browsers' ``EventSource`` cannot set headers),
            and the request holds none of the organisation's in-flight slots (the handler
            caps its own streams).
        forwarded: a read the workers forward to each other (:mod:`stream_app.queries.routing`,
            :mod:`stream_app.queries.scatter`): the only kind of route a worker-to-worker
            (internal) token may call; every other route refuses it (403 ``role``).
        rate_without: ``(permission, class)``: a caller whose role lacks ``permission`` is
            counted in ``class`` instead of :attr:`limit_class` (a report cancellation is an
            ``admin`` request for admins, a ``cancels`` one for analysts: four analysts'
            cancellations of unknown ids used up the organisation's whole ``admin`` budget,
            and its admins could not revoke a token or erase a client; an attacker round).
    """

    access: RouteAccess = UNDECLARED
    rate_class: str | None = None
    venue_aware: bool = False
    streaming: bool = False
    forwarded: bool = False
    rate_without: tuple[Permission, str] | None = None

    def limit_class_of(self, role: str, venue_scoped: bool = False) -> str:
        """The rate-limit class of the route for a caller of ``role`` (``venue_scoped``: its
        token is limited to venues, so it never holds :attr:`rate_without`'s permission over
        the whole organisation: four venue-scoped admins' refused cancellations used up the
        organisation's ``admin`` budget in a second attacker round)."""
        if self.rate_without is not None and (
            venue_scoped or not allowed(role, self.rate_without[0])
        ):
            return self.rate_without[1]
        return self.limit_class

    @property
    def limit_class(self) -> str:
        """The rate-limit class of the route."""
        if self.rate_class is not None:
            return self.rate_class
        return (
            _RATE_CLASS.get(self.access, "reads")
            if isinstance(self.access, Permission)
            else "reads"
        )


VERIFIED_CACHE_SIZE = 100_000
"""Verified tokens one worker keeps (least recently used dropped first); ~1 KiB each."""


def _until_expiry(_token: str, principal: Principal, now: float) -> float:
    """A verified token's time to live in the cache: until its ``exp`` (``now`` if none)."""
    return principal.expires_at.timestamp() if principal.expires_at is not None else now


_verified: TLRUCache[str, Principal] = TLRUCache(
    maxsize=VERIFIED_CACHE_SIZE, ttu=_until_expiry, timer=time.time
)
"""Tokens this worker verified → their principal, each until its ``exp`` (cachetools)."""


def verified(token: str) -> Principal:
    """:func:`~stream_app.web.auth.decode_token` with the settings' issuer, audience and
    lifetime, remembered per token string until the token expires.

    The string includes the signature, and issuer, audience and secret do not change while
    the worker runs, so a token verified once verifies again until ``exp``: the cache drops
    it then (``TLRUCache`` with the token's ``exp`` as its time to use), and the
    expiry is checked again on every use. Revocation is not part of this (checked per
    request).

    Raises:
        ApiError: 401 as :func:`~stream_app.web.auth.decode_token`.
    """
    found = _verified.get(token)
    if found is not None:
        if found.expires_at is not None and found.expires_at > datetime.now(UTC):
            return found
        _verified.pop(token, None)
    principal = decode_token(
        token,
        settings.jwt_secret,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        max_ttl_s=settings.token_max_ttl_s,
    )
    _verified[token] = principal
    return principal


ACCESS_TOKEN_PARAM = "access_token"
"""The query parameter carrying the token of a streaming route (see :class:`RouteSpec`)."""


def stream_token(request: web.Request) -> str:
    """The token of a streaming request: the ``Authorization`` header, else the
    ``access_token`` query parameter.

    Raises:
        ApiError: 401 ``unauthorized`` (``field`` = ``Authorization``) when neither is given.
    """
    if "Authorization" not in request.headers:
        token = request.query.get(ACCESS_TOKEN_PARAM, "")
        if token:
            return token
    return bearer_token(request)


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


@asynccontextmanager
async def guarded(
    request: web.Request, spec: RouteSpec, params: Mapping[str, Any]
) -> AsyncIterator[None]:
    """Run the checks of the module docstring, then the block (the handler) within the
    caller's organisation's share of this worker's requests in flight.

    An organisation has at most ``settings.org_inflight`` requests being checked and handled
    at once on a worker (worker-to-worker requests aside); more wait, in arrival order, so a
    flooding tenant queues behind itself while other tenants' requests go on. A request that
    waited ``INFLIGHT_WAIT_S`` is refused with 503 ``busy``.

    Args:
        params: the path parameters (``org``, ``venue``, ...).

    Raises:
        ApiError: 401, 403, 429 (:class:`~stream_app.web.ratelimit.RateLimitedError`) or 503.
    """
    access = spec.access
    if access is PUBLIC:
        yield
        return
    if not isinstance(access, Permission):
        raise ApiError(
            403, "forbidden", "this route declares no permission; refused", field="permission"
        )
    client = _client(request)
    principal = await _verified_principal(request, spec, client)
    org = params.get("org")
    if isinstance(org, str):
        check_organization(principal, org)
    check_internal(principal, spec)
    if principal.internal or spec.streaming:
        await _check_principal(request, spec, access, principal, params, client)
        yield
        return
    # the body first: a client sending it slowly holds none of its organisation's slots (an
    # attacker round: eight half-sent bodies per worker, with an analyst's token, held all
    # of them, and its admins got 503 `busy` on every route)
    await read_within(request, settings.http_body_timeout_s)
    slots = _inflight.setdefault(
        principal.organization_id, asyncio.Semaphore(settings.org_inflight)
    )
    try:
        if slots.locked():  # only a wait needs the timeout (and its task)
            await asyncio.wait_for(slots.acquire(), INFLIGHT_WAIT_S)
        else:
            await slots.acquire()
    except TimeoutError:
        raise ApiError(
            503,
            "busy",
            "this organisation has too many requests in flight; retry later",
            field="organization_id",
        ) from None
    try:
        await _check_principal(request, spec, access, principal, params, client)
        yield
    finally:
        slots.release()


async def _verified_principal(request: web.Request, spec: RouteSpec, client: str) -> Principal:
    """Steps 2 and 3 of the module docstring: the request's verified principal.

    A valid worker-to-worker (internal) token passes whatever the address's lockout: the
    workers call each other from their own address, which on one host is the clients' too
    (a local proxy), so a client's bad tokens would otherwise make every forwarded read and
    report of every tenant fail. Any other request from a locked-out address is refused
    before its token is told good or bad.

    Raises:
        ApiError: 429 (:class:`~stream_app.web.ratelimit.RateLimitedError`) when the address
            is locked out; 401 as :func:`verified` (counted as a bad token from ``client``).
    """
    try:
        principal = verified(stream_token(request) if spec.streaming else bearer_token(request))
    except ApiError:
        await ratelimit.check_not_locked_out(client)
        await ratelimit.record_auth_failure(client)
        raise
    if not principal.internal:
        await ratelimit.check_not_locked_out(client)
    return principal


INFLIGHT_WAIT_S = 10.0
"""Longest wait for one of the organisation's in-flight slots before 503 ``busy``."""
_inflight: dict[str, asyncio.Semaphore] = {}


async def _check_principal(
    request: web.Request,
    spec: RouteSpec,
    access: Permission,
    principal: Principal,
    params: Mapping[str, Any],
    client: str,
) -> None:
    """Steps 5-8 of the module docstring; leaves the principal on the request."""
    refused = None if principal.internal else await revocation.refusal(principal)
    if refused is not None:
        await ratelimit.record_auth_failure(client)
        raise ApiError(401, "token_revoked", refused, field="Authorization")
    if not allowed(principal.role, access):
        raise ApiError(
            403,
            "forbidden",
            f"role {principal.role!r} lacks permission {access.value!r}"
            f" (granted to {least_role(access)!r} and above)",
            field="role",
        )
    check_venue_scope(principal, spec, params)
    if not principal.internal:
        await ratelimit.check_request(
            principal, spec.limit_class_of(principal.role, principal.venues is not None)
        )
    request[PRINCIPAL_KEY] = principal


def check_internal(principal: Principal, spec: RouteSpec) -> None:
    """Refuse a worker-to-worker (internal) token at a route the workers do not forward
    reads to (see the module docstring, step 6).

    Raises:
        ApiError: 403 ``forbidden`` naming ``role``.
    """
    if principal.internal and not spec.forwarded:
        raise ApiError(
            403,
            "forbidden",
            f"role {principal.role!r} (a worker-to-worker token) may only read the tables the"
            " workers forward to each other",
            field="role",
        )


def check_venue_scope(principal: Principal, spec: RouteSpec, params: Mapping[str, Any]) -> None:
    """Refuse a venue-scoped token outside its venues (see the module docstring, step 7).

    Raises:
        ApiError: 403 naming ``path.venue`` or ``venue_scope``.
    """
    if principal.venues is None:
        return
    venue = params.get("venue")
    if isinstance(venue, str):
        if venue not in principal.venues:
            raise ApiError(
                403, "forbidden", f"the token's venue scope excludes {venue!r}", "path.venue"
            )
        return
    if not spec.venue_aware:
        raise ApiError(
            403,
            "forbidden",
            "a venue-scoped token cannot use this organisation-wide route",
            field="venue_scope",
        )


def scoped_venues(
    principal: Principal, requested: list[str] | None, field: str
) -> list[str] | None:
    """The venue filter a request of ``principal`` must run with.

    Args:
        requested: the venues the request asks for (None = all).
        field: the request field that names them (for the error).

    Returns:
        ``requested`` when the token is not venue-scoped; else ``requested`` when inside the
        scope, or the whole scope (sorted) when ``requested`` is None.

    Raises:
        ApiError: 403 naming ``field`` when ``requested`` names a venue outside the scope.
    """
    if principal.venues is None:
        return requested
    if requested is None:
        return sorted(principal.venues)
    outside = sorted(set(requested) - principal.venues)
    if outside:
        raise ApiError(403, "forbidden", f"the token's venue scope excludes {outside}", field=field)
    return requested


def check_priority(principal: Principal, priority: str, field: str = "$.priority") -> None:
    """Refuse a priority above ``normal`` unless the caller may use one.

    Admins may; so may every role of an organisation listed in ``WEDDING_PRIORITY_ORGS``.

    Raises:
        ApiError: 403 naming ``field``.
    """
    if priority not in ("high", "critical") or principal.role == "admin":
        return
    if principal.organization_id in settings.priority_orgs:
        return
    raise ApiError(
        403,
        "forbidden",
        f"priority {priority!r} is reserved for admins and the organisations configured for it"
        " (WEDDING_PRIORITY_ORGS); use 'normal' or 'low'",
        field=field,
    )
