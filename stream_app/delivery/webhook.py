"""Webhook delivery: an HTTP POST of the result JSON, signed with HMAC-SHA256.

Headers sent with every attempt:

* ``X-Wedding-Timestamp``: the attempt's time, whole seconds since the Unix epoch (UTC);
* ``X-Wedding-Signature``: ``sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>.<body>"``
  (the timestamp's ASCII digits, a dot, then the exact body bytes) keyed with the target's
  secret. Receivers recompute it and compare in constant time, and reject old timestamps
  to stop replays;
* ``X-Wedding-Delivery``: ``<organization_id>/<report_id>``, an idempotency key for the
  receiver, unique across tenants (report ids are chosen by each tenant, so two tenants may
  both have a report ``x``; ids never hold a ``/``, :mod:`stream_app.schemas.ids`).

Each attempt is signed anew with its own timestamp. Classification: 2xx is delivered;
timeouts, connection errors, 5xx, 408 (Request Timeout) and 429 (Too Many Requests) are
retriable; any other status (other 4xx, and 3xx) is permanent.

SSRF (:mod:`stream_app.delivery.egress`): the URL's host is resolved when the attempt is made
and every address is checked by the connector's resolver; the connection goes to the checked
address. A refused address is a permanent failure naming the address and why. **Redirects
are refused altogether**: a 3xx is never followed (the POST does not reach the ``Location``),
it fails the delivery permanently with the ``Location`` named in the log.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp
import orjson

from stream_app.delivery.api import LinkSigner
from stream_app.delivery.base import (
    DeliveryJob,
    DeliveryMethod,
    IssuedLink,
    PermanentDeliveryError,
    SendReceipt,
    TransientDeliveryError,
)
from stream_app.delivery.egress import (
    EgressPolicy,
    EgressRefusedError,
    GuardedResolver,
    check_url_host,
    url_host,
)
from stream_app.delivery.redact import clip, mask_url, mask_urls
from stream_app.delivery.targets import WebhookTarget, link_ttl_seconds

SIGNATURE_HEADER = "X-Wedding-Signature"
TIMESTAMP_HEADER = "X-Wedding-Timestamp"
DELIVERY_HEADER = "X-Wedding-Delivery"
_RETRIABLE_4XX = frozenset({408, 429})
MAX_REPLY_BYTES = 64 * 1024
"""The most bytes of a receiver's response body that are read; the connection is then
dropped (a receiver cannot make the worker hold a large answer)."""
KEPT_REPLY_CHARS = 200
"""The characters of the response body kept in the delivery log."""


async def read_capped(resp: aiohttp.ClientResponse) -> str:
    """The first :data:`KEPT_REPLY_CHARS` characters of ``resp``'s body, reading at most
    :data:`MAX_REPLY_BYTES` bytes; the connection is closed, never reused, when more is left."""
    data = bytearray()
    while len(data) < MAX_REPLY_BYTES:
        chunk = await resp.content.read(MAX_REPLY_BYTES - len(data))
        if not chunk:
            break
        data += chunk
    if not resp.content.at_eof():
        resp.close()  # drop the connection instead of draining the rest
    return data.decode("utf-8", errors="replace")[:KEPT_REPLY_CHARS]


def delivery_key(job: DeliveryJob) -> str:
    """The ``X-Wedding-Delivery`` value of ``job``: ``<organization_id>/<report_id>``."""
    return f"{job.organization_id}/{job.report_id}"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Wedding-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``ts.body``."""
    mac = hmac.new(secret.encode(), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is :func:`sign` of the same input (constant-time comparison)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def result_payload(
    job: DeliveryJob, signer: LinkSigner, now: datetime, issued: list[IssuedLink] | None = None
) -> dict[str, Any]:
    """The JSON document posted for ``job``: run, report and signed download links.

    ``kind`` is ``scheduled_report`` (with ``schedule_id``, ``run_id`` and ``fire_time``) or,
    for a report request's own delivery, ``report`` (those three are null). The links last
    the target's ``link_ttl_seconds``; each is appended to ``issued`` when given.
    """
    status, order = job.status, job.order
    links = [
        signer.sign(
            job.organization_id,
            f.link.path,
            now=now,
            report_id=job.report_id,
            schedule_id=job.schedule_id,
            ttl_s=link_ttl_seconds(job.target),
        )
        for f in job.files
    ]
    if issued is not None:
        issued.extend(link.issued(f.link.format) for f, link in zip(job.files, links, strict=True))
    return {
        "kind": "scheduled_report" if order.schedule_id is not None else "report",
        "schedule_id": order.schedule_id,
        "organization_id": order.organization_id,
        "run_id": order.run_id,
        "fire_time": (
            order.fire_time.astimezone(UTC).isoformat() if order.schedule_id is not None else None
        ),
        "report_id": job.report_id,
        "report_type": status.report_type,
        "status": status.status,
        "completed_at": status.at.astimezone(UTC).isoformat(),
        "date_from": order.date_from.isoformat(),
        "date_to": order.date_to.isoformat(),
        "artifacts": [
            {
                "format": f.link.format,
                "sha256": f.link.sha256,
                "size_bytes": f.link.size_bytes,
                "rows": f.link.rows,
                "download_url": link.url,
                "download_expires_at": link.expires_at.isoformat(),
            }
            for f, link in zip(job.files, links, strict=True)
        ],
    }


class WebhookMethod(DeliveryMethod):
    """Delivery by signed HTTP POST (see the module docstring).

    Attributes:
        signer: signs the download links in the payload.
        egress: which addresses the POST may go to (default: public addresses only).
    """

    name: ClassVar[str] = "webhook"

    def __init__(self, signer: LinkSigner, egress: EgressPolicy | None = None) -> None:
        self.signer = signer
        self.egress = egress or EgressPolicy()

    def describe_target(self, job: DeliveryJob) -> str:
        """The webhook URL."""
        target = job.target
        return f"POST {mask_url(target.url)}" if isinstance(target, WebhookTarget) else "webhook"

    async def send(self, job: DeliveryJob) -> SendReceipt:
        """POST the signed result once.

        Raises:
            TransientDeliveryError: timeout, connection error, 5xx, 408 or 429.
            PermanentDeliveryError: any other non-2xx status (redirects included), the host
                resolves to a refused address, or the target is not a webhook.
        """
        target = job.target
        if not isinstance(target, WebhookTarget):
            raise PermanentDeliveryError(f"the target is {target.method}, not webhook")
        shown = mask_url(target.url)  # no userinfo nor query in any message
        try:
            check_url_host(self.egress, url_host(target.url) or "")
        except EgressRefusedError as exc:
            raise PermanentDeliveryError(f"POST {shown}: {exc}") from exc
        now = datetime.now(UTC)
        issued: list[IssuedLink] = []
        body = orjson.dumps(result_payload(job, self.signer, now, issued))
        timestamp = str(int(now.timestamp()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(target.secret, timestamp, body),
            DELIVERY_HEADER: delivery_key(job),
        }
        timeout = aiohttp.ClientTimeout(total=target.timeout_s)
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.egress), use_dns_cache=False)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
                session.post(target.url, data=body, headers=headers, allow_redirects=False) as resp,
            ):
                code = resp.status
                location = resp.headers.get("Location")
                reply = await read_capped(resp)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, EgressRefusedError):
                raise PermanentDeliveryError(f"POST {shown}: {exc.os_error}") from exc
            raise TransientDeliveryError(
                f"POST {shown}: {type(exc).__name__}: {mask_urls(str(exc))}"
            ) from exc
        except TimeoutError as exc:
            raise TransientDeliveryError(
                f"POST {shown}: no response within {target.timeout_s} s"
            ) from exc
        except aiohttp.InvalidURL as exc:  # the same URL fails the same way: never retried
            raise PermanentDeliveryError(f"POST {shown}: not a valid URL") from exc
        except aiohttp.ClientError as exc:
            raise TransientDeliveryError(
                f"POST {shown}: {type(exc).__name__}: {mask_urls(str(exc))}"
            ) from exc
        if 200 <= code < 300:
            return SendReceipt(
                location=f"POST {shown}",
                detail=f"HTTP {code}",
                links=tuple(link.url for link in issued),
                issued=tuple(issued),
            )
        if 300 <= code < 400:
            raise PermanentDeliveryError(
                f"POST {shown}: HTTP {code} redirect to {_location(location)!r} refused:"
                " webhook redirects are never followed"
            )
        message = f"POST {shown}: HTTP {code} {reply!r}"
        if code >= 500 or code in _RETRIABLE_4XX:
            raise TransientDeliveryError(message)
        raise PermanentDeliveryError(message)


def _location(location: str | None) -> str | None:
    """A redirect's ``Location`` as kept: masked and clipped (the receiver chose it)."""
    return None if location is None else mask_urls(clip(location))
