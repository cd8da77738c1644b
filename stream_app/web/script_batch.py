"""Calls of one Redis Lua script from concurrent requests, sent together: one pipeline a turn
of the event loop.

Part of the HTTP layer (the rate-limit check, :mod:`stream_app.web.ratelimit`); touches only
Redis. A redis-py call costs the worker far more than Redis spends on it: 150-190 µs of CPU
for one ``EVALSHA`` round trip here against 35 µs a call when ten go in one pipeline and 28 µs
at twenty-five (2026-12-07, a local Redis, ``python -m loadtests.bench_ratelimit``). Under
load many requests reach their rate-limit check in the same turn of the event loop, so
:class:`ScriptBatcher` collects the calls made during a turn and sends them at its end as one
pipeline (``transaction=False``: each script is atomic on its own; the calls are independent);
a call made while a pipeline is in flight goes in the next one. A lone call waits for nothing
but the end of its own turn. Nothing is retried: a failure of the pipeline (the store away) is
raised to each of its callers.

Redis forgets loaded scripts when it restarts: a call answered ``NOSCRIPT`` loads the script
and is sent again once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import NoScriptError

MAX_BATCH = 256
"""The most calls one pipeline carries (the rest go in the next)."""


class ScriptBatcher:
    """Runs one Lua script for concurrent callers, a pipeline of their calls per loop turn.

    Args:
        client: a redis-py asyncio client (its pool gives each pipeline a connection).
        script: the Lua source.

    Each :meth:`call` returns what the script returned for its keys and arguments, in the
    order made; calls are independent (no transaction across them).
    """

    def __init__(self, client: aredis.Redis, script: str) -> None:
        self._client = client
        self._script = client.register_script(script)
        self._pending: list[tuple[Sequence[str], Sequence[Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.pipelines = 0
        """Pipelines sent so far (for tests and benchmarks: calls ÷ pipelines is the batch)."""

    async def call(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script's answer for ``keys`` and ``args``.

        Raises:
            redis.exceptions.RedisError, OSError: the pipeline carrying this call failed.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_BATCH):
            task = asyncio.get_running_loop().create_task(
                self._send(pending[start : start + MAX_BATCH])
            )
            self._tasks.add(task)  # a reference until it ends (asyncio keeps weak ones)
            task.add_done_callback(self._tasks.discard)

    async def _send(
        self, calls: list[tuple[Sequence[str], Sequence[Any], asyncio.Future[Any]]]
    ) -> None:
        try:
            answers = await self._pipeline(calls)
            missing = [i for i, a in enumerate(answers) if isinstance(a, NoScriptError)]
            if missing:  # Redis restarted since the script was loaded: load it, send again
                await self._client.script_load(self._script.script)
                again = await self._pipeline([calls[i] for i in missing])
                for i, answer in zip(missing, again, strict=True):
                    answers[i] = answer
        except Exception as exc:  # noqa: BLE001 - the store away: every caller hears it
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop shutting down): so are its callers
            for _, _, future in calls:
                future.cancel()
            raise
        for (_, _, future), answer in zip(calls, answers, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    async def _pipeline(
        self, calls: Sequence[tuple[Sequence[str], Sequence[Any], asyncio.Future[Any]]]
    ) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for keys, args, _ in calls:
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
        self.pipelines += 1
        return list(await pipe.execute(raise_on_error=False))
