"""Which partition a key lands in (:mod:`stream_app.queries.partitions`): the Java client's.

The expected hashes are the vectors of Kafka's own ``UtilsTest.testMurmur2`` (Java client);
the positive forms (``hash & 0x7fffffff``) are worked out by hand in the comments. A key on
another partition than a Java producer chooses would be read from the wrong worker.
"""

from __future__ import annotations

import pytest

from stream_app.queries.partitions import partition_for

JAVA_POSITIVE = {
    b"21": 1_173_551_340,  # Java murmur2 -973932308 & 0x7fffffff = 2**31 - 973932308
    b"foobar": 1_357_151_166,  # -790332482 → 2**31 - 790332482
    b"a-little-bit-long-string": 1_161_502_112,  # -985981536
    b"a-little-bit-longer-string": 661_178_819,  # -1486304829
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": 2_088_585_677,  # -58897971
    b"abc": 479_470_107,  # positive already
}


def test_the_positive_forms_above_are_the_java_hashes_masked() -> None:
    java = {b"21": -973932308, b"foobar": -790332482, b"abc": 479470107}
    for key, signed in java.items():
        assert JAVA_POSITIVE[key] == signed & 0x7FFFFFFF


@pytest.mark.parametrize("partitions", [1, 4, 6, 12, 1000])
def test_a_key_lands_where_the_java_partitioner_puts_it(partitions: int) -> None:
    for key, positive in JAVA_POSITIVE.items():
        assert partition_for(key, partitions) == positive % partitions, key


def test_worked_examples_on_four_partitions() -> None:
    assert partition_for(b"21", 4) == 0  # 1,173,551,340 = 4 × 293,387,835
    assert partition_for(b"foobar", 4) == 2  # 1,357,151,166 = 4 × 339,287,791 + 2
    assert partition_for(b"abc", 4) == 3  # 479,470,107 = 4 × 119,867,526 + 3
