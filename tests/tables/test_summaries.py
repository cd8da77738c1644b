"""Organisation summaries: nearest-rank percentiles, parts that add up whatever the split of
rows between workers, the coverage check, and the figures against plain Python."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from stream_app.tables import summaries

ZONE = ZoneInfo("Pacific/Auckland")


def nearest_rank_by_list(values: list[int], p: int) -> int | None:
    """The textbook rule on the sorted list: the value at rank ceil(p/100 × n)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]


@pytest.mark.parametrize("seed", range(20))
def test_nearest_rank_matches_the_sorted_list(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.randrange(0, 50) for _ in range(rng.randrange(1, 40))]
    dist = {str(v): n for v, n in Counter(values).items()}
    for p in (1, 10, 25, 50, 75, 90, 99, 100):
        assert summaries.nearest_rank(dist, p) == nearest_rank_by_list(values, p)
    assert summaries.stats(dist)["mean"] == sum(values) // len(values)


def test_nearest_rank_small_cases() -> None:
    assert summaries.nearest_rank({}, 50) is None
    assert summaries.nearest_rank({"7": 1}, 90) == 7
    # 1, 2, 3, 4: median by nearest rank is the 2nd value (lower middle), p90 the 4th
    four = {"1": 1, "2": 1, "3": 1, "4": 1}
    assert (summaries.nearest_rank(four, 50), summaries.nearest_rank(four, 90)) == (2, 4)
    assert summaries.rate(1, 3) == {"numerator": 1, "denominator": 3, "basis_points": 3333}
    assert summaries.rate(0, 0)["basis_points"] is None


def test_coverage_problem_names_missing_and_doubled_partitions() -> None:
    assert summaries.coverage_problem([[0, 2], [1, 3]], 4) is None
    assert summaries.coverage_problem([[0, 2], [1]], 4) == "partitions missing [3], read twice []"
    doubled = summaries.coverage_problem([[0, 1, 2], [2, 3]], 4)
    assert doubled == "partitions missing [], read twice [2]"
    assert summaries.coverage_problem([[0, 1, 2, 3]], 4) is None


T0 = datetime(2026, 3, 31, 11, 30, tzinfo=UTC)  # 2026-04-01 00:30 in Auckland (NZDT, +13)


def client_row(i: int, rng: random.Random) -> dict[str, Any]:
    inquiry = T0 + timedelta(hours=rng.randrange(-800, 800)) if i % 5 else None
    frs = rng.randrange(0, 90_000) if inquiry and i % 3 else None
    converted = inquiry + timedelta(days=rng.randrange(0, 40)) if inquiry and i % 4 == 1 else None
    early = [T0 - timedelta(days=rng.randrange(1, 30)) for _ in range(i % 3)]
    if inquiry is not None:
        early = [e for e in early if e < inquiry]
    return {
        "first_inquiry_at": inquiry.isoformat() if inquiry else None,
        "first_response_seconds": frs,
        "converted_at": converted.isoformat() if converted else None,
        "days_to_book": (converted - inquiry).days if converted and inquiry else None,
        "early_bookings": [e.isoformat() for e in early],
        "ratings": {str(rng.randrange(1, 6)): 1} if i % 2 else {},
        "nps": {str(rng.randrange(0, 11)): rng.randrange(1, 3)},
    }


