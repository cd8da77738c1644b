"""Bearer tokens: HS256 JWTs naming the user (``sub``) and the tenant (``org``).

A request may read or write only the organisation named in its token; the path's
organisation must equal the token's ``org`` claim (403 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from aiohttp import web

from stream_app.web.errors import ApiError

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``user_id`` acting for ``organization_id``."""

    user_id: str
    organization_id: str


def issue_token(secret: str, *, user_id: str, organization_id: str, ttl_seconds: int) -> str:
    """A signed token for ``user_id`` of ``organization_id``, valid ``ttl_seconds`` seconds."""
    now = datetime.now(UTC)
    claims = {
        "sub": user_id,
        "org": organization_id,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_seconds),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def authenticate(request: web.Request, secret: str, organization_id: str) -> Principal:
    """The caller of ``request``, checked against the path's ``organization_id``.

    Raises:
        ApiError: 401 when the token is missing, malformed, badly signed or expired;
            403 when it belongs to another organisation.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "unauthorized",
            "an 'Authorization: Bearer <token>' header is required",
            field="Authorization",
        )
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "org"]}
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(
            401, "token_expired", "the token has expired", field="Authorization"
        ) from None
    except jwt.InvalidTokenError as exc:
        raise ApiError(
            401, "unauthorized", f"invalid token: {exc}", field="Authorization"
        ) from None
    if claims["org"] != organization_id:
        raise ApiError(
            403,
            "forbidden",
            "the token does not grant access to this organisation",
            field="organization_id",
        )
    return Principal(str(claims["sub"]), str(claims["org"]))
