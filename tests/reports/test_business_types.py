"""The three business report types are registered with the cache classes the issue gives."""

from __future__ import annotations

from stream_app.reports import registry
from stream_app.reports.registry import CACHE_TTL_S
from stream_app.schemas.reports import REPORT_TYPES


def test_registered_with_their_cache_class() -> None:
    expected = {
        "photography_business": ("financial", 30 * 60),
        "catering_cost": ("operational", 60 * 60),
        "planner_portfolio": ("portfolio", 12 * 60 * 60),
    }
    for name, (cache_class, ttl) in expected.items():
        assert name in REPORT_TYPES
        kind = registry.get(name)
        assert (kind.name, kind.cache_class, CACHE_TTL_S[kind.cache_class]) == (
            name,
            cache_class,
            ttl,
        )
        assert kind.reads == frozenset()  # PostgreSQL history only
    assert {t.name for t in registry.all_types()} >= set(expected)
