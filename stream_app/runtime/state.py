"""Write-behind table state: a batch's rows reach the changelog first, then local RocksDB.

Per batch, an agent folds in memory and hands :meth:`WriteBehindTable.commit` the rows it
changed, per partition. ``commit``:

1. sends one changelog record per changed row (aiokafka record batches,
   :func:`stream_app.runtime.bulk_send.send_records`) to the table's changelog partition (the
   partition of the source events: tables are co-partitioned with their input) and awaits the
   broker's acknowledgement of every one;
2. then writes the rows *and* the partition's changelog offset (faust's *persisted offset*,
   ``__faust\\0offset__``) in one RocksDB ``WriteBatch``: atomic on disk.

Only then does the agent acknowledge the batch's input offsets. So local state is never
ahead of its changelog: after a crash (SIGKILL, OOM kill, power loss) the local RocksDB is a
prefix of the changelog, faust replays only the changelog's tail after the persisted offset,
and the worker keeps its state instead of restoring every changelog from the start (Kafka
Streams' KIP-892 and Quix Streams' checkpoints make the same ordering:
``research/stream-core.md`` §3). The events of a batch whose changelog was only partly
acknowledged are read again (their offsets were not committed) and the rows that already hold
them skip them (each row keeps the input offset it has applied up to).

Rows are encoded as faust's table would (key: the table's JSON key serializer; value: JSON),
so faust's own reads, recovery and standby replicas work on them unchanged. Reads
(:meth:`WriteBehindTable.reader`) go to RocksDB directly.

Pinned to faust-streaming 0.15's RocksDB store (``_db_for_partition``, ``_key_index``,
``offset_key``) and aiokafka 0.14's batch API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import rocksdict

from stream_app.observability import CHANGELOG_INTERLEAVED
from stream_app.runtime import failpoints, gc_tuning, restore
from stream_app.runtime.bulk_send import Record, send_records

log = logging.getLogger(__name__)

Row = tuple[str, Any]
"""``(key, JSON value)`` of one row; a value of ``None`` deletes the row (a tombstone)."""


def encode_key(key: str) -> bytes:
    """The table key as faust's JSON key serializer writes it (``"key"``); keys are ASCII
    without quotes or backslashes (the id rule of :mod:`stream_app.schemas.ids`), so the
    JSON string is the key between double quotes.

    Raises:
        ValueError: a key outside that alphabet (it would be encoded differently by faust).
    """
    if not key.isascii() or '"' in key or "\\" in key or not key.isprintable():
        raise ValueError(f"table key {key!r} is not printable ASCII without quotes")
    return b'"' + key.encode() + b'"'


def partition_reader(table: Any, partition: int) -> Callable[[str], Any]:
    """A lookup of the rows of ``partition`` of the faust RocksDB ``table`` straight from its
    database: key → the stored JSON value, ``None`` when absent. What faust's ``Table.get``
    answers for a partition this worker holds, without its key codec, its search of the
    partitions' databases for the key and its value codec (faust's ``get`` was 6-9 % of a
    worker's samples under the HTTP load test, two thirds of the venue-metrics reads).
    """
    get = table.data._db_for_partition(partition).get

    def read(key: str) -> Any:
        # not checked as encode_key does (a key outside its alphabet is never written,
        # so reading one finds nothing): two string checks per read of the hot path
        raw = get(b'"' + key.encode() + b'"')
        return None if raw is None else orjson.loads(raw)

    return read


def producer_client(app: Any) -> Any:
    """The ``aiokafka.AIOKafkaProducer`` inside the worker's faust producer."""
    return app.producer._ensure_producer()


