"""An input partition stays in the fetch set while its channel is under pressure
(:meth:`stream_app.runtime.consumer.BatchConsumer.on_buffer_full`); other topics keep faust's
flow control."""

from __future__ import annotations

from faust.types import TP

from stream_app.app import app
from stream_app.runtime.consumer import BatchConsumer
from stream_app.topics import INPUT_TOPICS, REPORT_REQUESTS


async def test_input_partitions_stay_fetchable_and_others_are_paused_by_pressure() -> None:
    consumer = app.consumer
    assert isinstance(consumer, BatchConsumer)
    inputs = {TP(topic, p) for topic in INPUT_TOPICS for p in range(2)}
    other = TP(REPORT_REQUESTS, 0)
    consumer._set_active_tps({*inputs, other})
    try:
        for tp in [*inputs, other]:
            consumer.on_buffer_full(tp)  # as faust's conductor calls it: one batch waits
        active = consumer._get_active_partitions()
        # every input partition is still fetched: a partition out of the fetch set held
        # every partition's next fetch up to 100 ms (aiokafka's prefetch backoff) and
        # getmany up to 1 s once all were out
        assert inputs <= active
        assert other not in active  # faust's flow control, unchanged for other topics
        consumer.on_buffer_drop(other)
        assert other in consumer._get_active_partitions()
    finally:
        consumer._active_partitions = None  # type: ignore[assignment]
        consumer._buffered_partitions.clear()
