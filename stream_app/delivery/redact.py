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
