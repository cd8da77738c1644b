"""Delivery targets as the HTTP API takes them: a schedule's ``delivery`` and a report
request's own ``delivery`` are checked here, the same way (fields, internal hosts), and a
report request's is also checked for permission and sealed before it is recorded.

- :func:`target_from_json`: a ``delivery`` object → a
  :class:`~stream_app.delivery.targets.DeliveryTarget`, or a 400 naming the field.
- :func:`check_target_address`: refuse webhook URLs and SFTP hosts on internal addresses at
  creation (``WEDDING_ALLOW_PRIVATE_TARGETS``); every delivery checks again when it is made.
- :func:`accept_report_delivery`: a report request's ``delivery``: the ``schedules:manage``
  permission and no venue scope (as creating a schedule with that target), the same checks
  (unknown keys refused), then its secrets
  sealed under the organisation's data key (:mod:`stream_app.delivery.adhoc`).
- :func:`retry_from_json`: a ``retry`` object → a
  :class:`~stream_app.delivery.targets.RetryPolicy` (first wait at least 1 s).
- :func:`request_delivery_from_json`: a report request's ``delivery`` (target and retry).
- :func:`public_target`: a target as the API shows it (no secrets).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
from typing import Any

import msgspec
import orjson

from stream_app.app import settings
from stream_app.crypto.keyring import get_keyring
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import UnknownOrganizationError, fetch_organization
from stream_app.delivery.adhoc import RequestDelivery, seal_request_delivery
from stream_app.delivery.egress import refusal, url_host
from stream_app.delivery.redact import mask_url
from stream_app.delivery.targets import (
    TARGET_TYPES,
    DeliveryTarget,
    RetryPolicy,
    TargetValidationError,
    accept_retry,
    check_known_fields,
    target_parts,
)
from stream_app.errors import cut
from stream_app.schemas.base import decode_event
from stream_app.schemas.reports import ReportRequest
from stream_app.web.auth import Principal
from stream_app.web.errors import ApiError
from stream_app.web.permissions import Permission, allowed

_RETRY_FIELDS = frozenset(f.name for f in dataclasses.fields(RetryPolicy))


def error_field(message: str, field: str) -> str:
    """The field a msgspec validation message of ``field``'s value is about, in the API's
    dotted form: ``Object missing required field `recipients``` → ``delivery.recipients``;
    ``... - at `$.timeout_s``` → ``delivery.timeout_s``; a model check's own
    ``delivery.secret: reason`` → ``delivery.secret`` (also when the model names itself
    alone: ``retry.max_attempts: ...`` of ``delivery.retry`` → ``delivery.retry.max_attempts``);
    else ``field``."""
    missing = re.search(r"missing required field `([^`]+)`", message)
    at = re.search(r" - at `\$((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])+)`", message)
    if at is not None:
        path = field + at.group(1)
        return f"{path}.{missing.group(1)}" if missing is not None else path
    if missing is not None:
        return f"{field}.{missing.group(1)}"
    bare = field.removeprefix("$.")  # a report request's fields are named from its root
    last = bare.rpartition(".")[2]  # a model may name itself alone: retry.max_attempts
    own = re.match(
        rf"({re.escape(bare)}|{re.escape(last)})((?:\.[A-Za-z_][A-Za-z0-9_]*)+): ", message
    )
    if own is None:
        return field
    return field[: len(field) - len(bare)] + bare + own.group(2)


_AT_SUFFIX = re.compile(r" - at `\$[^`]*`$")


def convert_field(value: Any, typ: type[Any], field: str) -> Any:
    """``value`` (a request body's ``field``) as a ``typ``, strictly: a number must be a
    JSON number and a boolean a JSON boolean (``"5"``, ``"true"`` are refused); a datetime
    is an ISO 8601 string.

    Raises:
        ApiError: 400 naming the field (:func:`error_field`) when msgspec refuses it.
        TargetValidationError: ``typ``'s own check failed (its ``field`` names the field).
    """
    try:
        return msgspec.convert(value, typ)
    except TargetValidationError:
        raise
    except msgspec.ValidationError as exc:
        message = str(exc)
        # msgspec's " - at `$.x`" is relative to the value: the field names the whole path
        reason = _AT_SUFFIX.sub("", message)
        raise ApiError(400, "invalid_field", reason, field=error_field(message, field)) from None


def retry_from_json(value: Any, field: str) -> RetryPolicy:
    """The retry policy a request body asks for at ``field`` (``{}``: the defaults), with
    the first wait at least :data:`~stream_app.delivery.targets.MIN_BASE_BACKOFF_S`.

    Raises:
        ApiError: 400 naming the field (wrong type, see :func:`convert_field`).
        TargetValidationError: a bound is broken (its ``field``: ``retry.<name>``).
    """
    policy: RetryPolicy = convert_field(value, RetryPolicy, field)
    return accept_retry(policy)


_ALLOW = (
    "; deliveries go to public addresses unless the operator sets WEDDING_ALLOW_PRIVATE_TARGETS"
)


def check_target_address(host: str | None, field: str) -> None:
    """Refuse delivery targets on internal addresses unless allowed (SSRF guard).

    Literal IPs that the send-time guard refuses (:func:`stream_app.delivery.egress.refusal`:
    loopback, private, link-local (cloud metadata), CGNAT, multicast, reserved, unspecified,
    IPv4-mapped, 6to4/Teredo of those) and the name ``localhost`` are refused. Names are not
    resolved here (what a name resolves to may change): every delivery resolves and checks them
    again (:mod:`stream_app.delivery.egress`).

    Raises:
        ApiError: 400 naming ``field``.
    """
    if settings.allow_private_targets or not host:
        return
    if any(c in host for c in "%\x00\\") or not host.isprintable():
        raise ApiError(400, "invalid_field", f"{host!r} is not a plain host name", field=field)
    name = host.strip("[]").lower().rstrip(".")  # 'localhost.' and '127.0.0.1.' are the same
    if name == "localhost" or name.endswith(".localhost"):
        raise ApiError(
            400, "invalid_field", f"{host!r} is an internal address{_ALLOW}", field=field
        )
    ip = _literal_ip(name)
    if ip is None:
        return
    why = refusal(ip)  # the send-time rule: CGNAT, 6to4/Teredo of internal ones included
    if why is not None:
        raise ApiError(
            400, "invalid_field", f"{host!r} is an internal address ({why}){_ALLOW}", field=field
        )


def _literal_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a literal host denotes, read the way the C library reads it.

    Besides dotted quads this covers the forms ``inet_aton`` accepts and HTTP clients may
    connect to: ``0x7f000001``, ``2130706433``, ``127.1``, ``0177.0.0.1``, ``0``. None for a
    name that is not a literal address.
    """
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except (OSError, ValueError):
        return None


def _check_addresses(delivery: dict[str, Any], field: str) -> None:
    if delivery.get("method") == "webhook":
        check_target_address(url_host(str(delivery.get("url", ""))), f"{field}.url")
    if delivery.get("method") == "sftp":
        check_target_address(str(delivery.get("host", "")), f"{field}.host")


def _method(delivery: Any, field: str) -> str:
    method = delivery.get("method") if isinstance(delivery, dict) else None
    if not isinstance(method, str) or method not in TARGET_TYPES:  # {} is unhashable
        raise ApiError(
            400,
            "invalid_field",
            f"{field}.method must be one of {sorted(TARGET_TYPES)}",
            field=f"{field}.method",
        )
    return method


def target_from_json(delivery: Any, field: str) -> DeliveryTarget:
    """The target of a ``delivery`` object of a request body at ``field``.

    Raises:
        ApiError: 400 naming the field (unknown method, wrong type, internal host).
        TargetValidationError: a target check failed (its ``field`` is ``delivery.<name>``).
    """
    method = _method(delivery, field)
    check_known_fields(delivery, method)  # TargetValidationError naming delivery.<key>
    _check_addresses(delivery, field)
    target: DeliveryTarget = convert_field(delivery, TARGET_TYPES[method], field)
    return target


def public_target(target: DeliveryTarget) -> dict[str, Any]:
    """``target`` as the API shows it: its method and options, never a secret (nor an SFTP
    host key), a webhook ``url`` masked as the delivery log shows it (``http://***@host/hook
    ?***``: an attacker round read the credentials and key of a URL back from every schedule
    answer)."""
    method, options, _ = target_parts(target)
    shown = {k: v for k, v in options.items() if k != "host_key"}
    if isinstance(shown.get("url"), str):
        shown["url"] = mask_url(shown["url"])
    return {"method": method, **shown}


def request_delivery_from_json(delivery: dict[str, Any]) -> RequestDelivery:
    """The target and retry policy of a report request's ``delivery`` object, checked as a
    schedule's are (fields, types, internal hosts, the retry bounds).

    Raises:
        ApiError: 400 naming ``$.delivery.<field>`` or ``$.delivery.retry.<field>``.
    """
    fields = dict(delivery)
    retry = fields.pop("retry", {})
    try:
        target = target_from_json(fields, "$.delivery")
        if isinstance(retry, dict):
            for key in retry:
                if key not in _RETRY_FIELDS:
                    raise TargetValidationError(
                        f"retry.{cut(str(key), 80)}",
                        f"unknown field (known: {sorted(_RETRY_FIELDS)})",
                    )
        policy = retry_from_json(retry, "$.delivery.retry")
    except TargetValidationError as exc:  # its field: delivery.<name> or retry.<name>
        where = exc.field if exc.field.startswith("delivery.") else f"delivery.{exc.field}"
        raise ApiError(400, "invalid_field", exc.reason, field=f"$.{where}") from None
    return RequestDelivery(target, policy)


async def accept_report_delivery(
    principal: Principal, raw: bytes, req: ReportRequest
) -> tuple[bytes, ReportRequest]:
    """Check a report request's own ``delivery`` and seal its secrets (``raw``/``req`` as
    they are when it has none).

    Asking for a delivery is allowed to the roles that may create a schedule with that
    target (``schedules:manage``); the target is checked as a schedule's is (fields and
    internal hosts, ``retry`` as a schedule's retry policy), and its secrets are sealed under
    the organisation's data key for this report id, so the recorded and published request
    holds no plaintext secret.

    Returns:
        The request document (bytes) and request with the sealed delivery.

    Raises:
        ApiError: 403 naming ``$.delivery`` (permission) or ``venue_scope`` (a venue-scoped
            token), 400 naming ``$.delivery.<field>``,
            404 naming ``organization_id`` (unknown organisation).
    """
    if req.delivery is None:
        return raw, req
    if not allowed(principal.role, Permission.SCHEDULES_MANAGE):
        raise ApiError(
            403,
            "forbidden",
            f"asking for a delivery needs {Permission.SCHEDULES_MANAGE.value!r}, as creating a"
            f" schedule does (role {principal.role!r})",
            field="$.delivery",
        )
    if principal.venues is not None:  # as POST /schedules (organisation-wide) refuses it
        raise ApiError(
            403,
            "forbidden",
            "a venue-scoped token cannot ask for a delivery, as it cannot create a schedule",
            field="venue_scope",
        )
    delivery = request_delivery_from_json(req.delivery)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        try:
            await fetch_organization(conn, req.organization_id)
        except UnknownOrganizationError as exc:
            raise ApiError(404, "not_found", str(exc), field="organization_id") from None
    key = await (await get_keyring(settings.postgres_dsn)).current(req.organization_id)
    doc = orjson.loads(raw)
    doc["delivery"] = seal_request_delivery(delivery, key, req.report_id)
    sealed = orjson.dumps(doc)
    return sealed, decode_event(sealed, ReportRequest)
