"""Why a report's generation stopped, and whether trying again may help.

Part of the reports layer; no I/O. The retry policy (:mod:`stream_app.reports.generate`)
reads :func:`is_retriable`; the cause a user sees is :func:`cause_text`.
"""

from __future__ import annotations

from stream_app.errors import WeddingError
from stream_app.reports.artifacts import ArtifactStoreFullError
from stream_app.transient import is_transient


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
    """True when a failed generation may succeed if tried again: the exception's own
    ``retriable`` attribute when it has one (:class:`ReportFailure`), else whether it is
    transient (:func:`stream_app.transient.is_transient`: I/O, timeouts, a lost or
    restarting PostgreSQL, HTTP client errors)."""
    return is_transient(exc)


def cause_text(exc: BaseException) -> str:
    """The cause recorded for ``exc``: its message for a :class:`ReportFailure` or a full
    artifact store (their message is the cause), else ``"<type>: <message>"``."""
    if isinstance(exc, ReportFailure | ArtifactStoreFullError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
