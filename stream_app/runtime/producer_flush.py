"""A producer flush that empties faust's buffer of table changelog records before a commit.

faust-streaming writes a table row to RocksDB at once and queues its changelog record in the
producer's ``ProducerBuffer``; a background task hands the records to aiokafka one by one.
Before it commits the consumer's offsets, faust calls ``producer.flush()``, which is meant to
empty that buffer and then wait for aiokafka's acknowledgements, so that no offset is
committed before the changelog holds what the events changed.

In faust-streaming 0.15, ``ProducerBuffer.flush()`` (``flush_atmost(None)``) waits at most
0.1 s for each record to be handed over and *returns* when one takes longer, with records
still in the buffer. Under load (a busy event loop, aiokafka's accumulator full) that
happens, the offsets are committed anyway, and a worker killed at that moment loses the rows
of events whose offsets are already committed: the recovery test
(``tests/e2e/test_exactly_once.py``) then found month roll-ups two bookings below the sum of
their days after a SIGKILL.

:func:`install` (applied by :func:`stream_app.runtime.install` when a worker starts) replaces
it with a flush that waits until the buffer is empty (it still refuses, like faust, to flush
a producer that is no longer running), and logs every
``WARN_AFTER_S`` seconds while it waits. The buffer's task takes a record off the queue
*before* aiokafka accepts it (``publish_message`` can await, for instance while aiokafka's
accumulator is full), so an empty queue is not enough: the record in that hand-over is
counted too (:func:`in_flight`), and the flush waits for it.

The fold agents no longer write their tables through this buffer
(:mod:`stream_app.runtime.state`); other tables (the report cache) still do.

Pinned to faust-streaming 0.15 (``faust.transport.producer.ProducerBuffer``: ``size``,
``message_sent``, ``state``, ``flush``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from faust.transport.producer import ProducerBuffer

log = logging.getLogger(__name__)

WARN_AFTER_S = 10.0
"""Seconds between the warnings of a flush still waiting for the buffer to empty."""

POLL_S = 0.1
"""Seconds between two checks of the buffer's size while it does not move."""


def in_flight(buffer: Any) -> int:
    """Records ``buffer`` took off its queue and aiokafka has not accepted yet (0 or 1)."""
    return int(getattr(buffer, "_wedding_in_flight", 0))


async def flush_all(buffer: Any) -> None:
    """Wait until ``buffer`` (a faust ``ProducerBuffer``) holds no record, queued or in the
    hand-over to aiokafka.

    Raises:
        RuntimeError: the producer stopped while records were still buffered (as faust).
    """
    started = last_warning = time.monotonic()
    while buffer.size or in_flight(buffer):
        if buffer.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")
        buffer.message_sent.clear()
        try:
            await asyncio.wait_for(buffer.message_sent.wait(), timeout=POLL_S)
        except TimeoutError:
            now = time.monotonic()
            if now - last_warning >= WARN_AFTER_S:
                last_warning = now
                log.warning(
                    "producer flush waiting %.0f s for %d changelog records",
                    now - started,
                    buffer.size + in_flight(buffer),
                )


def install() -> None:
    """Make ``ProducerBuffer.flush`` wait until the buffer is empty (see the module docstring)."""
    if getattr(ProducerBuffer, "_wedding_installed", False):
        return
    send_pending = ProducerBuffer._send_pending

    async def flush(self: Any) -> None:
        await flush_all(self)

    async def counted_send_pending(self: Any, fut: Any) -> None:
        self._wedding_in_flight = in_flight(self) + 1
        try:
            await send_pending(self, fut)
        finally:
            self._wedding_in_flight -= 1
            self.message_sent.set()

    ProducerBuffer.flush = flush  # type: ignore[method-assign]
    ProducerBuffer._send_pending = counted_send_pending  # type: ignore[method-assign]
    ProducerBuffer._wedding_installed = True  # type: ignore[attr-defined]
