"""faust's Kafka consumer on the worker's own event loop instead of a thread of its own.

faust-streaming 0.15 runs its aiokafka consumer in a ``ServiceThread`` with a second event
loop (``AIOKafkaConsumerThread``); every ``getmany``, commit and seek is a call sent to that
thread's method queue and answered through ``call_soon_threadsafe``, and the two threads share
one GIL. Traced per batch at 1,000 events/s (one worker, ``loadtests.bench_latency``), the
median event waited 8 ms from its produce time until its fetch response was parsed (the
consumer thread waiting for the GIL while the agents fold), 4 ms more in aiokafka's buffer
until the next ``getmany`` reached the thread, and 3.6 ms for the answer to come back to the
agents' loop: 16 ms of the 29 ms median from produce to announced update, where a bare
aiokafka consumer on one loop needs 7 ms from produce to an acknowledged reply.

:class:`InLoopConsumerThread` keeps faust's ``AIOKafkaConsumerThread`` (its consumer
settings, rebalance listener, commit, seek and fetch code) and only runs it on the loop of
its parent: :meth:`~InLoopConsumerThread.start` starts it as a plain service,
:meth:`~InLoopConsumerThread.call_thread` awaits the call itself, and
:meth:`~InLoopConsumerThread.stop` runs the thread's shutdown sequence in place. Rebalance
callbacks still go through faust's consumer method queue, as before (now on the same loop).

Pinned to faust-streaming 0.15 (``AIOKafkaConsumerThread``, ``ConsumerThread``) and
mode-streaming 0.7 (``ServiceThread``: ``_thread_started``, ``_shutdown_thread``;
``Service._default_start``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from mode import Service
from mode.utils.futures import maybe_async


class InLoopConsumerThread(AIOKafkaConsumerThread):
    """faust's aiokafka consumer thread, run on its parent's event loop (module docstring).

    Args:
        consumer: the faust consumer it serves (``BatchConsumer``).
        loop: the worker's event loop (faust passes its own).
    """

    def __init__(self, consumer: Any, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(consumer, loop=loop, thread_loop=loop, **kwargs)

    async def start(self) -> None:
        """Start the aiokafka consumer on this loop (no thread, no method queue)."""
        self._thread_started.set()
        await Service._default_start(self)

    async def call_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fun(*args, **kwargs)`` here, awaiting its result when it is awaitable (faust
        sends the call to the thread's method queue, which does the same there)."""
        return await maybe_async(fun(*args, **kwargs))

    async def cast_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``fun(*args, **kwargs)`` on this loop without waiting for it (a future of this
        service: cancelled when it stops)."""
        self.add_future(maybe_async(fun(*args, **kwargs)))

    async def stop(self) -> None:
        """Stop the aiokafka consumer (leaving its group) and this service's tasks."""
        if not self._started.is_set() or self._stopped.is_set():
            return
        self._stopped.set()
        await self.on_stop()
        await self._shutdown_thread()
        await self.on_shutdown()
