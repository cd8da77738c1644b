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

:func:`install` replaces it with a flush that waits until the buffer is empty (it still
refuses, like faust, to flush a producer that is no longer running), and logs every
``WARN_AFTER_S`` seconds while it waits.

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


async def flush_all(buffer: Any) -> None:
    """Wait until ``buffer`` (a faust ``ProducerBuffer``) holds no record.

    Raises:
        RuntimeError: the producer stopped while records were still buffered (as faust).
    """
    started = last_warning = time.monotonic()
    while buffer.size:
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
                    buffer.size,
                )


def install() -> None:
    """Make ``ProducerBuffer.flush`` wait until the buffer is empty (see the module docstring)."""

    async def flush(self: Any) -> None:
        await flush_all(self)

    ProducerBuffer.flush = flush  # type: ignore[method-assign]
