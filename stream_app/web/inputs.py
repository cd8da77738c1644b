"""Reading what a request sends, the same way on every route: body, query, organisation.

Part of the HTTP layer. Each helper turns bad input into the route's machine-readable 4xx
(:class:`~stream_app.web.errors.ApiError` naming the field): a body over its size limit,
a body that is not JSON or not a JSON object, a missing query parameter, an aggregation
request the language refuses, an organisation PostgreSQL does not know.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
import orjson
from aiohttp import web

from stream_app.aggregation import AggregationError
from stream_app.db.tenancy import Organization, UnknownOrganizationError, fetch_organization
from stream_app.web.errors import ApiError

T = TypeVar("T")

MAX_BODY_BYTES = 64 * 1024
"""Default size limit of a request body, bytes (the aggregation, rollup and validation
routes)."""

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a JSON body may have (no request needs more than a
few levels; the decoders and re-serialisers fail in their own ways past ~250)."""

_JSON_STRING = re.compile(rb'"(?:[^"\\]+|\\.)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in the JSON text ``raw`` (0 for a scalar),
    brackets inside strings not counted. For text that is not JSON the figure is only
    indicative (the decoder refuses it anyway)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    depth = deepest = 0
    for ch in brackets:
        if ch in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def refuse_deep_json(raw: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse a body nested deeper than ``limit`` levels, before any decoder reads it.

    Raises:
        ApiError: 400 ``invalid_json`` naming ``$``.
    """
    depth = json_depth(raw)
    if depth > limit:
        raise ApiError(
            400,
            "invalid_json",
            f"body is nested {depth} levels deep; at most {limit} are accepted",
            field="$",
        )


async def read_body(request: web.Request, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The request body, at most ``max_bytes`` (a declared longer one is refused before it is
    read).

    Raises:
        ApiError: 413 ``too_large`` naming ``$``.
    """
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise ApiError(413, "too_large", f"body is over {max_bytes} bytes", field="$")
    raw = await request.read()
    if len(raw) > max_bytes:
        raise ApiError(413, "too_large", f"body is over {max_bytes} bytes", field="$")
    return raw


async def read_within(request: web.Request, timeout_s: float) -> None:
    """Read the request's body into aiohttp's cache (:func:`read_body` then takes it from
    there) within ``timeout_s``; nothing when it has none.

    Raises:
        ApiError: 408 ``request_timeout`` naming ``$`` when the body has not arrived in time;
            413 ``too_large`` naming ``$`` over aiohttp's ``client_max_size``.
    """
    if not request.body_exists:
        return
    try:
        async with asyncio.timeout(timeout_s):
            await request.read()
    except TimeoutError:
        raise ApiError(
            408,
            "request_timeout",
            f"the body did not arrive within {timeout_s:g} s (WEDDING_HTTP_BODY_TIMEOUT_S)",
            field="$",
        ) from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(
            413, "too_large", f"body is over {request.client_max_size} bytes", field="$"
        ) from None


def json_value(raw: bytes) -> Any:
    """``raw`` decoded as JSON, each object's keys once.

    Raises:
        ApiError: 400 ``invalid_json`` naming ``$`` (also for a body nested deeper than
            :data:`MAX_JSON_DEPTH`, and for bytes that are not UTF-8: the first bad byte's
            position); 400 ``invalid_field`` naming a key an object repeats
            (:func:`refuse_duplicate_keys`).
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:  # orjson calls any bad UTF-8 "surrogates not allowed": say where it is
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            reason = f"body is not valid UTF-8: {bad.reason} at byte {bad.start}"
            raise ApiError(400, "invalid_json", reason, field="$") from None
        raise ApiError(400, "invalid_json", f"body is not JSON: {exc}", field="$") from None
    refuse_deep_json(raw)
    refuse_duplicate_keys(raw)
    return value


def refuse_duplicate_keys(raw: bytes) -> None:
    """Refuse a JSON body in which an object repeats a key (``{"report_id": "a", "report_id":
    "b"}``): decoders keep the last value silently, so what the caller meant is unknown.

    orjson and msgspec (the body decoders) do not report repeats; the standard library's
    ``json`` does, through ``object_pairs_hook``. ``raw`` is parsed a second time for it
    (bodies are at most 64 KiB); text ``json`` cannot read is left to the decoder's own error.

    Raises:
        ApiError: 400 ``invalid_field`` naming ``$.<key>`` when the body's top-level object
            repeats it, else ``$..<key>`` (JSONPath: the key at some depth).
    """
    repeated: list[str | None] = []  # per object, innermost first, the top-level one last

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        repeated.append(_first_repeat(pairs) if len(out) < len(pairs) else None)
        return out

    try:
        top = json.loads(raw, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):
        return
    key = repeated[-1] if isinstance(top, dict) and repeated[-1] is not None else None
    path = f"$.{key}" if key is not None else None
    if path is None:
        key = next((k for k in repeated if k is not None), None)
        if key is None:
            return
        path = f"$..{key}"
    raise ApiError(
        400, "invalid_field", f"the key {key!r} appears twice in an object; send it once", path
    )


def json_object(raw: bytes) -> dict[str, Any]:
    """``raw`` decoded as a JSON object.

    Raises:
        ApiError: 400 ``invalid_json``, or ``invalid_field`` when it is JSON but not an
            object; both naming ``$``.
    """
    body = json_value(raw)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_field", "body must be a JSON object", field="$")
    return body


def allow_query(request: web.Request, allowed: set[str] | frozenset[str]) -> None:
    """Refuse a query parameter the route does not read (a typo would otherwise be ignored
    silently and the answer look right).

    Raises:
        ApiError: 400 ``invalid_field`` naming the parameter and listing the allowed ones.
    """
    for name in request.query:
        if name not in allowed:
            raise ApiError(
                400,
                "invalid_field",
                f"unknown query parameter {name!r}; allowed: {sorted(allowed)}",
                field=name,
            )


def require_query(request: web.Request, names: tuple[str, ...], reason: str) -> None:
    """Check that the query names every one of ``names``.

    Args:
        reason: the message of the error, formatted with ``name`` (the first one missing).

    Raises:
        ApiError: 400 ``missing_field`` naming the first parameter missing.
    """
    for name in names:
        if name not in request.query:
            raise ApiError(400, "missing_field", reason.format(name=name), field=name)


def aggregation_error(exc: AggregationError) -> ApiError:
    """An aggregation or rollup definition the language refuses, as the 400 naming its JSON
    path (``$.metrics[2].field``)."""
    return ApiError(400, exc.code, exc.reason, field=exc.field)


def _first_repeat(pairs: list[tuple[str, Any]]) -> str | None:
    """The first key of ``pairs`` that an earlier pair already had."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None


def decode_aggregation(decode: Callable[[bytes], T], raw: bytes) -> T:
    """``decode(raw)`` (an aggregation request or rollup definition decoder).

    Raises:
        ApiError: 400 naming the JSON path the decoder refused (:func:`aggregation_error`), or
            a key an object repeats (:func:`refuse_duplicate_keys`); 400 ``invalid_json``
            naming ``$`` for a body nested deeper than :data:`MAX_JSON_DEPTH`.
    """
    refuse_deep_json(raw)
    try:
        decoded = decode(raw)
    except AggregationError as exc:
        raise aggregation_error(exc) from None
    refuse_duplicate_keys(raw)
    return decoded


def organization_not_found(exc: UnknownOrganizationError) -> ApiError:
    """An organisation PostgreSQL does not know, as the 404 naming ``organization_id``."""
    return ApiError(404, "not_found", str(exc), field="organization_id")


async def known_organization(conn: asyncpg.Connection, organization_id: str) -> Organization:
    """The organisation (tenant transaction, :func:`~stream_app.db.tenancy.fetch_organization`).

    Raises:
        ApiError: 404 ``not_found`` naming ``organization_id`` when it does not exist.
    """
    try:
        return await fetch_organization(conn, organization_id)
    except UnknownOrganizationError as exc:
        raise organization_not_found(exc) from None


PERIOD_QUERY = frozenset({"grain", "from", "to"})
"""The query parameters of the venue metrics and occupancy reads."""


def period_query(request: web.Request, default_grain: str, reason: str) -> tuple[str, str, str]:
    """``(grain, from, to)`` of a venue period read (``grain`` defaults to ``default_grain``).

    Raises:
        ApiError: 400 ``invalid_field`` for a parameter not in :data:`PERIOD_QUERY`
            (:func:`allow_query`); 400 ``missing_field`` without ``from`` or ``to``, with the
            message ``reason`` (:func:`require_query`).
    """
    allow_query(request, PERIOD_QUERY)
    require_query(request, ("from", "to"), reason)
    q = request.query
    return q.get("grain", default_grain), q["from"], q["to"]
