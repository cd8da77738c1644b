"""Why a table read could not be answered right now.

The HTTP layer answers these with a 503 carrying :attr:`QueryUnavailableError.code`
(:func:`stream_app.web.errors.api_error_of`); the report agent retries them.
"""

from __future__ import annotations

from stream_app.errors import WeddingError


class QueryUnavailableError(WeddingError):
    """Nobody can answer the read right now; it may succeed later (retriable).

    Attributes:
        code: a stable machine code: ``recovering`` (this worker restores its tables or
            rebalances), ``rebalancing`` / ``recovering`` (no worker holds the partition),
            ``owner_unavailable`` (the owner did not answer after the retries),
            ``owner_error`` (it answered with an error), ``incomplete`` (the parts of a
            scatter-gather miss a partition or read one twice).
        reason: the cause, in words.
    """

    retriable = True

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