class WriteBehindTable:
    """Batched, write-behind writes of one faust RocksDB table (see the module docstring).

    Args:
        table: a faust ``Table`` with a RocksDB store and a changelog topic.
        expand: the local rows a changelog record stands for (None: the record itself), the
            same when a batch is written and when the table is restored
            (:data:`stream_app.runtime.restore.Expand`; e.g. the packed dedupe records).
    """

    def __init__(self, table: Any, expand: restore.Expand | None = None) -> None:
        self.table = table
        self.expand = expand
        # its rows carry "o": restored by highest offset; records stored as ``expand`` says
        restore.register(table.name, expand)

    def _db(self, partition: int) -> Any:
        return self.table.data._db_for_partition(partition)

    def reader(self, partition: int) -> Callable[[str], Any]:
        """A lookup of ``partition``'s rows: key → the stored JSON value, ``None`` when
        absent. Sees every :meth:`commit` that has returned."""
        return partition_reader(self.table, partition)

    def scan(self, partition: int) -> Any:
        """Every ``(key, JSON value)`` of ``partition`` (the persisted offset left out)."""
        offset_key = self.table.data.offset_key
        for kb, vb in self._db(partition).items():
            if kb == offset_key or not kb.startswith(b'"'):
                continue
            yield kb[1:-1].decode(), orjson.loads(vb)

    def scan_from(self, partition: int, start: str) -> Any:
        """``(key, JSON value)`` of ``partition`` in key order from ``start`` on."""
        it = self._db(partition).items(from_key=encode_key(start))
        for kb, vb in it:
            if not kb.startswith(b'"'):
                continue
            yield kb[1:-1].decode(), orjson.loads(vb)

    async def commit(self, producer: Any, rows: Mapping[int, Sequence[Row]]) -> int:
        """Write ``rows`` (per partition, in order) to the changelog, await the broker's
        acknowledgements, then write them and the new persisted offset to RocksDB in one
        write batch per partition (:meth:`send`, :meth:`acknowledged`, :meth:`write_local`).
        Returns the number of rows written.

        ``producer`` is the worker's ``aiokafka.AIOKafkaProducer`` (:func:`producer_client`).

        Raises:
            aiokafka.errors.KafkaError: a record was not acknowledged; nothing was written
                locally (the batch's input offsets stay unacknowledged).
        """
        sent = await self.send(producer, rows)
        return self.write_local(await self.acknowledged(sent))

    async def send(
        self,
        producer: Any,
        rows: Mapping[int, Sequence[Row]],
        local: Mapping[int, Sequence[Row]] | None = None,
    ) -> Sent:
        """Encode ``rows`` and hand their changelog records to the producer, in order (returns
        once they are queued, not acknowledged). Two calls queue in call order when the
        second starts after the first returned. ``local`` rows are written to RocksDB only,
        before ``rows``, by :meth:`write_local` (deletes of expired dedupe records, which
        the changelog holds in packed records until those expire whole)."""
        with gc_tuning.paused():
            encoded = _encode(rows)
            local_encoded = _encode(local or {})
        return await self.send_encoded(producer, encoded, local_encoded)

    async def send_encoded(
        self,
        producer: Any,
        encoded: dict[int, list[Encoded]],
        local: dict[int, list[Encoded]] | None = None,
    ) -> Sent:
        """:meth:`send` of rows already encoded (:func:`encode_rows`), per partition; a
        partition's list must not be empty."""
        local = local or {}
        if not encoded:
            return Sent(encoded, [], local=local)
        topic: str = self.table.changelog_topic.get_topic_name()
        batches = await send_records(producer, topic, cast(dict[int, list[Record]], encoded))
        failpoints.hit("changelog_sent")
        return Sent(encoded, batches, local=local)

    async def acknowledged(self, sent: Sent) -> Sent:
        """Wait for the broker's acknowledgement of every record of ``sent``.

        Raises:
            aiokafka.errors.KafkaError: a record was not acknowledged.
        """
        metas = await asyncio.gather(*(fut for _, _, fut in sent.batches))
        failpoints.hit("changelog_acked")
        for (partition, count, _), meta in zip(sent.batches, metas, strict=True):
            sent.last[partition] = max(sent.last.get(partition, -1), meta.offset + count - 1)
            first = sent.first.get(partition)
            sent.first[partition] = meta.offset if first is None else min(first, meta.offset)
        return sent

    def write_local(self, sent: Sent) -> int:
        """Write acknowledged rows and each partition's last changelog offset to RocksDB, one
        write batch per partition. Returns the number of rows written.

        The persisted offset moves only when the batch's changelog records follow it
        directly (first offset = persisted + 1): this worker is the only writer of its
        partitions' changelogs, so a gap means another worker wrote there meanwhile (this
        one had lost the partition: paused past its session timeout, or a rebalance with
        batches in flight). The rows are still written, but the persisted offset stays, so
        the next restore of the partition replays the other worker's records, and
        :mod:`stream_app.runtime.restore` keeps per row the value with the highest input
        offset. Moving it would have marked the other worker's records as applied here, and
        they would never be (the soak's events missing after a pause).
        """
        store = self.table.data
        index = store._key_index  # faust's key → partition cache (an LRU of 1,000 keys)
        expand = self.expand
        n = 0
        for partition in sent.encoded.keys() | sent.local.keys():
            records = sent.encoded.get(partition, [])
            db = self._db(partition)
            batch = rocksdict.WriteBatch(raw_mode=True)
            _apply(batch, index, sent.local.get(partition, ()))  # RocksDB only
            for kb, vb in records:
                rows = None if expand is None else expand(kb, vb)
                if rows is not None:  # e.g. a packed record: the rows it stands for
                    _apply(batch, index, rows)
                    continue
                if vb is None:
                    batch.delete(kb)
                    index.pop(kb, None)
                else:
                    # not indexed: faust finds an unindexed key in its partition's database
                    # itself (bloom filters), and thousands of rows per batch only churned
                    # the lock-guarded LRU
                    batch.put(kb, vb)
            if not records:  # local rows only: the persisted offset stays
                db.write(batch)
                continue
            persisted = db.get(store.offset_key)
            first = sent.first.get(partition)
            if persisted is None or first is None or first == int(persisted) + 1:
                batch.put(store.offset_key, str(sent.last[partition]).encode())
            else:
                CHANGELOG_INTERLEAVED.labels(self.table.name).inc()
                log.warning(
                    "%s/%d: changelog records from another writer between offsets %s and %d; "
                    "local rows written, persisted offset kept for the next restore",
                    self.table.name,
                    partition,
                    persisted.decode(),
                    first,
                )
            db.write(batch)
            n += len(records)
        if n:
            failpoints.hit("state_written")
        return n


