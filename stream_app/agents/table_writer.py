"""Writes a fold batch's rows into a faust table: RocksDB at once, the changelog in bulk.

faust-streaming writes a table row (``table[key] = value``) to RocksDB and queues its
changelog record in the producer's ``ProducerBuffer``, one ``FutureMessage``, one callback
and one trip through a background task per row. Measured with py-spy on the 1,000,000-event
benchmark, that per-row path was most of the ~1.3 ms each booking cost (a booking changes up
to 7 rows). It also has a race: the buffer's task takes a record off the queue *before*
aiokafka accepts it, so a commit whose flush sees an empty buffer can still precede that
record (see :mod:`stream_app.producer_flush`).

:class:`TableWriter` writes the same bytes faust would, by the table's own serializers, but
per batch: every row of a partition goes into one RocksDB ``WriteBatch``, and its changelog
records into aiokafka record batches (``create_batch``/``send_batch``) sent to the table's
changelog partition, the partition of the source events (co-partitioning, as faust does).
:meth:`TableWriter.flush` awaits the broker's acknowledgement of every record and then stores
the last changelog offset as the partition's *persisted offset* (what faust's
``_on_changelog_sent`` does per record), so a clean restart replays only later records.

Exactly-once argument: faust acknowledges the events of a ``take_events`` batch only when the
agent asks for the next batch, and commits only acknowledged offsets. The agents await
:meth:`flush` inside the batch, so no offset is committed before the changelog holds every
row its events changed. Local RocksDB may run ahead of the changelog (written first); after a
crash :mod:`stream_app.statedir` drops it and faust restores from the changelog, and the
uncommitted events are folded again.

Pinned to faust-streaming 0.15's RocksDB store (``_db_for_partition``, ``_key_index``,
``_encode_key``/``_encode_value``, ``set_persisted_offset``) and aiokafka 0.14's batch API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import rocksdict
from faust.types import TP

from stream_app.agents.bulk_send import Record, send_records


class TableWriter:
    """Buffered writes of one faust RocksDB table.

    Args:
        table: a faust ``Table`` with a RocksDB store and a changelog topic.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self._pending: dict[int, list[Record]] = {}

    def write(self, partition: int, rows: Iterable[tuple[Any, Any]]) -> int:
        """Write ``rows`` (``(key, value)`` as the table stores them) to ``partition``'s
        RocksDB at once, in one write batch, and queue their changelog records for
        :meth:`flush`. A value of ``None`` deletes the row: a RocksDB delete and a changelog
        record with a null value (a tombstone, which compaction keeps as the key's last word
        and then removes; faust's restore deletes the key on it). Synchronous: nothing awaits,
        so it can run between an ownership check and the end of a batch. Returns the number
        of rows written or deleted.

        Raises:
            TypeError: a key or value the table's serializers cannot encode.
        """
        store = self.table.data
        batch = rocksdict.WriteBatch(raw_mode=True)
        index = store._key_index
        queued = self._pending.setdefault(partition, [])
        n = 0
        for key, value in rows:
            kb: bytes = store._encode_key(key)
            if value is None:
                batch.delete(kb)
                index.pop(kb, None)
                queued.append((kb, None))
                n += 1
                continue
            vb: bytes = store._encode_value(value)
            batch.put(kb, vb)
            index[kb] = partition
            queued.append((kb, vb))
            n += 1
        if n:
            store._db_for_partition(partition).write(batch)
        return n

    def reader(self, partition: int) -> Callable[[str], Any]:
        """A lookup of ``partition``'s rows: key → the stored JSON value, ``None`` when absent.

        Reads RocksDB directly (the table's key encoding, orjson for the value) instead of
        through faust's five-layer mapping; it sees every :meth:`write` at once.
        """
        store = self.table.data
        db = store._db_for_partition(partition)
        encode = store._encode_key

        def get(key: str) -> Any:
            raw = db.get(encode(key))
            return None if raw is None else orjson.loads(raw)

        return get

    @property
    def pending(self) -> int:
        """Changelog records queued and not yet flushed."""
        return sum(len(v) for v in self._pending.values())

    async def flush(self, producer: Any) -> None:
        """Send every queued changelog record and wait for the broker to acknowledge them.

        ``producer`` is the worker's faust producer (``app.producer``); records go out in
        aiokafka record batches, in write order per partition. After the acknowledgements,
        each partition's persisted offset is its last changelog offset.

        Raises:
            aiokafka.errors.KafkaError: a batch was not delivered (the events stay
                unacknowledged; the worker's error handling applies).
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        topic: str = self.table.changelog_topic.get_topic_name()
        sent = await send_records(producer._ensure_producer(), topic, pending)
        metas = await asyncio.gather(*(fut for _, _, fut in sent))
        last: dict[int, int] = {}
        for (partition, count, _), meta in zip(sent, metas, strict=True):
            last[partition] = max(last.get(partition, -1), meta.offset + count - 1)
        store = self.table.data
        for partition, offset in last.items():
            store.set_persisted_offset(TP(topic, partition), offset)
