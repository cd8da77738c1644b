"""``photography_business`` on a generated photography chain in the test PostgreSQL.

Every figure is computed again below in plain Python over the generated rows (not through
the product's SQL) and compared exactly; the report is then rendered in all five formats and
the main table read back from each file.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from stream_app.reports.types.base import ReportInputError
from stream_app.reports.types.photography_business import COLUMNS
from stream_app.settings import Settings
from stream_app.synthetic.generator import Chunk, SynthConfig
from tests.synthetic import helpers as synth
from tests.synthetic.helpers import major, pct

ORG = "test-photo"
CONFIG = SynthConfig("photography", 2_000, seed=42, organization_id=ORG)
# a range that starts on 29 February (a year earlier: 28 February) and ends mid-month
FROM, TO = date(2024, 2, 29), date(2025, 1, 15)
LAST_FROM, LAST_TO = date(2023, 2, 28), date(2024, 1, 15)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@pytest.fixture(scope="module")
async def rows(settings: Settings) -> Chunk:
    return await synth.load(settings, CONFIG)


def photographer_bookings(rows: Chunk, lo: date, hi: date) -> list[tuple[Any, ...]]:
    kinds = {s[1]: s[3] for s in rows["suppliers"]}
    return [b for b in rows["bookings"] if kinds.get(b[3]) == "photographer" and lo <= b[7] <= hi]


def expected_main(rows: Chunk) -> list[list[Any]]:
    names = {s[1]: s[2] for s in rows["suppliers"]}
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for b in photographer_bookings(rows, FROM, TO):
        g = groups[(b[3], f"{b[7]:%Y-%m}", b[11])]
        g[0] += 1
        if b[12] == "cancelled":
            g[1] += 1
        else:
            g[2] += b[10]
    return [
        [pid, names[pid], month, n, c, pct(c, n), cur, major(rev), rev]
        for (pid, month, cur), (n, c, rev) in sorted(groups.items())
    ]


def expected_satisfaction(rows: Chunk) -> list[list[Any]]:
    names = {s[1]: s[2] for s in rows["suppliers"]}
    booking_of = {b[1]: b[3] for b in photographer_bookings(rows, FROM, TO)}
    answers: dict[str, list[tuple[int, int]]] = {pid: [] for pid in booking_of.values()}
    for f in rows["feedback"]:
        if f[3] in booking_of:
            answers[booking_of[f[3]]].append((f[4], f[5]))
    out = []
    for pid in sorted(answers):
        got = answers[pid]
        stars = Counter(r for r, _ in got)
        promoters = sum(1 for _, s in got if s >= 9)
        passives = sum(1 for _, s in got if s in (7, 8))
        detractors = sum(1 for _, s in got if s <= 6)
        average = pct(sum(r for r, _ in got), len(got) * 100)
        out.append(
            [pid, names[pid], len(got), average, *(stars[i] for i in range(1, 6)), len(got),
             promoters, passives, detractors, pct(promoters - detractors, len(got))]
        )  # fmt: skip
    return out


async def test_photography_business(rows: Chunk, settings: Settings, tmp_path: Path) -> None:
    table = await synth.build(settings, "photography_business", ORG, FROM, TO)
    main = expected_main(rows)
    assert len(main) > 40  # 5 photographers × 12 months, nearly all with bookings
    synth.assert_rows(table.rows, COLUMNS, main)

    sections = {s.name: s for s in table.sections}
    sat = sections["satisfaction"]
    synth.assert_rows(sat.rows, sat.columns, expected_satisfaction(rows))

    # seasonal trends: weddings = bookings not cancelled, by month and weekday
    this = [b for b in photographer_bookings(rows, FROM, TO) if b[12] != "cancelled"]
    last = [b for b in photographer_bookings(rows, LAST_FROM, LAST_TO) if b[12] != "cancelled"]
    by_month, last_by_month = (
        Counter(f"{b[7]:%Y-%m}" for b in this),
        Counter(f"{b[7]:%Y-%m}" for b in last),
    )
    months = [f"2024-{m:02d}" for m in range(2, 13)] + ["2025-01"]
    want_months: list[list[Any]] = []
    for m in months:
        earlier = f"{int(m[:4]) - 1}{m[4:]}"
        now, then = by_month[m], last_by_month[earlier]
        want_months.append([m, now, earlier, then, pct(now - then, then)])
    synth.assert_rows(
        sections["trend_by_month"].rows, sections["trend_by_month"].columns, want_months
    )
    assert sum(r[1] for r in want_months) == len(this)
    days, last_days = (
        Counter(b[7].isoweekday() for b in this),
        Counter(b[7].isoweekday() for b in last),
    )
    want_days = [
        [d, WEEKDAYS[d - 1], days[d], pct(days[d], len(this)), last_days[d],
         pct(last_days[d], len(last)), pct(days[d] - last_days[d], last_days[d])]
        for d in range(1, 8)
    ]  # fmt: skip
    weekday = sections["trend_by_weekday"]
    synth.assert_rows(weekday.rows, weekday.columns, want_days)
    assert days.most_common(1)[0][0] == 6  # Saturday, measured through the report

    # KPIs
    in_range = photographer_bookings(rows, FROM, TO)
    cancelled = sum(1 for b in in_range if b[12] == "cancelled")
    revenue = sum(b[10] for b in in_range if b[12] != "cancelled")
    kpis = {k.label: k.value for k in table.kpis}
    assert kpis["Bookings"] == f"{len(in_range):,}"
    assert kpis["Cancellations"] == f"{cancelled:,}"
    assert kpis["Cancellation rate"] == f"{pct(cancelled, len(in_range))}%"
    assert kpis["Revenue (GBP)"] == f"{revenue // 100:,}.{revenue % 100:02d}"
    assert kpis["Weddings"] == f"{len(this):,}"
    assert kpis["Weddings vs a year earlier"] == f"{pct(len(this) - len(last), len(last))}%"
    per_photographer = expected_satisfaction(rows)
    n_ratings = sum(r[2] for r in per_photographer)
    rating_sum = sum(r[4] + 2 * r[5] + 3 * r[6] + 4 * r[7] + 5 * r[8] for r in per_photographer)
    assert kpis["Average rating"] == pct(rating_sum, n_ratings * 100)
    assert kpis["NPS"] == pct(
        sum(r[10] - r[12] for r in per_photographer), sum(r[9] for r in per_photographer)
    )

    files = synth.render_and_read(table, tmp_path)
    synth.check_files(
        files,
        table,
        {
            "": main,
            "satisfaction": expected_satisfaction(rows),
            "trend_by_month": want_months,
            "trend_by_weekday": want_days,
        },
    )


async def test_filters_are_refused(rows: Chunk, settings: Settings) -> None:
    with pytest.raises(ReportInputError, match=r"^data_filters.venue_id: not supported"):
        await synth.build(settings, "photography_business", ORG, FROM, TO, {"venue_id": ["x"]})
