"""retry_transient and handle_until_done: a transient error is tried again until the work
is done; any other error at once, or a transient one past the horizon, is raised (logged and
the message dropped by handle_until_done); the worker stopping (CancelledError) is never
swallowed."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from stream_app import transient
from stream_app.reports.errors import is_retriable
from stream_app.transient import handle_until_done, is_transient, retry_transient


class Flaky:
    """Raises each of ``errors`` on successive calls, then returns ``"done"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transient, "FIRST_WAIT_S", 0.01)
    monkeypatch.setattr(transient, "LAST_WAIT_S", 0.02)


def test_a_postgresql_restart_is_transient() -> None:
    for exc in (
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CrashShutdownError("crash"),
        asyncpg.ConnectionDoesNotExistError("gone"),
        ConnectionRefusedError(111, "Connect call failed"),
    ):
        assert is_retriable(exc), exc
    assert is_transient(asyncpg.InternalClientError("cannot switch to state 15"))  # cut mid-query
    assert is_transient(KafkaTimeoutError())  # aiokafka says not retriable: the broker was away
    assert not is_transient(MessageSizeTooLargeError())
    assert not is_retriable(asyncpg.QueryCanceledError("canceling statement due to timeout"))
    assert not is_retriable(ValueError("bad"))


async def test_transient_errors_are_tried_again_until_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = Flaky(
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        ConnectionRefusedError(111, "Connect call failed"),
        asyncpg.AdminShutdownError("terminating connection"),
    )
    with caplog.at_level(logging.WARNING, "stream_app.transient"):
        assert await handle_until_done(handle, "lane: offset 7") == "done"
    assert handle.calls == 4
    tries = [r.getMessage() for r in caplog.records]
    assert tries[0] == (
        "lane: offset 7: CannotConnectNowError: the database system is shutting down;"
        " trying again (try 2)"
    )
    # the next two are the same log template: the worker's log throttle (installed by an
    # earlier test of the session, stream_app.logthrottle) may fold them into the first
    assert all(t.endswith(f"(try {n})") for n, t in zip((2, 3, 4), tries, strict=False))


async def test_another_error_is_logged_and_dropped_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = Flaky(ValueError("not a report"))
    with caplog.at_level(logging.ERROR, "stream_app.transient"):
        assert await handle_until_done(handle, "router: offset 3") is None
    assert handle.calls == 1
    assert [r.getMessage() for r in caplog.records] == [
        "router: offset 3: failed; the message is dropped"
    ]


async def test_a_transient_error_past_the_horizon_is_dropped() -> None:
    handle = Flaky(*(OSError("down") for _ in range(10_000)))
    assert await handle_until_done(handle, "x", retry_for_s=0.2) is None
    assert 3 <= handle.calls < 10_000


async def test_cancellation_is_raised_at_once() -> None:
    handle = Flaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await handle_until_done(handle, "x")
    assert handle.calls == 1


async def test_retry_transient_raises_what_it_cannot_get_past() -> None:
    refused = Flaky(*(ConnectionRefusedError(111, f"refused {i}") for i in range(10_000)))
    with pytest.raises(ConnectionRefusedError) as caught:
        await retry_transient(refused, "x", retry_for_s=0.2)
    assert caught.value.strerror == f"refused {refused.calls - 1}"  # the last try's error
    wrong = Flaky(KeyError("field"))
    with pytest.raises(KeyError):
        await retry_transient(wrong, "x")
    assert wrong.calls == 1
    flaky = Flaky(asyncpg.CannotConnectNowError("starting up"))
    assert await retry_transient(flaky, "x") == "done" and flaky.calls == 2
