"""The generator: determinism, the stated distributions measured on generated sets, and
the consistency of the rows (amounts, payments, statuses) checked row by row."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from datetime import date

import pytest

from stream_app.synthetic.generator import (
    BUSINESSES,
    Business,
    SynthConfig,
    generate,
    generate_all,
)


def digest(config: SynthConfig, chunk: int = 20_000) -> str:
    """SHA-256 per table over the repr of its rows in order, chunk after chunk."""
    hashes: dict[str, hashlib._Hash] = {}
    for part in generate(config, chunk):
        for table, rows in part.items():
            h = hashes.setdefault(table, hashlib.sha256())
            for row in rows:
                h.update(f"{row!r}\n".encode())
    return " ".join(f"{t}:{h.hexdigest()}" for t, h in sorted(hashes.items()))


@pytest.mark.parametrize("business", BUSINESSES)
def test_same_seed_same_rows_different_seed_different_rows(business: Business) -> None:
    a = digest(SynthConfig(business, 2_000, seed=7))
    # the chunk size changes where the rows are cut, not the rows
    assert digest(SynthConfig(business, 2_000, seed=7), chunk=333) == a
    assert digest(SynthConfig(business, 2_000, seed=8)) != a
    one, two = (
        generate_all(SynthConfig(business, 1_000, 3)),
        generate_all(SynthConfig(business, 1_000, 3)),
    )
    assert one == two
    other = generate_all(SynthConfig(business, 1_000, 4))
    assert other["bookings"] != one["bookings"]


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"^weddings: 999 is outside 1,000..1,000,000"):
        SynthConfig("photography", 999, 1)
    with pytest.raises(ValueError, match=r"^weddings: 1000001"):
        SynthConfig("photography", 1_000_001, 1)
    with pytest.raises(ValueError, match=r"^business: 'florist'"):
        SynthConfig("florist", 1_000, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^years: 1 is outside"):
        SynthConfig("planner", 1_000, 1, years=1)
    with pytest.raises(ValueError, match=r"^chunk_weddings: must be positive"):
        next(generate(SynthConfig("planner", 1_000, 1), 0))


@pytest.mark.parametrize("business", BUSINESSES)
def test_seasonality_and_saturdays_measured(business: Business) -> None:
    rows = generate_all(SynthConfig(business, 30_000, seed=11))
    dates = [r[3] for r in rows["weddings"]]
    n = len(dates)
    assert n == 30_000
    months = Counter(d.month for d in dates)
    weekdays = Counter(d.weekday() for d in dates)
    # stated: May–October 67 %, June–September 47 %, Saturday 56 % (1 % tolerance: the
    # standard error of a share near 0.5 over 30,000 draws is 0.29 points)
    assert abs(sum(months[m] for m in range(5, 11)) / n - 0.67) < 0.01
    assert abs(sum(months[m] for m in range(6, 10)) / n - 0.47) < 0.01
    assert abs(weekdays[5] / n - 0.56) < 0.01
    assert weekdays.most_common(1)[0][0] == 5
    # every month of the peak is above every month outside it
    assert min(months[m] for m in range(5, 11)) > max(months[m] for m in (1, 2, 3, 11, 12))
    # several years, growing
    years = Counter(d.year for d in dates)
    assert sorted(years) == [2023, 2024, 2025]
    assert years[2023] < years[2024] < years[2025]


@pytest.mark.parametrize("business", BUSINESSES)
def test_rows_are_consistent(business: Business) -> None:
    config = SynthConfig(business, 5_000, seed=5)
    rows = generate_all(config)
    as_of = date(2025, 10, 31)
    weddings = {r[1]: r for r in rows["weddings"]}
    clients = {r[1] for r in rows["clients"]}
    statuses = Counter(r[12] for r in rows["bookings"])
    share = statuses["cancelled"] / len(rows["bookings"])
    assert 0.04 < share < 0.14  # stated 6–10 %
    paid: Counter[str] = Counter()
    refunded: Counter[str] = Counter()
    for p in rows["payments"]:
        assert p[4] > 0 and p[5] == rows["bookings"][0][11]
        assert p[6].date() <= as_of
        (paid if p[3] == "payment" else refunded)[p[2]] += p[4]
    outstanding = 0
    for b in rows["bookings"]:
        _org, bid, _, supplier, office, client, wedding, service, *_rest = b
        booked_at, amount, _cur, status, cancelled_at = b[9], b[10], b[11], b[12], b[13]
        assert client in clients and weddings[wedding][3] == service
        assert amount > 0 and booked_at.date() <= service
        assert (supplier is not None) == (business == "photography")
        assert (office is not None) == (business == "planner")
        if status == "cancelled":
            assert cancelled_at is not None and booked_at <= cancelled_at
            assert refunded[bid] <= paid[bid] == amount * 30 // 100
        else:
            assert cancelled_at is None and refunded[bid] == 0
            assert status == ("completed" if service <= as_of else "booked")
            assert paid[bid] in (amount * 30 // 100, amount)
            outstanding += paid[bid] < amount
    assert outstanding > 0  # some balances are outstanding
    assert all(r[4] in range(1, 6) and r[5] in range(11) for r in rows["feedback"])
    assert all(r[6].date() <= as_of for r in rows["feedback"])
    if business == "catering":
        menus = {r[1]: r[3] for r in rows["catering_menus"]}
        booking = {r[6]: r for r in rows["bookings"]}
        for e in rows["catering_events"]:
            b = booking[e[3]]
            assert b[12] == "completed" and b[10] == e[6] * menus[e[4]]
        for u in rows["catering_usage"]:
            assert 0 <= u[4] <= u[3]


def test_shares_agree_with_the_real_marriage_series() -> None:
    """Saturday share vs Paris marriages 2010–2019, June–September share vs Toronto marriage
    licences 2011–2023 (complete years), both read from ``../shared/data``."""
    from tests.conftest import DATA_DIR

    paris = DATA_DIR / "paris_marriages_by_weekday_2010_2022.csv"
    toronto = DATA_DIR / "toronto_marriage_licences_monthly_2011_2024.csv"
    if not (paris.is_file() and toronto.is_file()):
        pytest.fail(f"the real marriage series are missing in {DATA_DIR} (set WEDDING_TEST_DATA)")
    by_day: Counter[str] = Counter()
    with paris.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f, delimiter=";"):
            if int(row["Année"]) <= 2019:
                by_day[row["jour"]] += int(float(row["nombre"]))
    saturday_real = by_day["Samedi"] / sum(by_day.values())
    by_month: Counter[int] = Counter()
    with toronto.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            year, month = row["TIME_PERIOD"].split("-")
            if int(year) <= 2023:
                by_month[int(month)] += int(row["MARRIAGE_LICENSES"])
    summer_real = sum(by_month[m] for m in range(6, 10)) / sum(by_month.values())
    assert round(saturday_real, 4) == 0.5628  # as the data README states
    dates = [r[3] for r in generate_all(SynthConfig("photography", 30_000, 13))["weddings"]]
    saturday = sum(1 for d in dates if d.weekday() == 5) / len(dates)
    summer = sum(1 for d in dates if 6 <= d.month <= 9) / len(dates)
    assert abs(saturday - saturday_real) < 0.015
    assert abs(summer - summer_real) < 0.015
