"""The three business reports through a real worker: a request on ``report-requests``, the
``completed`` status, and the stored JSON file's main table equal to figures computed here in
plain Python over the generated rows."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import orjson

from stream_app.client import request_report_and_wait
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from stream_app.synthetic.generator import SynthConfig
from tests.e2e.helpers import read_artifact
from tests.synthetic.helpers import load, major, pct

FROM, TO = date(2024, 1, 1), date(2024, 12, 31)


async def test_business_reports_through_a_worker(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    rows = await load(settings, SynthConfig("photography", 1_000, 17, organization_id="e2e-ph"))
    await load(settings, SynthConfig("catering", 1_000, 18, organization_id="e2e-ca"))
    await load(settings, SynthConfig("planner", 1_000, 19, organization_id="e2e-pl"))

    # photography: revenue by photographer and month, every cell
    names = {s[1]: s[2] for s in rows["suppliers"]}
    groups: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for b in rows["bookings"]:
        if FROM <= b[7] <= TO:
            g = groups[(b[3], f"{b[7]:%Y-%m}")]
            g[0] += 1
            g[1] += b[12] == "cancelled"
            g[2] += 0 if b[12] == "cancelled" else b[10]
    expected = [
        {
            "photographer_id": pid,
            "photographer_name": names[pid],
            "month": month,
            "bookings": n,
            "cancellations": c,
            "cancellation_rate": pct(c, n),
            "currency": "GBP",
            "revenue": major(rev),
            "revenue_minor": rev,
        }
        for (pid, month), (n, c, rev) in sorted(groups.items())
    ]
    for org, report_type in (
        ("e2e-ph", "photography_business"),
        ("e2e-ca", "catering_cost"),
        ("e2e-pl", "planner_portfolio"),
    ):
        status = await request_report_and_wait(
            settings,
            organization_id=org,
            report_type=report_type,
            date_from=FROM,
            date_to=TO,
            output_formats=["json", "pdf"],
            timeout_s=180,
        )
        assert status.status == "completed", status.error
        assert {a.format for a in status.artifacts} == {"json", "pdf"}
        json_path = next(a for a in status.artifacts if a.format == "json").path
        doc = orjson.loads(await read_artifact(settings, org, json_path))
        assert doc["report"]["report_type"] == report_type
        if report_type == "photography_business":
            assert doc["rows"] == expected
            assert [s["name"] for s in doc["sections"]] == [
                "satisfaction", "trend_by_month", "trend_by_weekday",
            ]  # fmt: skip
