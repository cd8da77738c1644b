"""Transient errors, and doing a piece of work again until it is done through one.

A PostgreSQL restart (connections reset, then "the database system is starting up" for a
second or two) or a broker restart (5-15 s in the soak) ends on its own: work that met one
should be done again, not dropped. :func:`is_transient` says which errors are of that kind;
:func:`retry_transient` does a piece of work again while it fails with one, waiting 0.2 s
doubling to 5 s between tries (tenacity), for at most :data:`RETRY_FOR_S`;
:func:`handle_until_done` does that for one message of an agent and logs what still fails,
so the agent goes on with the next (a dead agent stops every message after it).

Why (a CI soak run of 2026-12-06 failed on it): the report and delivery agents logged and
dropped a message whose handling met a PostgreSQL restart, so a lane's request waited 120 s for
the recovery sweep, a request read by the router failed "cannot record request", and a
scheduled report finished but was never delivered; a delivery attempt that met one kept its
lease for 15 minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import asyncpg
from aiokafka.errors import KafkaTimeoutError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_FOR_S = 300.0
"""Seconds a piece of work is tried again while its error is transient (a PostgreSQL restart
takes a few seconds, a broker restart 5-15 s in the soak); then its last error is raised."""
FIRST_WAIT_S = 0.2
"""The first pause between two tries; it doubles up to :data:`LAST_WAIT_S`."""
LAST_WAIT_S = 5.0
"""The longest pause between two tries."""


def is_transient(exc: BaseException) -> bool:
    """True when the work that raised ``exc`` may succeed if done again.

    An exception's own ``retriable`` attribute decides when it has one (errors carry their
    retry class: aiokafka's errors, :class:`stream_app.reports.errors.ReportFailure`), but
    aiokafka's ``KafkaTimeoutError`` (a record not acknowledged in time: the broker away) is
    transient although it says not; otherwise I/O errors (``OSError``: files, sockets, a
    refused connection), timeouts, lost PostgreSQL connections, asyncpg's internal protocol
    errors (``cannot switch to state 15``: a connection cut in the middle of a query, seen
    across a restart), a PostgreSQL server shutting down or starting up (SQLSTATE
    57P01-57P03) and HTTP client errors are transient, others not (a statement timeout,
    57014, is not: doing it again would time out again).
    """
    if isinstance(exc, KafkaTimeoutError):  # not acknowledged in time: a broker away
        return True
    flag = getattr(exc, "retriable", None)
    if isinstance(flag, bool):
        return flag
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError
        | asyncpg.CannotConnectNowError
        | aiohttp.ClientError,
    )


async def retry_transient(
    work: Callable[[], Awaitable[T]], what: str, *, retry_for_s: float = RETRY_FOR_S
) -> T:
    """``await work()``, again while it raises a transient error (:func:`is_transient`).

    Args:
        work: does the work once (called again from the start on each try, so it must be
            safe to repeat: a transaction, a claim, a queue row per report).
        what: names the work in the log lines of the retries.
        retry_for_s: the horizon of the retries, seconds from the first try.

    Returns:
        What ``work`` returned.

    Raises:
        Exception: a non-transient error of ``work`` at once, a transient one once the
            horizon has passed; ``asyncio.CancelledError`` at once.
    """

    def _waiting(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "%s: %s: %s; trying again (try %d)",
            what,
            type(exc).__name__,
            exc,
            state.attempt_number + 1,
        )

    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_delay(retry_for_s),
        wait=wait_exponential(multiplier=FIRST_WAIT_S, min=FIRST_WAIT_S, max=LAST_WAIT_S),
        before_sleep=_waiting,
        reraise=True,
    ):
        with attempt:
            return await work()
    raise AssertionError("unreachable: tenacity re-raises the last error")


async def handle_until_done(
    handle: Callable[[], Awaitable[T]], what: str, *, retry_for_s: float = RETRY_FOR_S
) -> T | None:
    """:func:`retry_transient` for one message of an agent: its result, or None after
    logging the error that still failed (the agent goes on with the next message; the
    message's offset is not acknowledged while it is tried again, so a worker stopping in
    the middle leaves it to the partition's next owner)."""
    try:
        return await retry_transient(handle, what, retry_for_s=retry_for_s)
    except Exception:
        log.exception("%s: failed; the message is dropped", what)
    return None