Encoded = tuple[bytes, bytes | None]
"""A row as the table stores it: its key and JSON value (None deletes)."""


def encode_rows(rows: Iterable[Row]) -> list[Encoded]:
    """``rows`` as the table stores them, in order.

    Raises:
        TypeError: a value JSON cannot carry here: orjson's ``Integer exceeds 64-bit range``
            for an integer outside -2**63 .. 2**64 - 1 (the folds keep every value at most
            :data:`stream_app.tables.limits.ROW_LIMIT`).
    """
    return [(encode_key(k), None if v is None else orjson.dumps(v)) for k, v in rows]


def _encode(rows: Mapping[int, Sequence[Row]]) -> dict[int, list[Encoded]]:
    """``rows`` per partition as the table stores them (key and JSON value; None deletes),
    the partitions without rows left out."""
    return {partition: encode_rows(part) for partition, part in rows.items() if part}


def _apply(batch: Any, index: Any, rows: Iterable[tuple[bytes, bytes | None]]) -> None:
    """Put ``rows`` (encoded) into the RocksDB write ``batch``; a None value deletes its key,
    also from faust's key index (``index``)."""
    for key, value in rows:
        if value is None:
            batch.delete(key)
            index.pop(key, None)
        else:
            batch.put(key, value)


@dataclass(slots=True)
class Sent:
    """Changelog records handed to the producer: the encoded rows per partition, the record
    batches' futures ``(partition, count, future)``, the encoded rows written to RocksDB
    only, and, once acknowledged, each partition's last changelog offset."""

    encoded: dict[int, list[tuple[bytes, bytes | None]]]
    batches: list[tuple[int, int, asyncio.Future[Any]]]
    local: dict[int, list[tuple[bytes, bytes | None]]] = field(default_factory=dict)
    last: dict[int, int] = field(default_factory=dict)
    first: dict[int, int] = field(default_factory=dict)
