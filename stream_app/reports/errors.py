"""Why a report's generation stopped, and whether trying again may help.

Part of the reports layer; no I/O. The retry policy (:mod:`stream_app.reports.generate`)
reads :func:`is_retriable`; the cause a user sees is :func:`cause_text`.
"""

from __future__ import annotations

import aiohttp
import asyncpg

from stream_app.errors import WeddingError
from stream_app.reports.artifacts import ArtifactStoreFullError


class ReportFailure(WeddingError):
    """A report cannot be generated; the message is the cause shown to the user.

    Attributes:
        retriable: True when a later attempt may succeed (a holder of table rows could not be
            reached); False for causes in the request or the data.
    """

    def __init__(self, cause: str, *, retriable: bool = False) -> None:
        super().__init__(cause)
        self.retriable = retriable


class ReportCancelledError(WeddingError):
    """The report was cancelled (seen in PostgreSQL) before an attempt could start."""


def is_retriable(exc: BaseException) -> bool:
    """True when a failed generation may succeed if tried again.

    An exception's own ``retriable`` attribute decides when it has one (style: errors carry
    their retry class); otherwise I/O errors (``OSError``: the artifact store, sockets),
    timeouts, lost PostgreSQL connections, a PostgreSQL server shutting down or starting up
    (SQLSTATE 57P01-57P03: a restart) and HTTP client errors are retriable, others not (a
    Kafka error carries its own ``retriable``).
    """
    flag = getattr(exc, "retriable", None)
    if isinstance(flag, bool):
        return flag
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError
        | asyncpg.CannotConnectNowError
        | aiohttp.ClientError,
    )


def cause_text(exc: BaseException) -> str:
    """The cause recorded for ``exc``: its message for a :class:`ReportFailure` or a full
    artifact store (their message is the cause), else ``"<type>: <message>"``."""
    if isinstance(exc, ReportFailure | ArtifactStoreFullError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
