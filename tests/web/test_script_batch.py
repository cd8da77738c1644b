"""One Redis Lua script called by many coroutines at once, in a real Redis (the session's):
the calls of one event-loop turn go in one pipeline, each caller gets its own answer, a
script Redis forgot is loaded again, and a failure reaches exactly the callers it hit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import pytest
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from stream_app.devservices.manager import ServiceSettings
from stream_app.web.script_batch import MAX_BATCH, ScriptBatcher

ECHO = """
if ARGV[1] == 'fail' then
  return redis.error_reply('asked to fail')
end
redis.call('rpush', KEYS[1], ARGV[1])
return KEYS[1] .. '=' .. ARGV[1]
"""
"""Appends its argument to its key's list and answers ``key=argument``; ``fail`` fails."""


async def lrange(client: aredis.Redis, key: str) -> list[str]:
    """A whole list (redis-py types ``lrange`` for its sync and async clients at once)."""
    return [str(v) for v in await cast(Awaitable[list[Any]], client.lrange(key, 0, -1))]


@pytest.fixture
async def client(services: ServiceSettings) -> AsyncIterator[aredis.Redis]:
    found = aredis.Redis.from_url(services.redis_url, decode_responses=True)
    await found.delete(*[f"batch-test:{k}" for k in range(3)])
    yield found
    await found.delete(*[f"batch-test:{k}" for k in range(3)])
    await found.aclose()


async def test_the_calls_of_one_turn_go_in_one_pipeline_each_answered_its_own(
    client: aredis.Redis,
) -> None:
    batcher = ScriptBatcher(client, ECHO)
    answers = await asyncio.gather(
        *(batcher.call([f"batch-test:{i % 3}"], [str(i)]) for i in range(100))
    )
    assert answers == [f"batch-test:{i % 3}={i}" for i in range(100)]
    # the first pipeline met NOSCRIPT (never loaded) and was sent again after the load
    assert batcher.pipelines == 2
    # each call ran once, in order within its key
    for k in range(3):
        assert await lrange(client, f"batch-test:{k}") == [str(i) for i in range(100) if i % 3 == k]
    # loaded now: one pipeline for the next turn's calls, more than MAX_BATCH split
    before = batcher.pipelines
    count = MAX_BATCH * 2 + 1
    answers = await asyncio.gather(*(batcher.call(["batch-test:0"], ["x"]) for _ in range(count)))
    assert answers == ["batch-test:0=x"] * count
    assert batcher.pipelines - before == 3


async def test_a_script_redis_forgot_is_loaded_again(client: aredis.Redis) -> None:
    batcher = ScriptBatcher(client, ECHO)
    assert await batcher.call(["batch-test:1"], ["a"]) == "batch-test:1=a"
    await client.script_flush()  # as a Redis restart does
    assert await batcher.call(["batch-test:1"], ["b"]) == "batch-test:1=b"
    assert await lrange(client, "batch-test:1") == ["a", "b"]


async def test_one_failing_call_fails_its_caller_only(client: aredis.Redis) -> None:
    batcher = ScriptBatcher(client, ECHO)
    await batcher.call(["batch-test:2"], ["load"])
    results = await asyncio.gather(
        batcher.call(["batch-test:2"], ["one"]),
        batcher.call(["batch-test:2"], ["fail"]),
        batcher.call(["batch-test:2"], ["two"]),
        return_exceptions=True,
    )
    assert results[0] == "batch-test:2=one" and results[2] == "batch-test:2=two"
    assert isinstance(results[1], ResponseError) and "asked to fail" in str(results[1])


async def test_a_store_that_is_away_fails_every_caller_of_the_pipeline() -> None:
    away = aredis.Redis.from_url("redis://127.0.0.1:9/0")  # discard port: nothing listens
    try:
        batcher = ScriptBatcher(away, ECHO)
        results = await asyncio.gather(
            *(batcher.call(["k"], [str(i)]) for i in range(5)), return_exceptions=True
        )
    finally:
        await away.aclose()
    assert [type(r) for r in results] == [RedisConnectionError] * 5
