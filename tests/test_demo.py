"""The demo's headline figures (:mod:`stream_app.demo`), from the monthly booking summary's CSV.

The whole demo (services, worker, replay, report) is what tests/e2e/test_hotel_pipeline.py
runs step by step; here, its summary lines against figures written out by hand, one of them
the README's own (City Hotel, the real data set)."""

from __future__ import annotations

from pathlib import Path

from stream_app.demo import _headline, data_set_totals, differences
from tests.hotel_csv import read_csv

CSV = (
    "venue_name,bookings,cancellations,revenue_minor\r\n"
    "Resort Hotel (H1),3,0,100\r\n"
    "City Hotel (H2),10,4,123456\r\n"
    "Empty,0,0,0\r\n"
    "City Hotel (H2),5,1,99\r\n"
)


def test_one_line_per_venue_summed_over_its_months_in_name_order() -> None:
    assert _headline(CSV) == [
        "  City Hotel (H2): 15 bookings, 5 cancelled (33.33 %), revenue EUR 1,235.55",
        "  Empty: 0 bookings, 0 cancelled (0.00 %), revenue EUR 0.00",
        "  Resort Hotel (H1): 3 bookings, 0 cancelled (0.00 %), revenue EUR 1.00",
    ]


def test_the_readme_headline_of_the_real_data_set() -> None:
    csv_text = "venue_name,bookings,cancellations,revenue_minor\n" + (
        "City Hotel (H2),79330,33102,1439441018\n"
    )
    assert _headline(csv_text) == [
        "  City Hotel (H2): 79,330 bookings, 33,102 cancelled (41.73 %), revenue EUR 14,394,410.18"
    ]


def test_the_data_set_totals_are_the_readme_figures_and_differences_are_named(
    hotel_csv: Path,
) -> None:
    data = data_set_totals(hotel_csv)
    rows = read_csv(hotel_csv)  # the tests' own reading of the CSV
    for hotel, venue in (("City Hotel", "city-hotel"), ("Resort Hotel", "resort-hotel")):
        mine = [r for r in rows if r.venue == venue]
        assert data[hotel] == (
            len(mine),
            sum(r.cancelled for r in mine),
            sum(r.amount for r in mine if not r.cancelled),
        )
    # and the README's figures: EUR 14,394,410.18 for the city hotel
    assert data["City Hotel"] == (79_330, 33_102, 1_439_441_018)
    assert set(data) == {"City Hotel", "Resort Hotel"}
    report = {"City Hotel (H2)": data["City Hotel"], "Resort Hotel (H1)": (40_059, 11_122, 1)}
    assert differences(report, data) == [
        f"  Resort Hotel: report (40059, 11122, 1), CSV {data['Resort Hotel']}"
    ]
    assert (
        differences({"City Hotel (H2)": data["City Hotel"]}, {"City Hotel": data["City Hotel"]})
        == []
    )
