"""``POST /orgs/{org}/tokens/revoke``: revoke one token or all issued before a time (admin).

Body: ``{"jti": "<token id>"}`` or ``{"before": "<ISO 8601 with offset>"}``. Answer 200
``{"revoked": {"jti"|"before": ...}, "recorded_tokens": N, "effective_within_s": S}`` (and a
``warning`` when a ``jti`` matches no recorded token): every
worker refuses the tokens within ``S`` seconds (:mod:`stream_app.web.revocation`). Audited as
``token.revoked``. Errors: 400 naming ``$.jti`` / ``$.before`` (not ISO 8601 with an offset,
or later than now plus :data:`~stream_app.tokens.REVOCATION_CLOCK_SKEW_S`); 401/403 as every
route.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from stream_app import tokens
from stream_app.app import settings
from stream_app.db.pool import get_pool
from stream_app.web.auth import authenticate
from stream_app.web.errors import ApiError
from stream_app.web.inputs import json_value, read_body
from stream_app.web.permissions import Permission
from stream_app.web.responses import json_response
from stream_app.web.views import page


@page("/orgs/{org}/tokens/revoke", method="post", permission=Permission.TOKENS_MANAGE)
async def revoke_tokens(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """Revoke tokens of ``org`` (see the module docstring)."""
    principal = authenticate(request, settings.jwt_secret, org)
    body = json_value(await read_body(request))  # 413 over 64 KiB, as the other bodies
    if not isinstance(body, dict) or set(body) - {"jti", "before"} or len(body) != 1:
        raise ApiError(
            400, "invalid_field", 'body must be {"jti": ...} or {"before": ...}', field="$"
        )
    jti = body.get("jti")
    before_raw = body.get("before")
    before: datetime | None = None
    if "jti" in body and (
        not isinstance(jti, str)
        or not 0 < len(jti) <= 128
        or not (jti.isascii() and jti.isprintable())
    ):
        raise ApiError(
            400,
            "invalid_field",
            "jti must be a token id: 1-128 printable ASCII characters",
            field="$.jti",
        )
    if "before" in body:
        try:
            before = datetime.fromisoformat(str(before_raw))
        except ValueError:
            before = None
        if before is None or before.tzinfo is None:
            raise ApiError(
                400, "invalid_field", "before must be ISO 8601 with an offset", field="$.before"
            )
        try:
            tokens.check_revocation_time(before)
        except ValueError as exc:
            raise ApiError(400, "invalid_field", str(exc), field="$.before") from None
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        try:
            count = await tokens.revoke(
                conn,
                settings,
                organization_id=org,
                actor=principal.user_id,
                jti=jti if isinstance(jti, str) else None,
                issued_before=before,
            )
        except asyncpg.ForeignKeyViolationError:  # no such organisation (was a 500)
            raise ApiError(
                404, "not_found", f"no organisation {org!r}", field="organization_id"
            ) from None
    answer: dict[str, Any] = {
        "revoked": {"jti": jti} if jti else {"before": before.isoformat() if before else None},
        "recorded_tokens": count,
        "effective_within_s": settings.revocation_cache_s,
    }
    if jti and count == 0:
        # still revoked (a token minted elsewhere is not recorded), but a typo revokes nothing
        # issued here: an attacker round's operator was told 200 and believed it done
        answer["warning"] = (
            f"no token of this organisation is recorded with jti {jti!r}: check the id"
            " (`wedding-engine token` prints each jti when it issues one)"
        )
    return json_response(answer)
