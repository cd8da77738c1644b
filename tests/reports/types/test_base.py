"""The helpers every report type gets (:mod:`stream_app.reports.types.base`): the cache
classes' time to live, refused data filters, the venues a venue report covers, a new table
carrying its organisation's metadata."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from stream_app.db.tenancy import Organization, Venue
from stream_app.errors import WeddingError
from stream_app.reports.model import Column
from stream_app.reports.types.base import (
    CACHE_TTL_S,
    ReportContext,
    ReportInputError,
    new_table,
    reject_filters,
    selected_venues,
)
from stream_app.schemas.reports import ReportRequest

ORG = Organization("org-a", "Quinta do Lago", "Europe/Lisbon", "EUR")
VENUES = [Venue("v1", "Salão", 120), Venue("v2", "Jardim", None), Venue("v3", "Capela", 40)]


def request(filters: dict[str, list[str]] | None = None) -> ReportRequest:
    return ReportRequest(
        schema_version=1,
        report_id="r1",
        organization_id=ORG.id,
        user_id="u1",
        report_type="venue_occupancy",
        date_from=date(2025, 1, 1),
        date_to=date(2025, 3, 31),
        output_formats=["csv"],
        requested_at=datetime(2025, 4, 1, tzinfo=UTC),
        data_filters=filters or {},
    )


async def _no_rows(*_: Any) -> dict[str, dict[str, Any]]:
    return {}


def context(filters: dict[str, list[str]] | None, venues: list[Venue]) -> ReportContext:
    return ReportContext(request(filters), ORG, venues, pool=None, read_venue_rows=_no_rows)


def test_cache_classes_live_as_the_issue_says() -> None:
    # financial 30 min, operational 1 h, seasonal 24 h, portfolio 12 h (in seconds)
    assert CACHE_TTL_S == {
        "financial": 1_800,
        "operational": 3_600,
        "seasonal": 86_400,
        "portfolio": 43_200,
    }


def test_data_filters_are_refused_naming_the_dimension() -> None:
    reject_filters(request())  # none: accepted
    with pytest.raises(ReportInputError) as caught:
        reject_filters(request({"venue_id": ["v1"]}))
    assert str(caught.value) == (
        "data_filters.venue_id: not supported by report type 'venue_occupancy'"
    )
    assert isinstance(caught.value, WeddingError) and caught.value.retriable is False


def test_the_venues_of_a_venue_report() -> None:
    assert selected_venues(context(None, VENUES)) == VENUES
    chosen = selected_venues(context({"venue_id": ["v3", "v1"]}, VENUES))
    assert [v.id for v in chosen] == ["v1", "v3"]  # the organisation's order
    unknown = r"^data_filters.venue_id: unknown venue\(s\) \['v9', 'x'\]$"  # sorted
    with pytest.raises(ReportInputError, match=unknown):
        selected_venues(context({"venue_id": ["x", "v1", "v9"]}, VENUES))
    with pytest.raises(ReportInputError, match=r"^organization_id: 'org-a' has no venues$"):
        selected_venues(context(None, []))


def test_a_new_table_carries_the_organisation_and_the_range() -> None:
    columns = [Column("venue", "text", "Venue"), Column("n", "int", "Events")]
    table = new_table(
        "venue_occupancy",
        ORG,
        date(2025, 1, 1),
        date(2025, 3, 31),
        columns=columns,
        rows=[["Salão", 3]],
        notes=["a note"],
        validation=["warning: x"],
    )
    assert (table.report_type, table.organization_id, table.organization_name) == (
        "venue_occupancy",
        "org-a",
        "Quinta do Lago",
    )
    assert (table.time_zone, table.date_from, table.date_to) == (
        "Europe/Lisbon",
        date(2025, 1, 1),
        date(2025, 3, 31),
    )
    assert list(table.columns) == columns and list(table.rows) == [["Salão", 3]]
    assert (list(table.notes), list(table.validation)) == (["a note"], ["warning: x"])
    assert table.chart is None
    assert (list(table.sections), list(table.kpis)) == ([], [])
