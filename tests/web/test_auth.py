"""Token verification (:func:`stream_app.web.auth.decode_token`): time claims of the wrong type
and the worker-to-worker role, signed here with the deployment's secret (an attacker holding
it, or a bug minting such a token), in-process.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import make_mocked_request

from stream_app.schemas.tokens import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    INTERNAL_CLAIM,
    INTERNAL_ROLE,
    INTERNAL_TOKEN_TTL_S,
    new_token,
)
from stream_app.web.auth import bearer_token, decode_token
from stream_app.web.errors import ApiError

SECRET = "a-test-secret-of-32-characters!!"


def signed(**changes: Any) -> str:
    """A token of ``org-a`` signed with :data:`SECRET`, its claims changed by ``changes``
    (a value of None removes the claim)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": DEFAULT_ISSUER,
        "aud": DEFAULT_AUDIENCE,
        "jti": "j1",
        "sub": "u1",
        "org": "org-a",
        "role": "viewer",
        "iat": now,
        "exp": now + 60,
    }
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, SECRET, algorithm="HS256")


def refusal(token: str) -> tuple[int, str, str, str | None]:
    with pytest.raises(ApiError) as refused:
        decode_token(token, SECRET)
    e = refused.value
    return e.status, e.code, e.reason, e.field


@pytest.mark.parametrize("name", ["iat", "exp"])
def test_a_time_claim_that_is_a_string_is_refused_naming_it(name: str) -> None:
    """A numeric string passes PyJWT's own check; the reason names the claim (it said
    "lifetime over the maximum" for ``iat``, and ``exp`` failed with a 500)."""
    now = int(time.time())
    value = str(now if name == "iat" else now + 60)
    assert refusal(signed(**{name: value})) == (
        401,
        "unauthorized",
        f"invalid token: {name} is not a number (seconds since the epoch), got str",
        "Authorization",
    )
    if name == "iat":  # (a boolean exp reads as 1970 to PyJWT: expired)
        assert refusal(signed(iat=True))[2].endswith("got bool")


def test_a_lifetime_over_the_maximum_is_still_named() -> None:
    now = int(time.time())
    assert decode_token(signed(iat=now, exp=now + 60), SECRET, max_ttl_s=60).user_id == "u1"
    with pytest.raises(ApiError) as refused:
        decode_token(signed(iat=now, exp=now + 61), SECRET, max_ttl_s=60)
    assert refused.value.reason == "invalid token: lifetime over the maximum of 60 s"


def test_a_worker_to_worker_token_has_its_own_role() -> None:
    issued = new_token(
        SECRET, user_id="internal", organization_id="org-a", ttl_seconds=60, internal=True
    )
    principal = decode_token(issued.token, SECRET)
    assert (principal.internal, principal.role, principal.organization_id) == (
        True,
        INTERNAL_ROLE,
        "org-a",
    )
    client = decode_token(signed(), SECRET)
    assert (client.internal, client.role) == (False, "viewer")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (  # the claim on a client's role: the admin the review minted
            {"role": "admin", INTERNAL_CLAIM: True},
            "invalid token: role 'internal' and the claim wedding_internal go together"
            " (a worker-to-worker token)",
        ),
        (  # the role without the claim
            {"role": INTERNAL_ROLE},
            "invalid token: role 'internal' and the claim wedding_internal go together"
            " (a worker-to-worker token)",
        ),
        (
            {"role": INTERNAL_ROLE, INTERNAL_CLAIM: 1},
            "invalid token: wedding_internal is not a boolean",
        ),
        ({"role": "owner"}, "invalid token: unknown role 'owner'"),
    ],
)
def test_the_internal_claim_and_role_come_together_or_not_at_all(
    changes: dict[str, Any], reason: str
) -> None:
    assert refusal(signed(**changes)) == (401, "unauthorized", reason, "Authorization")


