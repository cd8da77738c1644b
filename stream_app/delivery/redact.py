"""What the delivery code shows of a target or a receiver's answer: URLs masked, text clipped.

A webhook URL may carry credentials (``http://user:pass@host/hook``) or a key in its query
(``?api_key=...``). :func:`mask_url` hides both wherever a URL is shown or logged (delivery
log rows, errors, the report status): ``http://***@host/hook?***``. :func:`mask_urls` does the
same for every URL inside a message. :func:`clip` bounds text a receiver chose (a response
body, a redirect ``Location``, an SMTP or SFTP reply) before it is kept.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

MAX_KEPT_CHARS: Final = 500
"""The most characters of a receiver-chosen text (a ``Location``, a reply) that are kept."""

_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,;:)]")


def mask_url(url: str) -> str:
    """``url`` with its userinfo and its query (and fragment) replaced by ``***``.

    ``http://user:pass@host:8080/hook?k=v`` → ``http://***@host:8080/hook?***``. A string
    that does not split as a URL is returned as ``***``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    if parts.query or "?" in url:
        shown += "?***"
    if parts.fragment:
        shown += "#***"
    return shown


def mask_urls(text: str) -> str:
    """``text`` with every ``scheme://...`` URL in it masked by :func:`mask_url`."""
    return _URL_RE.sub(lambda m: mask_url(m.group(0)), text)


def strip_urls(text: str) -> str:
    """``text`` with every URL in it replaced by ``<target>`` (for readers who may not see
    delivery targets)."""
    return _URL_RE.sub("<target>", text)


def clip(text: str, limit: int = MAX_KEPT_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks a cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


HIDDEN_CAUSE: Final = (
    "the receiver did not take it; the cause is in the delivery log (deliveries:read)"
)
"""What a reader without ``deliveries:read`` sees of a cause :func:`public_detail` hides."""

_PUBLIC_DETAIL = re.compile(
    r"(?:POST <target>: )?(?:HTTP \d{3}|no response within [\d.]+ s)"
    r"|\d+ link\(s\) valid until \S+|\d+ file\(s\)|already \w+|report has no rows"
)
_RETRY_SUFFIX = re.compile(r"; attempt \d+ due at \S+$")


def public_detail(text: str) -> str:
    """What a reader who may not see delivery targets is shown of a delivery's detail.

    ``text`` must already have its URLs and addresses replaced (:func:`strip_urls`). Only
    the forms this package writes itself and that name no receiver are kept: an HTTP status
    (``POST <target>: HTTP 503``; a body the receiver sent after it is dropped), a timeout,
    the links or files delivered, a retry's ``; attempt N due at <UTC>``. Anything else (a
    connection error naming a host and what it resolves to, an SMTP or SFTP server's reply)
    becomes :data:`HIDDEN_CAUSE`.
    """
    retry = _RETRY_SUFFIX.search(text)
    suffix = retry.group(0) if retry else ""
    head = _PUBLIC_DETAIL.match(text)
    return (head.group(0) if head else HIDDEN_CAUSE) + suffix
