"""The worker's metrics: the batch-observed latency histogram exposes what a
prometheus_client Histogram observing each value would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from stream_app.observability import REGISTRY, StampHistogram

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in registry.collect():
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[(s.name, tuple(sorted(s.labels.items())))] = round(s.value, 6)
    return out


def test_batches_of_stamps_expose_what_per_value_observations_would() -> None:
    rng = random.Random(7)
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = StampHistogram("lat_seconds", "doc", ["topic"], BUCKETS, ours_registry)
    theirs = Histogram("lat_seconds", "doc", ["topic"], registry=theirs_registry, buckets=BUCKETS)
    now_ms = 1_800_000_000_000.0
    for topic in ("a", "b", "a"):
        # ages from 0 to 40 s, some exactly on a bucket's bound, some stamps in the future
        stamps = [
            int(now_ms - rng.choice([rng.uniform(0, 40_000), 5, 10, 1000, 30_000]))
            for _ in range(500)
        ] + [int(now_ms) + 3, int(now_ms) + 250]
        ours.observe_ages((topic,), stamps, now_ms)
        for ts in stamps:
            theirs.labels(topic).observe(max(0.0, (now_ms - ts) / 1000))
    got, expected = samples(ours_registry), samples(theirs_registry)
    assert got == expected
    assert got[("lat_seconds_count", (("topic", "a"),))] == 1004
    assert got[("lat_seconds_bucket", (("le", "0.005"), ("topic", "b")))] > 0


def test_the_worker_registry_exposes_the_end_to_end_histogram() -> None:
    text = generate_latest(REGISTRY).decode()
    assert "# TYPE wedding_end_to_end_latency_seconds histogram" in text
