"""Unreachable backing services as a machine-readable 503 with ``Retry-After``.

Part of the HTTP layer: the error middleware (:func:`stream_app.web.views.json_errors`) asks
:func:`dependency_of` which service a failure says is unreachable, and answers
:class:`DependencyUnavailableError`'s response::

    503  Retry-After: 5
    {"error": {"code": "dependency_unavailable", "dependency": "postgresql",
               "reason": "...", "field": null, "retry_after_s": 5}}

What counts as "unreachable" (and never as a bug, which stays a JSON 500):

- ``postgresql``: asyncpg's connection errors (SQLSTATE class 08), the server shutting down,
  starting up or crashed (``57P01``..``57P03``), too many connections (``53300``), a connection
  closed under a query, a refused or timed-out connect (an ``OSError`` raised inside asyncpg or
  :mod:`stream_app.db`);
- ``kafka``: aiokafka's retriable errors (no broker, no leader, request timed out, ...) and a
  send not acknowledged within :data:`KAFKA_TIMEOUT_S` (:func:`kafka_call`);
- ``redis``: an ``OSError`` raised inside the redis client (the shared rate-limit store
  normally fails open on its own, see :mod:`stream_app.web.ratelimit`).

A route that needs none of them keeps answering (``/metrics``; a table read whose token
check is cached); every route that needs one answers this 503 while it is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import Literal, TypeVar

import asyncpg
from aiohttp import web
from aiokafka import errors as kafka_errors

from stream_app.web.errors import ApiError
from stream_app.web.responses import json_response

Dependency = Literal["postgresql", "kafka", "redis"]

RETRY_AFTER_S = 5
"""Seconds a client is told to wait before retrying (``Retry-After``): about one reconnect
attempt of the pools and producers, short enough for a restart to go unnoticed."""

KAFKA_TIMEOUT_S = 10.0
"""Longest wait of an HTTP request for Kafka's acknowledgement of a message it publishes
(faust's producer would otherwise keep retrying for minutes while the broker is away)."""

_POSTGRES_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # "connection is closed", "connection was closed in the middle"
)
_KAFKA_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.RequestTimedOutError,
    kafka_errors.LeaderNotAvailableError,
    kafka_errors.NotLeaderForPartitionError,
)
_MODULE_PREFIXES: tuple[tuple[str, Dependency], ...] = (
    ("asyncpg", "postgresql"),
    ("stream_app.db", "postgresql"),
    ("aiokafka", "kafka"),
    ("faust", "kafka"),
    ("redis", "redis"),
    ("limits", "redis"),
)


class DependencyUnavailableError(ApiError):
    """503 ``dependency_unavailable``: ``dependency`` cannot be reached; retry after
    :data:`RETRY_AFTER_S` seconds.

    Attributes:
        dependency: ``postgresql``, ``kafka`` or ``redis``.
    """

    retriable = True

    def __init__(self, dependency: Dependency, reason: str | None = None) -> None:
        super().__init__(
            503,
            "dependency_unavailable",
            reason or f"{dependency} cannot be reached; retry in {RETRY_AFTER_S} s",
        )
        self.dependency: Dependency = dependency

    def response(self) -> web.Response:
        """The JSON 503 (module docstring) with its ``Retry-After`` header."""
        body = {
            "code": self.code,
            "dependency": self.dependency,
            "reason": self.reason,
            "field": None,
            "retry_after_s": RETRY_AFTER_S,
        }
        return json_response(
            {"error": body}, status=503, headers={"Retry-After": str(RETRY_AFTER_S)}
        )


def dependency_of(exc: BaseException) -> Dependency | None:
    """The backing service ``exc`` says is unreachable, or None (not an outage, or of no
    service known here).

    Typed errors decide first (module docstring); an ``OSError`` (``ConnectionRefusedError``,
    ``TimeoutError``, ...) is attributed to the client library whose code raised it: the
    innermost frame of its traceback that belongs to asyncpg or :mod:`stream_app.db`,
    aiokafka or faust, redis or limits. The exceptions it was raised from are looked at too.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DependencyUnavailableError):
            return current.dependency
        if isinstance(current, _POSTGRES_ERRORS):
            return "postgresql"
        if isinstance(current, _KAFKA_ERRORS) or (
            isinstance(current, kafka_errors.KafkaError) and current.retriable
        ):
            return "kafka"
        if isinstance(current, OSError):
            found = _raised_in(current.__traceback__)
            if found is not None:
                return found
        current = current.__cause__ or current.__context__
    return None


def client_went_away(exc: BaseException) -> bool:
    """Whether ``exc`` is this worker's answer failing because its client closed the
    connection (a ``HEAD`` whose body is not sent, an aborted download): a
    ``ConnectionResetError`` raised in aiohttp's server-side writing, not in its client (the
    worker-to-worker reads) nor in another service's library. Not an outage of anything."""
    if not isinstance(exc, ConnectionResetError):
        return False
    tb = exc.__traceback__
    innermost = ""
    while tb is not None:
        innermost = str(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    return innermost.startswith("aiohttp.") and not innermost.startswith("aiohttp.client")


def _raised_in(tb: TracebackType | None) -> Dependency | None:
    """The service whose client library holds the innermost known frame of ``tb``."""
    modules: list[str] = []
    while tb is not None:
        modules.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    for name in reversed(modules):
        for prefix, dependency in _MODULE_PREFIXES:
            if name == prefix or name.startswith(prefix + "."):
                return dependency
    return None


T = TypeVar("T")


async def kafka_call(aw: Awaitable[T], what: str) -> T:
    """Await ``aw`` (a publish to Kafka and its acknowledgement) for at most
    :data:`KAFKA_TIMEOUT_S` seconds.

    Args:
        aw: the awaitable; it is cancelled on timeout (a message already handed to the
            producer may still be delivered later).
        what: what is being published, for the reason (``"the report request"``).

    Raises:
        DependencyUnavailableError: ``kafka``, on timeout or a Kafka error.
    """
    try:
        return await asyncio.wait_for(aw, KAFKA_TIMEOUT_S)
    except TimeoutError:
        raise DependencyUnavailableError(
            "kafka",
            f"kafka did not acknowledge {what} within {KAFKA_TIMEOUT_S:g} s; retry in "
            f"{RETRY_AFTER_S} s",
        ) from None
    except kafka_errors.KafkaError as exc:
        raise DependencyUnavailableError(
            "kafka", f"kafka refused {what} ({exc}); retry in {RETRY_AFTER_S} s"
        ) from None
