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
