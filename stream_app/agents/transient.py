"""Handle one message until it is done, through a passing outage of PostgreSQL or Kafka.

The report and delivery agents handle one message at a time and must not die on a bad one
(a dead agent stops every message after it), so they log an error and go on. That was also
what happened to a message whose handling met a PostgreSQL restart: the message was
acknowledged and dropped, and only a recovery sweep minutes later noticed (a report waiting
in its lane 120 s for the sweep; a scheduled report finished but never delivered: a CI soak
run failed on that). :func:`handle_until_done` tries such a message again while the cause is
transient (:func:`stream_app.reports.errors.is_retriable`: lost connections, a server shutting
down or starting up, a retriable Kafka error), waiting 0.2 s doubling to 5 s between tries,
for at most :data:`RETRY_FOR_S`; the message's offset is not acknowledged meanwhile, so a
worker stopping in the middle leaves it to the next owner of the partition. Other errors,
and a cause that outlasts the horizon, are logged and the agent goes on (the recovery sweeps
remain the backstop).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from stream_app.reports.errors import is_retriable

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_FOR_S = 300.0
"""Seconds a message is tried again while its cause is transient (a PostgreSQL restart takes
a few seconds, a broker restart 5-15 s in the soak); then it is logged and dropped."""
FIRST_WAIT_S = 0.2
"""The first pause between two tries; it doubles up to :data:`LAST_WAIT_S`."""
LAST_WAIT_S = 5.0
"""The longest pause between two tries."""


async def handle_until_done(
    handle: Callable[[], Awaitable[T]], what: str, *, retry_for_s: float = RETRY_FOR_S
) -> T | None:
    """``await handle()``, again while it raises a transient error; its result, or None.

    Args:
        handle: handles the message once (called again from the start on each try, so it
            must be safe to repeat: a claim in PostgreSQL, a queue row per report).
        what: names the message in the log (``"report lane high: offset 12"``).
        retry_for_s: the horizon of the retries (seconds, :data:`RETRY_FOR_S`).

    Returns None after logging when ``handle`` raised a non-transient error or a transient
    one for longer than ``retry_for_s``. ``asyncio.CancelledError`` (the worker stopping) is
    raised at once.
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

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_retriable),
            stop=stop_after_delay(retry_for_s),
            wait=wait_exponential(multiplier=FIRST_WAIT_S, min=FIRST_WAIT_S, max=LAST_WAIT_S),
            before_sleep=_waiting,
            reraise=True,
        ):
            with attempt:
                return await handle()
    except Exception:
        log.exception("%s: failed; the message is dropped", what)
    return None
