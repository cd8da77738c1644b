"""Which partition a key lands in, and whether this worker owns it.

Producers (aiokafka, faust) place a keyed message with the Java client's default
partitioner: ``(murmur2(key) & 0x7fffffff) % partitions`` (aiokafka ``DefaultPartitioner``).
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (Kafka's default partitioner)."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions
