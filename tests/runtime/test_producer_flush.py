"""The producer flush waits until faust's buffer is empty, however slow each hand-over is."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from stream_app import runtime
from stream_app.runtime.producer_flush import flush_all
from stream_app.settings import load_settings


@dataclass
class SlowBuffer:
    """A buffer whose background sender hands over one record every ``delay_s`` seconds
    (faust's own flush returned after 0.1 s without a hand-over)."""

    size: int
    delay_s: float
    state: str = "running"
    message_sent: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0

    async def sender(self) -> None:
        while self.size:
            await self.hand_over()
            self.sent += 1
            self.message_sent.set()

    async def hand_over(self) -> None:
        """One record leaves the queue, ``delay_s`` seconds from now."""
        await asyncio.sleep(self.delay_s)
        self.size -= 1


async def test_flush_returns_only_when_every_record_is_handed_over() -> None:
    buffer = SlowBuffer(size=3, delay_s=0.25)
    task = asyncio.create_task(buffer.sender())
    await flush_all(buffer)
    assert (buffer.size, buffer.sent) == (0, 3)
    await task


async def test_an_empty_buffer_flushes_at_once() -> None:
    buffer = SlowBuffer(size=0, delay_s=10.0)
    await asyncio.wait_for(flush_all(buffer), timeout=1.0)
    assert buffer.sent == 0


async def test_a_stopped_producer_with_records_left_is_an_error() -> None:
    buffer = SlowBuffer(size=2, delay_s=10.0, state="stopping")
    with pytest.raises(RuntimeError, match="Producer not Running"):
        await flush_all(buffer)


async def test_the_worker_installs_it_on_faust_producer_buffer() -> None:
    from faust.transport.producer import ProducerBuffer

    runtime.install(load_settings())  # as a worker does when it starts

    buffer = SlowBuffer(size=2, delay_s=0.25)  # faust's flush would return with 2 left
    task = asyncio.create_task(buffer.sender())
    await ProducerBuffer.flush(buffer)  # type: ignore[arg-type]
    assert (buffer.size, buffer.sent) == (0, 2)
    await task


@dataclass
class HandOverBuffer(SlowBuffer):
    """faust's real order: a record leaves the queue first, then aiokafka takes ``delay_s``
    to accept it (its accumulator is full). The queue is empty during the hand-over."""

    _wedding_in_flight: int = 0

    async def hand_over(self) -> None:
        self.size -= 1
        self._wedding_in_flight += 1
        await asyncio.sleep(self.delay_s)
        self._wedding_in_flight -= 1


async def test_flush_waits_for_the_record_in_the_hand_over() -> None:
    buffer = HandOverBuffer(size=1, delay_s=0.3)
    task = asyncio.create_task(buffer.sender())
    await asyncio.sleep(0.05)  # the record is off the queue, not yet accepted
    assert (buffer.size, buffer._wedding_in_flight) == (0, 1)
    await flush_all(buffer)
    assert buffer.sent == 1
    await task


async def test_the_installed_hand_over_is_counted_while_it_awaits() -> None:
    from types import SimpleNamespace

    from faust.transport.producer import ProducerBuffer

    runtime.install(load_settings())  # installs the counting hand-over

    accepted = asyncio.Event()
    seen: list[int] = []

    class Channel:
        async def publish_message(self, fut: object, wait: bool) -> None:
            await accepted.wait()

    buffer = SimpleNamespace(message_sent=asyncio.Event())
    fut = SimpleNamespace(message=SimpleNamespace(channel=Channel()))
    send = asyncio.create_task(ProducerBuffer._send_pending(buffer, fut))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    seen.append(buffer._wedding_in_flight)
    accepted.set()
    await send
    seen.append(buffer._wedding_in_flight)
    assert seen == [1, 0]
    assert buffer.message_sent.is_set()
