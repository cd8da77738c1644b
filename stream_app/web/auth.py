"""Bearer tokens: HS256 JWTs naming the user (``sub``), the tenant (``org``) and a ``role``.

Claims of every token: ``iss`` and ``aud`` (:data:`DEFAULT_ISSUER`, :data:`DEFAULT_AUDIENCE`,
or the settings ``WEDDING_TOKEN_ISSUER``/``WEDDING_TOKEN_AUDIENCE``), ``jti`` (a random id,
what a revocation names), ``iat`` and ``exp`` (``exp - iat`` at most the maximum lifetime),
``sub``, ``org``, ``role`` (``viewer`` | ``analyst`` | ``admin``, see
:mod:`stream_app.web.permissions`) and, optionally, ``venues``: the venue ids the token is
limited to. A worker-to-worker token (:mod:`stream_app.queries.routing`) has the role
``internal`` and the claim ``wedding_internal: true``, both or neither; it is accepted only
by the table reads the workers forward to each other (:mod:`stream_app.web.guard`).

A request may read or write only the organisation named in its token; the path's
organisation must equal the token's ``org`` claim (403 otherwise). The checks that need the
database or the rate-limit store (revocation, limits) run in :mod:`stream_app.web.guard`
before the handler; :func:`authenticate`, called by each handler, then returns the principal
the guard verified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Unpack

import jwt
from aiohttp import web

from stream_app.schemas.tokens import (
    ALGORITHM,
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    DEFAULT_MAX_TTL_S,
    INTERNAL_CLAIM,
    INTERNAL_ROLE,
    INTERNAL_TOKEN_TTL_S,
    ROLES,
    TokenGrant,
    is_token_id,
    new_token,
)
from stream_app.web.errors import ApiError

PRINCIPAL_KEY = "wedding.principal"
"""Where :mod:`stream_app.web.guard` leaves the verified principal on the request."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``user_id`` acting for ``organization_id``.

    Attributes:
        user_id: the token's subject (``sub``).
        organization_id: the tenant (``org``).
        role: ``viewer``, ``analyst``, ``admin`` or (a worker-to-worker token) ``internal``.
        venues: the venue ids the token is limited to; None = every venue.
        jti: the token id ("" for tokens decoded without one).
        issued_at: the token's ``iat`` (UTC).
        internal: a worker-to-worker token (role ``internal``).
        expires_at: the token's ``exp`` (UTC).
    """

    user_id: str
    organization_id: str
    role: str = "admin"
    venues: frozenset[str] | None = None
    jti: str = ""
    issued_at: datetime | None = None
    internal: bool = False
    expires_at: datetime | None = None


def issue_token(secret: str, **grant: Unpack[TokenGrant]) -> str:
    """A signed token for ``grant["user_id"]`` of ``grant["organization_id"]``, valid
    ``grant["ttl_seconds"]`` seconds (:func:`stream_app.schemas.tokens.new_token` with the
    default issuer and audience).

    ``role`` defaults to ``admin`` (the holder of the secret can mint anything anyway; the
    CLI asks for a role explicitly).
    """
    return new_token(secret, **grant).token


_CREDENTIALS = re.compile(r"[ \t]*([^ \t]*)[ \t]*(.*?)[ \t]*", re.DOTALL)
"""An Authorization value: its scheme, then its credentials after any spaces or tabs (every
string matches)."""


def bearer_token(request: web.Request) -> str:
    """The token of the ``Authorization: Bearer`` header.

    Raises:
        ApiError: 401 ``unauthorized`` when the header is missing, of another scheme (named),
            or its token is empty (``Bearer `` and nothing, said as such); 400 ``invalid_field``
            when the header is given more than once (a proxy checking the last and this
            worker reading the first would disagree on who is asking).
    """
    given = request.headers.getall("Authorization", [])
    if len(given) > 1:
        raise ApiError(
            400,
            "invalid_field",
            f"the Authorization header is given {len(given)} times; give it once",
            field="Authorization",
        )
    header = given[0] if given else ""
    if not header.strip():
        raise ApiError(
            401,
            "unauthorized",
            "an 'Authorization: Bearer <token>' header is required",
            field="Authorization",
        )
    # the scheme, then the token after any run of spaces or tabs (RFC 9110 allows one or
    # more spaces; a second space or a tab pasted in is not a reason to refuse the token)
    scheme, token = _CREDENTIALS.fullmatch(header).groups()  # type: ignore[union-attr]
    if scheme.lower() != "bearer":
        # named when it is a scheme's name (not echoed when it may be a credential)
        # (a lone word may be a bare token: an attacker round had one echoed back)
        named = f", not {scheme!r}" if token and scheme.isalpha() and len(scheme) <= 20 else ""
        raise ApiError(
            401,
            "unauthorized",
            f"the Authorization header must use the Bearer scheme ('Bearer <token>'){named}",
            field="Authorization",
        )
    if not token:
        # ``Bearer `` and nothing: a shell's ``$TOKEN`` left empty by a failed command
        raise ApiError(401, "unauthorized", "the bearer token is empty", field="Authorization")
    return token


def decode_token(
    token: str,
    secret: str,
    *,
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    max_ttl_s: int = DEFAULT_MAX_TTL_S,
) -> Principal:
    """Verify ``token`` (signature, expiry, issuer, audience, claims, lifetime: at most
    ``max_ttl_s``, and at most :data:`~stream_app.schemas.tokens.INTERNAL_TOKEN_TTL_S` for a
    worker-to-worker token).

    Raises:
        ApiError: 401 ``token_expired`` or ``unauthorized`` naming the cause, ``field`` =
            ``Authorization``.
    """
    if not token.isascii():  # a JWT is base64url and dots; aiohttp hands other bytes over
        # as surrogate escapes, which PyJWT cannot encode (an attacker round's 500)
        raise ApiError(
            401,
            "unauthorized",
            "invalid token: a token is ASCII (base64url and dots)",
            field="Authorization",
        )
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            audience=audience,
            options={"require": ["exp", "iat", "iss", "aud", "jti", "sub", "org", "role"]},
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(
            401, "token_expired", "the token has expired", field="Authorization"
        ) from None
    except jwt.DecodeError:
        raise ApiError(
            401,
            "unauthorized",
            "invalid token: not a token of this deployment (malformed, or signed with another"
            " key); issue one with `wedding-engine token --org ORG --role ROLE`",
            field="Authorization",
        ) from None
    except jwt.InvalidTokenError as exc:
        raise ApiError(
            401, "unauthorized", f"invalid token: {exc}", field="Authorization"
        ) from None
    role = claims["role"]
    internal = _internal(claims, role)
    for name in ("iat", "exp"):  # PyJWT lets a numeric string pass
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ApiError(
                401,
                "unauthorized",
                f"invalid token: {name} is not a number (seconds since the epoch),"
                f" got {type(value).__name__}",
                field="Authorization",
            )
    if claims["exp"] - claims["iat"] > max_ttl_s:
        raise ApiError(
            401,
            "unauthorized",
            f"invalid token: lifetime over the maximum of {max_ttl_s} s",
            field="Authorization",
        )
    if internal and claims["exp"] - claims["iat"] > INTERNAL_TOKEN_TTL_S:
        raise ApiError(  # the workers mint them for 120 s: a longer one is not theirs
            401,
            "unauthorized",
            f"invalid token: a worker-to-worker token lives at most {INTERNAL_TOKEN_TTL_S} s",
            field="Authorization",
        )
    jti = claims["jti"]
    if not is_token_id(jti):
        raise ApiError(  # a jti that could never be revoked by id (an attacker round)
            401,
            "unauthorized",
            "invalid token: jti is not 1-128 printable ASCII characters",
            field="Authorization",
        )
    venues = claims.get("venues")
    if venues is not None and (
        not isinstance(venues, list) or not all(isinstance(v, str) for v in venues)
    ):
        raise ApiError(401, "unauthorized", "invalid token: venues is not a list", "Authorization")
    return Principal(
        user_id=str(claims["sub"]),
        organization_id=str(claims["org"]),
        role=role,
        venues=None if venues is None else frozenset(venues),
        jti=str(claims["jti"]),
        issued_at=datetime.fromtimestamp(claims["iat"], UTC),
        internal=internal,
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
    )


def _internal(claims: dict[str, Any], role: object) -> bool:
    """Whether verified ``claims`` are a worker-to-worker token's: :data:`INTERNAL_CLAIM`
    ``true`` with the role :data:`INTERNAL_ROLE`.

    Raises:
        ApiError: 401 ``unauthorized`` (``Authorization``) for a role neither a client's
            (:data:`ROLES`) nor the internal one, or the claim and the role not together.
    """
    internal = claims.get(INTERNAL_CLAIM, False)
    if not isinstance(internal, bool):
        raise ApiError(
            401,
            "unauthorized",
            f"invalid token: {INTERNAL_CLAIM} is not a boolean",
            "Authorization",
        )
    if internal is not (role == INTERNAL_ROLE):
        raise ApiError(
            401,
            "unauthorized",
            f"invalid token: role {INTERNAL_ROLE!r} and the claim {INTERNAL_CLAIM} go together"
            " (a worker-to-worker token)",
            "Authorization",
        )
    if not internal and role not in ROLES:
        raise ApiError(
            401, "unauthorized", f"invalid token: unknown role {role!r}", "Authorization"
        )
    return internal


def check_organization(principal: Principal, organization_id: str) -> None:
    """Raise 403 (``field`` = ``organization_id``) unless the token is of ``organization_id``."""
    if principal.organization_id != organization_id:
        raise ApiError(
            403,
            "forbidden",
            "the token does not grant access to this organisation",
            field="organization_id",
        )


def authenticate(request: web.Request, secret: str, organization_id: str) -> Principal:
    """The caller of ``request``, checked against the path's ``organization_id``.

    Returns the principal :mod:`stream_app.web.guard` verified (role, revocation, limits);
    without one (a handler called outside the guard) the token is verified here with the
    default issuer, audience and lifetime.

    Raises:
        ApiError: 401 when the token is missing, malformed, badly signed or expired;
            403 when it belongs to another organisation.
    """
    found = request.get(PRINCIPAL_KEY)
    principal = (
        found if isinstance(found, Principal) else decode_token(bearer_token(request), secret)
    )
    check_organization(principal, organization_id)
    return principal