def rows_of(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    return [(f"org/c{i}/all/all", client_row(i, rng)) for i in range(n)]


MONTHS = ["2026-02", "2026-03", "2026-04", "2026-05"]


@pytest.mark.parametrize("seed", range(5))
def test_interaction_parts_add_up_whatever_the_split(seed: int) -> None:
    rows = rows_of(60, seed)
    whole = summaries.interactions_part(rows, ZONE, MONTHS)
    rng = random.Random(seed)
    split: list[list[tuple[str, dict[str, Any]]]] = [[], [], []]
    for r in rows:
        split[rng.randrange(3)].append(r)
    parts = [summaries.interactions_part(s, ZONE, MONTHS) for s in split]
    assert summaries.merge_interactions(parts) == summaries.merge_interactions([whole])
    assert summaries.finish_interactions(
        summaries.merge_interactions(parts), MONTHS
    ) == summaries.finish_interactions(whole, MONTHS)


def test_interaction_figures_against_plain_python() -> None:
    rows = rows_of(80, 7)
    got = summaries.finish_interactions(
        summaries.merge_interactions([summaries.interactions_part(rows, ZONE, MONTHS)]), MONTHS
    )

    def month(iso: str) -> str:
        return datetime.fromisoformat(iso).astimezone(ZONE).strftime("%Y-%m")

    for cohort in got["cohorts"]:
        mine = [
            v
            for _, v in rows
            if v["first_inquiry_at"] and month(v["first_inquiry_at"]) == cohort["month"]
        ]
        frs = [v["first_response_seconds"] for v in mine if v["first_response_seconds"] is not None]
        converted = [v for v in mine if v["converted_at"]]
        assert cohort["clients"] == len(mine)
        assert cohort["responded"] == len(frs)
        assert cohort["first_response_seconds"]["median"] == nearest_rank_by_list(frs, 50)
        assert cohort["first_response_seconds"]["p90"] == nearest_rank_by_list(frs, 90)
        assert cohort["first_response_seconds"]["mean"] == (sum(frs) // len(frs) if frs else None)
        assert cohort["converted"] == len(converted)
        assert cohort["conversion_rate"]["basis_points"] == (
            len(converted) * 10_000 // len(mine) if mine else None
        )
        assert cohort["direct_bookings"] == sum(
            month(e) == cohort["month"] for _, v in rows for e in v["early_bookings"]
        )
    # the month of an instant is the organisation's: 11:30 UTC on 31 March is April in Auckland
    assert month(T0.isoformat()) == "2026-04"
    ratings = Counter[str]()
    for _, v in rows:
        ratings.update(v["ratings"])
    n = sum(ratings.values())
    assert got["ratings"]["count"] == n
    assert (
        got["ratings"]["average_milli"] == sum(int(s) * c for s, c in ratings.items()) * 1000 // n
    )


def test_rows_of_other_shapes_are_ignored() -> None:
    rows: list[tuple[str, Any]] = [
        ("org/c1/~ids/all", {"event_ids": ["x"]}),  # an id list of the old rows
        ("org/c1/month/2026-01", {"x": 1}),
        ("~e/0123456789abcdef0123456789abcdef", [3, 1_780_000_000_000]),  # a dedupe record
        ("~watermark/0/org", {"event_time": "2026-01-01T00:00:00+00:00", "o": 3}),
    ]
    part = summaries.interactions_part(rows, ZONE, MONTHS)
    assert part == {"cohorts": {}, "direct": {}, "ratings": {}, "nps": {}}


def test_payments_never_add_currencies_and_outstanding_is_booked_minus_net_collected() -> None:
    payment_rows: list[tuple[str, dict[str, Any]]] = [
        (
            "org/b1/all/all",
            {
                "payments": 2,
                "refunds": 1,
                "paid_minor": {"EUR": 500, "USD": 70},
                "refunded_minor": {"EUR": 20},
            },
        ),
        ("org/b1/month/2026-01", {"by_supplier": {}}),
        (
            "org/b2/all/all",
            {"payments": 1, "refunds": 0, "paid_minor": {"EUR": 30}, "refunded_minor": {}},
        ),
    ]
    booking_rows: list[tuple[str, dict[str, Any]]] = [
        (
            "org/v1/month/2026-05",
            {
                "totals": {
                    "bookings": 2,
                    "cancellations": 1,
                    "booked_minor": {"EUR": 1000},
                    "cancelled_minor": {"EUR": 300},
                }
            },
        ),
        (
            "org/v1/day/2026-05-02",
            {
                "totals": {
                    "bookings": 9,
                    "cancellations": 0,
                    "booked_minor": {"EUR": 999_999},
                    "cancelled_minor": {},
                }
            },
        ),
    ]
    got = summaries.finish_payments(
        summaries.merge_payments([summaries.payments_part(payment_rows, booking_rows)])
    )
    assert got == {
        "bookings_with_payments": 2,
        "payments": 3,
        "refunds": 1,
        "currencies": {
            "EUR": {
                "collected_minor": 530,
                "refunded_minor": 20,
                "booked_minor": 700,
                "outstanding_minor": 700 - 530 + 20,
            },
            "USD": {
                "collected_minor": 70,
                "refunded_minor": 0,
                "booked_minor": 0,
                "outstanding_minor": -70,
            },
        },
    }
