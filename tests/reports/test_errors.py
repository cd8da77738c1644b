"""Why a report's generation stopped (:mod:`stream_app.reports.errors`): the cause a user sees
(:func:`cause_text`) and whether a retry may help (:func:`is_retriable`; the cases of a
failed attempt's own ``retriable`` flag are in ``tests/reports/test_cache.py``)."""

from __future__ import annotations

import errno

import aiohttp
import asyncpg

from stream_app.errors import WeddingError
from stream_app.reports.artifacts import ArtifactStoreFullError
from stream_app.reports.errors import (
    ReportCancelledError,
    ReportFailure,
    cause_text,
    is_retriable,
)


class _Flagged(Exception):
    def __init__(self, retriable: object) -> None:
        super().__init__("flagged")
        self.retriable = retriable


def test_the_cause_of_a_failure_or_a_full_store_is_its_message_else_type_and_message() -> None:
    assert cause_text(ReportFailure("organization_id: 'x' is unknown")) == (
        "organization_id: 'x' is unknown"
    )
    full = ArtifactStoreFullError(errno.ENOSPC, "the artifact store is full (limit 10 MiB)")
    assert cause_text(full) == "the artifact store is full (limit 10 MiB)"
    assert cause_text(ValueError("bad month")) == "ValueError: bad month"
    assert cause_text(KeyError("v1")) == "KeyError: 'v1'"


def test_io_timeouts_lost_connections_and_http_client_errors_are_retriable() -> None:
    assert is_retriable(TimeoutError())
    assert is_retriable(ConnectionResetError("peer"))  # an OSError
    assert is_retriable(asyncpg.InterfaceError("connection is closed"))
    assert is_retriable(aiohttp.ClientConnectionError("owner gone"))
    assert not is_retriable(RuntimeError("bug"))
    assert not is_retriable(ZeroDivisionError())


def test_an_own_boolean_flag_wins_over_the_type() -> None:
    # a full store is an OSError, but it fails the same way when tried again
    assert not is_retriable(ArtifactStoreFullError(errno.ENOSPC, "full"))
    assert is_retriable(_Flagged(True))
    assert not is_retriable(_Flagged(False))
    # a flag that is not a bool does not decide: the type does (an Exception: not retriable)
    assert not is_retriable(_Flagged("yes"))


def test_a_cancelled_report_is_a_wedding_error_that_is_not_retried() -> None:
    exc = ReportCancelledError("cancelled")
    assert isinstance(exc, WeddingError)
    assert not is_retriable(exc)
    assert ReportFailure("x", retriable=True).retriable is True
    assert ReportFailure("x").retriable is False
