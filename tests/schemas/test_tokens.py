"""Bearer tokens as signed (:mod:`stream_app.schemas.tokens`): an HS256 JWT whose claims and
signature are checked here with ``base64``, ``json`` and ``hmac`` (not through a JWT library)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stream_app.schemas.tokens import INTERNAL_CLAIM, new_token

SECRET = "a-test-secret-of-32-characters!!"


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    header, payload, signature = token.split(".")
    signed = f"{header}.{payload}".encode()
    return json.loads(_b64(header)), json.loads(_b64(payload)), _b64(signature), signed


def test_claims_and_an_hs256_signature_by_the_secret() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    issued = new_token(
        SECRET, user_id="ana", organization_id="org-a", ttl_seconds=3600, role="viewer",
        venues=["v2", "v1", "v2"],
    )  # fmt: skip
    header, claims, signature, signed = parts(issued.token)
    assert header["alg"] == "HS256"
    assert signature == hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()
    other = b"another-secret-of-32-characters!"
    assert signature != hmac.new(other, signed, hashlib.sha256).digest()
    assert {k: claims[k] for k in ("iss", "aud", "sub", "org", "role", "venues", "jti")} == {
        "iss": "wedding-engine",
        "aud": "wedding-engine-api",
        "sub": "ana",
        "org": "org-a",
        "role": "viewer",
        "venues": ["v1", "v2"],  # sorted, no repeats
        "jti": issued.jti,
    }
    assert INTERNAL_CLAIM not in claims
    assert claims["exp"] - claims["iat"] == 3600
    assert before.timestamp() <= claims["iat"] <= datetime.now(UTC).timestamp()
    assert issued.issued_at == datetime.fromtimestamp(claims["iat"], UTC)
    assert issued.expires_at - issued.issued_at == timedelta(seconds=3600)


def test_defaults_every_venue_and_the_internal_claim_with_its_own_role() -> None:
    first = new_token(SECRET, user_id="w", organization_id="o", ttl_seconds=60, internal=True)
    _, claims, _, _ = parts(first.token)
    assert claims["role"] == "internal" and "venues" not in claims  # not an admin
    assert claims[INTERNAL_CLAIM] is True
    second = new_token(SECRET, user_id="w", organization_id="o", ttl_seconds=60)
    _, claims, _, _ = parts(second.token)
    assert claims["role"] == "admin" and INTERNAL_CLAIM not in claims
    assert len(first.jti) == 32 and first.jti != second.jti  # a fresh id each time


def test_the_internal_role_is_never_a_clients() -> None:
    refused = r"^role: must be one of viewer, analyst, admin, got 'internal'$"
    with pytest.raises(ValueError, match=refused):
        new_token(SECRET, user_id="u", organization_id="o", ttl_seconds=60, role="internal")
    refused = r"^role: a worker-to-worker token has role 'internal', got 'admin'$"
    with pytest.raises(ValueError, match=refused):
        new_token(
            SECRET, user_id="w", organization_id="o", ttl_seconds=60, role="admin", internal=True
        )


def test_an_unknown_role_is_refused() -> None:
    refused = r"^role: must be one of viewer, analyst, admin, got 'owner'$"
    with pytest.raises(ValueError, match=refused):
        new_token(SECRET, user_id="u", organization_id="o", ttl_seconds=60, role="owner")