def test_a_worker_to_worker_token_lives_no_longer_than_the_workers_mint_it() -> None:
    """An attacker's finding: an internal token of 30 days was accepted (the general bound);
    the workers mint them for 120 s, so a longer one is not theirs."""
    internal = {"role": INTERNAL_ROLE, INTERNAL_CLAIM: True}
    now = int(time.time())
    ok = decode_token(signed(iat=now, exp=now + INTERNAL_TOKEN_TTL_S, **internal), SECRET)
    assert ok.internal is True
    for lifetime in (INTERNAL_TOKEN_TTL_S + 1, 30 * 86_400):
        assert refusal(signed(iat=now, exp=now + lifetime, **internal)) == (
            401,
            "unauthorized",
            "invalid token: a worker-to-worker token lives at most 120 s",
            "Authorization",
        )
    # a client's token keeps the general bound
    assert decode_token(signed(iat=now, exp=now + 86_400), SECRET).internal is False
    minted = new_token(
        SECRET,
        user_id="internal",
        organization_id="org-a",
        ttl_seconds=INTERNAL_TOKEN_TTL_S,
        internal=True,
    )
    assert decode_token(minted.token, SECRET).internal is True  # as the workers mint them


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "an 'Authorization: Bearer <token>' header is required"),
        ("", "an 'Authorization: Bearer <token>' header is required"),
        (
            "Basic dXNlcjpwYXNz",
            "the Authorization header must use the Bearer scheme ('Bearer <token>'), not 'Basic'",
        ),
        (
            "Token abc.def.ghi",
            "the Authorization header must use the Bearer scheme ('Bearer <token>'), not 'Token'",
        ),
        (
            "abc.def.ghi",  # the token alone: not echoed
            "the Authorization header must use the Bearer scheme ('Bearer <token>')",
        ),
        (
            "opaquesecretword",  # an attacker round: a lone word of letters was echoed
            "the Authorization header must use the Bearer scheme ('Bearer <token>')",
        ),
        # curl -H "Authorization: Bearer $EMPTY": the server trims the value to "Bearer"
        ("Bearer", "the bearer token is empty"),
        ("Bearer ", "the bearer token is empty"),
        ("bearer   ", "the bearer token is empty"),
    ],
)
def test_a_missing_header_and_an_empty_token_are_told_apart(
    header: str | None, reason: str
) -> None:
    headers = {} if header is None else {"Authorization": header}
    request = make_mocked_request("GET", "/orgs/org-a/venues", headers=headers)
    with pytest.raises(ApiError) as refused:
        bearer_token(request)
    e = refused.value
    assert (e.status, e.code, e.reason, e.field) == (401, "unauthorized", reason, "Authorization")


@pytest.mark.parametrize(
    "header",
    ["Bearer abc.def.ghi", "Bearer  abc.def.ghi", "Bearer\tabc.def.ghi", "bearer abc.def.ghi "],
)
def test_a_bearer_token_is_read_as_sent(header: str) -> None:
    """One space or more, or a tab (a trial user's paste), between the scheme and the token."""
    request = make_mocked_request("GET", "/", headers={"Authorization": header})
    assert bearer_token(request) == "abc.def.ghi"


@pytest.mark.parametrize("jti", ["", "j" * 129, "jé", "j\x00", "j\n"])
def test_a_jti_that_could_never_be_revoked_by_id_is_refused(jti: object) -> None:
    """An attacker round's finding (with the signing secret): tokens whose ``jti`` breaks the
    rule a revocation's ``jti`` must meet were accepted, and could never be revoked by id."""
    assert refusal(signed(jti=jti)) == (
        401,
        "unauthorized",
        "invalid token: jti is not 1-128 printable ASCII characters",
        "Authorization",
    )


def test_a_non_ascii_token_is_refused_before_pyjwt_sees_it() -> None:
    assert refusal("\udcff\udcfe") == (
        401,
        "unauthorized",
        "invalid token: a token is ASCII (base64url and dots)",
        "Authorization",
    )
