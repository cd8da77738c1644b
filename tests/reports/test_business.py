"""The three business report types: registered with the cache classes the issue gives, and
refusing an organisation that lacks their business (no photographers, menus or offices)."""

from __future__ import annotations

import re
from datetime import date

import asyncpg
import pytest

from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.reports import registry
from stream_app.reports.types.base import CACHE_TTL_S, ReportInputError
from stream_app.schemas.reports import REPORT_TYPES
from stream_app.settings import Settings
from tests.synthetic.helpers import build


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


@pytest.mark.parametrize(
    ("report_type", "reason"),
    [
        (
            "photography_business",
            "has no photographers (suppliers of kind photographer) in its PostgreSQL history:"
            " this report reads the history only, not the live supplier-activities; load them"
            " as `suppliers` rows of kind 'photographer' (README, Loading your own history)",
        ),
        (
            "catering_cost",
            "has no catering menus in its PostgreSQL history: load the `catering_*` rows"
            " (README, Loading your own history)",
        ),
        (
            "planner_portfolio",
            "has no offices in its PostgreSQL history: load them as `offices` rows and name"
            " them in `bookings.office_id` (README, Loading your own history)",
        ),
    ],
)
async def test_an_organisation_without_the_business_is_refused(
    settings: Settings, report_type: str, reason: str
) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization("test-empty", "Empty", "Europe/Rome", "EUR"))
    finally:
        await conn.close()
    cause = re.escape(f"organization_id: 'test-empty' {reason}")
    with pytest.raises(ReportInputError, match=f"^{cause}$"):
        await build(settings, report_type, "test-empty", date(2024, 1, 1), date(2024, 12, 31))
