"""Which partition a key lands in, and whether this worker owns it.

Producers (aiokafka, faust) place a keyed message with the Java client's default
partitioner: ``(murmur2(key) & 0x7fffffff) % partitions`` (aiokafka ``DefaultPartitioner``).
"""

from __future__ import annotations

import functools

from aiokafka.partitioner import murmur2


@functools.lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (Kafka's default partitioner).

    Cached (the keys of a worker's updates repeat: one per tenant entity), because aiokafka's
    ``murmur2`` is pure Python, ~10 µs a key."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions
