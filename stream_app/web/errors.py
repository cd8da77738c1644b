"""Machine-readable HTTP errors: ``{"error": {"code", "reason", "field"}}`` with a 4xx/5xx
(``field`` null when no one field is at fault)."""

from __future__ import annotations

from aiohttp import web

from stream_app.errors import WeddingError, cut, printable
from stream_app.queries.errors import QueryUnavailableError
from stream_app.web.responses import json_response


class ApiError(WeddingError):
    """An error answered to the caller.

    Attributes:
        status: HTTP status (400 bad input, 401 no/bad token, 403 other tenant, 404, 503).
        code: stable machine code, e.g. ``invalid_field``, ``unauthorized``, ``not_found``.
        reason: human-readable cause.
        field: the offending request field (JSON path or query parameter), when there is one
            (else ``null`` in the answer: every error body has ``code``, ``reason`` and
            ``field``).
    """

    def __init__(self, status: int, code: str, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.field = field

    def response(self) -> web.Response:
        """The JSON response of this error; ``reason`` and ``field`` with their control
        characters and line breaks escaped (:func:`~stream_app.errors.printable`: a request's
        own key ``a\r\nb`` is named ``a\\u000d\\u000ab``), then cut to
        :data:`MAX_REASON_CHARS` and :data:`MAX_FIELD_CHARS` (a request's own
        100,000-character key or value is not echoed back whole)."""
        reason = cut(printable(self.reason), MAX_REASON_CHARS)
        field = None if self.field is None else cut(printable(self.field), MAX_FIELD_CHARS)
        body: dict[str, str | None] = {"code": self.code, "reason": reason, "field": field}
        return json_response({"error": body}, status=self.status)


class BusyError(ApiError):
    """A bounded share of this worker is in use: 429 when the organisation holds its own
    share, 503 when every slot is taken; with ``Retry-After`` (whole seconds). ``field`` is
    ``organization_id`` when the organisation's own share is what is used up.

    Attributes:
        retry_after_s: seconds the client is told to wait before retrying (at least 1).
    """

    def __init__(
        self, status: int, code: str, reason: str, retry_after_s: int, field: str | None = None
    ) -> None:
        super().__init__(status, code, reason, field=field)
        self.retry_after_s = max(1, retry_after_s)

    def response(self) -> web.Response:
        """The JSON error with ``Retry-After``."""
        resp = super().response()
        resp.headers["Retry-After"] = str(self.retry_after_s)
        return resp


MAX_REASON_CHARS = 1_000
"""The longest ``reason`` an error answer carries."""
MAX_FIELD_CHARS = 200
"""The longest ``field`` an error answer carries."""


def report_not_found(report_id: str) -> ApiError:
    """404 ``not_found`` naming ``path.report_id``: the path's organisation has no such report."""
    return ApiError(
        404, "not_found", f"no report {report_id!r} in this organisation", field="path.report_id"
    )


def api_error_of(exc: QueryUnavailableError) -> ApiError:
    """The HTTP answer to a table read nobody can answer right now: 503 with its code."""
    return ApiError(503, exc.code, exc.reason)
