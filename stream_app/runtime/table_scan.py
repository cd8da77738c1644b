"""Prefix scans straight over a faust table's RocksDB partitions, for the HTTP read path.

Reads, never writes. faust's table API reads one key at a time, in the current event's
partition; a summary needs every row of one organisation in the partitions this worker
holds, so it seeks the partition databases to the organisation's key prefix and iterates.

Pinned to faust-streaming 0.15's RocksDB store (``faust.stores.rocksdb.Store``:
``_db_for_partition``, ``_encode_key``, ``_decode_key``, ``_decode_value``) over rocksdict
(``iter()``, ``seek``, ``valid``, ``key``, ``value``, ``next``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def encoded_prefix(store: Any, prefix: str) -> bytes:
    """The bytes every encoded key starting with the string ``prefix`` starts with.

    The table's key serializer decides the encoding (JSON gives ``b'"org/'``, raw gives
    ``b'org/'``): the common bytes of two keys that differ right after ``prefix``.
    """
    a: bytes = store._encode_key(prefix + "a")
    b: bytes = store._encode_key(prefix + "b")
    n = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    return a[:n]


RawRows = list[tuple[bytes, bytes]]
"""Encoded ``(key, value)`` pairs as stored, in key order per partition."""


def scan_prefix_raw(table: Any, prefix: str, partitions: list[int]) -> RawRows:
    """The encoded ``(key, value)`` of the rows of ``table`` in ``partitions`` whose encoded
    key starts with the encoding of ``prefix``, in key order per partition, undecoded.

    Synchronous and without decoding (150,000 rows in ~0.16 s here): the caller holds the
    event loop only for the copy out of RocksDB, so no fold batch or rebalance interleaves,
    and decodes them (:func:`decode_rows`) off the loop, in a thread, where no RocksDB
    handle is touched.

    Args:
        table: a faust table with the RocksDB store (``table.data``).
        prefix: the string the keys start with (e.g. ``"org-a/"``).
        partitions: the partitions to read; each must be open in this worker.
    """
    store = table.data
    enc = encoded_prefix(store, prefix)
    out: RawRows = []
    for partition in partitions:
        it = store._db_for_partition(partition).iter()
        it.seek(enc)
        while it.valid():
            kb: bytes = it.key()
            if not kb.startswith(enc):
                break
            out.append((kb, it.value()))
            it.next()
    return out


def decode_rows(
    table: Any, rows: RawRows, keep: Callable[[Any], bool]
) -> Iterator[tuple[Any, Any]]:
    """``(key, value)`` of ``rows`` (:func:`scan_prefix_raw`) decoded with ``table``'s
    serializers, for the keys ``keep`` accepts (an encoded-prefix match is not a
    string-prefix proof for every serializer, so the caller checks the prefix again); a value
    is decoded only for a key it accepts. Pure: safe in a thread."""
    store = table.data
    for kb, vb in rows:
        key = store._decode_key(kb)
        if keep(key):
            yield key, store._decode_value(vb)
