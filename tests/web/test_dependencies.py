"""Which service a real failure names, and the 503 the error middleware answers for it.

The failures are real: asyncpg and aiokafka clients connecting to a loopback port nothing
listens on (a port bound and closed here), not hand-made exception objects.
"""

from __future__ import annotations

import asyncio
import socket

import asyncpg
import orjson
import pytest
from aiohttp import web
from aiohttp.http_writer import StreamWriter
from aiohttp.test_utils import make_mocked_request
from aiokafka import AIOKafkaProducer

from stream_app.db.pool import get_pool
from stream_app.settings import Settings
from stream_app.web.dependencies import (
    RETRY_AFTER_S,
    DependencyUnavailableError,
    client_went_away,
    dependency_of,
    kafka_call,
)
from stream_app.web.views import _json_errors


def closed_port() -> int:
    """A loopback port that was free a moment ago and has no listener now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def postgres_failure() -> BaseException:
    """What the worker's pool raises when PostgreSQL is down (refused connect)."""
    try:
        await get_pool(f"postgresql://wedding_app@127.0.0.1:{closed_port()}/wedding")
    except BaseException as exc:  # noqa: BLE001 - the failure is the value under test
        return exc
    raise AssertionError("connected to a closed port")


async def kafka_failure() -> BaseException:
    producer = AIOKafkaProducer(
        bootstrap_servers=f"127.0.0.1:{closed_port()}", request_timeout_ms=2000
    )
    try:
        await producer.start()
    except BaseException as exc:  # noqa: BLE001
        return exc
    finally:
        await producer.stop()
    raise AssertionError("started against a closed port")


async def _raise(exc: BaseException) -> web.StreamResponse:
    raise exc


async def answer(exc: BaseException) -> tuple[web.Response, dict[str, object]]:
    request = make_mocked_request("POST", "/orgs/a/reports")
    resp = await _json_errors(request, lambda _: _raise(exc))
    assert isinstance(resp, web.Response) and isinstance(resp.body, bytes)
    return resp, orjson.loads(resp.body)["error"]


async def test_a_refused_postgresql_connection_is_a_postgresql_503() -> None:
    exc = await postgres_failure()
    assert isinstance(exc, OSError)  # ConnectionRefusedError, raised inside asyncpg
    assert dependency_of(exc) == "postgresql"
    resp, error = await answer(exc)
    assert resp.status == 503 and resp.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert error == {
        "code": "dependency_unavailable",
        "dependency": "postgresql",
        "reason": f"postgresql cannot be reached; retry in {RETRY_AFTER_S} s",
        "field": None,
        "retry_after_s": RETRY_AFTER_S,
    }


async def test_an_unreachable_kafka_is_a_kafka_503() -> None:
    exc = await kafka_failure()
    assert dependency_of(exc) == "kafka"
    resp, error = await answer(exc)
    assert resp.status == 503 and resp.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert (error["code"], error["dependency"]) == ("dependency_unavailable", "kafka")


async def test_postgresql_shutdown_errors_and_chained_causes() -> None:
    assert dependency_of(asyncpg.AdminShutdownError("terminating connection")) == "postgresql"
    assert dependency_of(asyncpg.CannotConnectNowError("starting up")) == "postgresql"
    wrapped = RuntimeError("report failed")
    wrapped.__cause__ = await postgres_failure()
    assert dependency_of(wrapped) == "postgresql"


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("a bug"),
        asyncpg.UniqueViolationError("duplicate key"),  # PostgreSQL answered: not an outage
        ValueError("bad"),
        ConnectionRefusedError(111, "refused"),  # no traceback: raised by no known client
    ],
)
def test_failures_that_name_no_service(exc: BaseException) -> None:
    assert dependency_of(exc) is None


async def test_kafka_call_bounds_the_wait_and_names_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from stream_app.web import dependencies

    monkeypatch.setattr(dependencies, "KAFKA_TIMEOUT_S", 0.2)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with pytest.raises(DependencyUnavailableError) as caught:
        await kafka_call(never, "the report request")
    assert caught.value.dependency == "kafka"
    assert "did not acknowledge the report request within 0.2 s" in caught.value.reason
    assert never.cancelled()
    assert await kafka_call(asyncio.sleep(0, result=7), "x") == 7


class _Closing:
    """A protocol whose transport is closing, as aiohttp's is once the client has gone."""

    class transport:  # the attribute aiohttp reads
        @staticmethod
        def is_closing() -> bool:
            return True


async def test_a_client_gone_while_answering_is_no_outage() -> None:
    """aiohttp's server writer raising on a closing transport (a HEAD, an aborted download):
    the client went away; not Kafka's outage, though faust frames may be on the stack."""
    writer = StreamWriter(_Closing(), asyncio.get_running_loop())  # type: ignore[arg-type]
    with pytest.raises(ConnectionResetError) as gone:
        await writer.write(b"x")
    assert client_went_away(gone.value)
    # the same class raised elsewhere (another service's socket) is not the client going away
    assert not client_went_away(ConnectionResetError("reset by peer"))
    try:
        raise ConnectionResetError("peer")
    except ConnectionResetError as exc:
        assert not client_went_away(exc)


async def test_a_statement_past_its_timeout_is_a_retriable_503(settings: Settings) -> None:
    """A 10-year validation on a cold cache ran into the statement timeout and was answered
    500 ``internal_error`` (an attacker round): it is a 503 ``query_timeout``, retriable."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await conn.execute("SET statement_timeout = 50")
        try:
            await conn.execute("SELECT pg_sleep(2)")
        except asyncpg.QueryCanceledError as exc:
            timed_out: BaseException = exc
        else:
            raise AssertionError("pg_sleep(2) ran past a 50 ms statement timeout")
    finally:
        await conn.close()
    resp, error = await answer(timed_out)
    assert resp.status == 503 and resp.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert error == {
        "code": "query_timeout",
        "reason": "a database statement ran past its time limit; retry later",
        "field": None,
    }
