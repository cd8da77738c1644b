"""Bearer tokens as signed: the claims of an HS256 JWT and the function that signs one.

The wire contract of every API token (the claims are listed in :mod:`stream_app.web.auth`,
which verifies them); worker-to-worker reads (:mod:`stream_app.queries.routing`) sign their
internal tokens here too. A leaf: imports nothing of the package.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Required, TypedDict

import jwt

ROLES: tuple[str, ...] = ("viewer", "analyst", "admin")
"""The roles a client's token may carry, least to most (their permissions:
:mod:`stream_app.web.permissions`)."""
INTERNAL_ROLE = "internal"
"""The role of a worker-to-worker token, and only of one (never in :data:`ROLES`, so neither
the CLI nor :func:`new_token` without ``internal`` gives it to a client): it grants the table
reads the workers forward to each other and nothing else (:mod:`stream_app.web.permissions`)."""

ALGORITHM = "HS256"
DEFAULT_ISSUER = "wedding-engine"
DEFAULT_AUDIENCE = "wedding-engine-api"
DEFAULT_MAX_TTL_S = 30 * 86_400
INTERNAL_CLAIM = "wedding_internal"
"""Set (``true``) on worker-to-worker tokens (forwarded reads), together with the role
:data:`INTERNAL_ROLE`; a token with one and not the other is refused by the API."""
INTERNAL_TOKEN_TTL_S = 120
"""Lifetime of a worker-to-worker token, seconds (at most ``settings.token_max_ttl_s``; the
workers mint them, :mod:`stream_app.queries.routing`); the API refuses an internal token
whose ``exp - iat`` is longer, whoever signed it (:func:`stream_app.web.auth.decode_token`).
It is used for its first fifth only (24 s), so one waiting in the other worker's queue, or
retried, is not expired when checked there (an expired token counts as a bad token from the
sending worker's address: enough of them under load locked the two workers out of each other,
found by the HTTP load test; one attempt of a forwarded read lasts at most 10 s and each retry
takes the token anew). Short because the token travels in plain HTTP between the workers: a
captured one reads the organisation's forwarded tables, without rate limits, until it expires
(its role grants nothing else, :mod:`stream_app.web.permissions`)."""


class TokenGrant(TypedDict, total=False):
    """Whom a token names and what it grants: the keyword arguments of :func:`new_token`
    other than the issuer and the audience (the same meanings and defaults)."""

    user_id: Required[str]
    organization_id: Required[str]
    ttl_seconds: Required[int]
    role: str
    venues: list[str] | None
    internal: bool


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token and the facts recorded about it (``tokens`` table)."""

    token: str
    jti: str
    issued_at: datetime
    expires_at: datetime


def is_token_id(value: object) -> bool:
    """Whether ``value`` can be a ``jti`` (of a token or a download link): 1 to 128 printable
    ASCII characters, what can be revoked by id, stored and logged as it is."""
    return (
        isinstance(value, str) and 0 < len(value) <= 128 and value.isascii() and value.isprintable()
    )


def new_token(
    secret: str,
    *,
    user_id: str,
    organization_id: str,
    ttl_seconds: int,
    role: str | None = None,
    venues: list[str] | None = None,
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    internal: bool = False,
) -> IssuedToken:
    """Sign a token (see the module docstring); ``ttl_seconds`` from now.

    ``role`` defaults to ``admin``, or to :data:`INTERNAL_ROLE` for a worker-to-worker token
    (``internal``: it carries :data:`INTERNAL_CLAIM` and that role, no other).

    Raises:
        ValueError: a ``role`` not in :data:`ROLES` (a client's token: ``internal`` is
            refused too), or other than :data:`INTERNAL_ROLE` for an internal token.
    """
    if internal:
        if role not in (None, INTERNAL_ROLE):
            raise ValueError(
                f"role: a worker-to-worker token has role {INTERNAL_ROLE!r}, got {role!r}"
            )
        role = INTERNAL_ROLE
    elif role is None:
        role = "admin"
    elif role not in ROLES:
        raise ValueError(f"role: must be one of {', '.join(ROLES)}, got {role!r}")
    now = datetime.now(UTC).replace(microsecond=0)
    jti = uuid.uuid4().hex
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "jti": jti,
        "sub": user_id,
        "org": organization_id,
        "role": role,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_seconds),
    }
    if venues is not None:
        claims["venues"] = sorted(set(venues))
    if internal:
        claims[INTERNAL_CLAIM] = True
    token = jwt.encode(claims, secret, algorithm=ALGORITHM)
    return IssuedToken(token, jti, now, now + timedelta(seconds=ttl_seconds))
