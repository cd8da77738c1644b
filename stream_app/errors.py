"""The root of the package's exceptions: every error raised by ``stream_app`` derives from
:class:`WeddingError`, and says on its class whether trying again may succeed.

A retry policy reads :attr:`WeddingError.retriable` instead of listing exception types (the
habit of aiokafka's ``errors.py``). Classes that also mean a built-in category (a bad value, a
missing file, an I/O failure) derive from that built-in too (``class X(WeddingError,
ValueError)``), so callers that catch the built-in keep working.
"""

from __future__ import annotations


class WeddingError(Exception):
    """An error of the wedding reporting engine.

    Attributes:
        retriable: True when the same operation may succeed if tried again later (a
            partition moving between workers, a service not reachable yet); False when it
            will fail the same way (bad input, a missing object). A class attribute; an
            instance may set its own where the cause decides.
    """

    retriable: bool = False


_LINE_BREAKS = frozenset("\u2028\u2029")


def printable(text: str) -> str:
    """``text`` with each control character (C0, DEL, C1: CR, LF, NUL, ESC, U+0085) and
    Unicode line break (U+2028, U+2029) written as JSON writes it, ``\\u000d``: a request's own
    key echoed in an error or a log line never carries a line break or a terminal escape."""
    if text.isprintable():  # the common case; spaces are printable, other separators are not
        return text
    return "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in _LINE_BREAKS else c
        for c in text
    )


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters, an ellipsis and how long it was:
    ``abc… (5000 characters)``."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
