"""``/dashboard`` in a real headless Chromium (Debian's ``chromium`` driven through
``chromedriver``'s W3C WebDriver protocol): the page shows the figures of the booking events
produced to Kafka, changes when one more is produced (the page never polls: only the update
stream can change it), and requests a report whose status and files it shows.

The expected figures are counted from the produced events here. ``WEDDING_SCREENSHOT=path``
saves the page as a PNG (how ``docs/dashboard.png`` was made).
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from stream_app.topics import WEDDING_BOOKINGS
from tests.e2e.helpers import bearer, booking_created

ORG, VENUE, CAPACITY = "dash-org", "hall", 10
AMOUNT_MINOR = 250_000
DAYS = [
    date(2026, 7, 4),
    date(2026, 7, 11),
    date(2026, 7, 18),
    date(2026, 8, 8),
    date(2026, 9, 5),
    date(2026, 9, 12),
]
"""One booking on each day (so each occupies one of the day's slots)."""
NEW_DAY = date(2026, 8, 22)
AVAILABLE = (31 + 31 + 30) * CAPACITY  # July to September, no closed dates
T = TypeVar("T")

pytestmark = pytest.mark.skipif(
    (shutil.which("chromedriver") is None or shutil.which("chromium") is None)
    and not os.environ.get("CI"),  # in CI (scripts/install installs them) a missing one fails
    reason="needs Debian's chromium and chromium-driver (scripts/install installs them)",
)


def booking(n: int, day: date) -> tuple[bytes, bytes]:
    """Booking ``n`` of the hall for ``day``, as (key, value) of ``wedding-bookings``."""
    return booking_created(
        ORG, f"dash-{n}", f"dash-b-{n}", VENUE, day.isoformat(), AMOUNT_MINOR, "EUR"
    )


class Browser:
    """A WebDriver session of headless Chromium (https://www.w3.org/TR/webdriver2/)."""

    def __init__(self, http: aiohttp.ClientSession, session_id: str) -> None:
        self.http = http
        self.sid = session_id

    async def cmd(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"/session/{self.sid}{path}", json=body) as r:
            doc = await r.json()
            assert r.status == 200, doc
            return doc["value"]

    async def js(self, script: str) -> Any:
        return await self.cmd("POST", "/execute/sync", {"script": script, "args": []})

    async def text(self, element_id: str) -> str:
        return str(await self.js(f"return document.getElementById('{element_id}').textContent"))

    async def until(
        self, probe: Callable[[], Awaitable[T]], expected: T, timeout_s: float = 60
    ) -> None:
        """Wait until ``probe()`` returns ``expected`` (the last value is in the failure)."""
        seen: Any = None
        for _ in range(int(timeout_s / 0.25)):
            seen = await probe()
            if seen == expected:
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"expected {expected!r}, the page shows {seen!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    port = free_port()
    driver = await asyncio.create_subprocess_exec(
        "chromedriver",
        f"--port={port}",
        f"--log-path={tmp_path / 'chromedriver.log'}",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            for _ in range(100):
                try:
                    async with http.get("/status") as r:
                        if (await r.json())["value"]["ready"]:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            options = {
                "binary": shutil.which("chromium"),
                "args": [
                    "--headless=new",
                    "--no-sandbox",  # CI runs as root
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1100,1000",
                    "--lang=en-GB",
                    f"--user-data-dir={tmp_path / 'profile'}",
                ],
            }
            caps = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}
            async with http.post("/session", json={"capabilities": caps}) as r:
                created = await r.json()
                assert r.status == 200, created
            b = Browser(http, created["value"]["sessionId"])
            try:
                yield b
            finally:
                async with http.delete(f"/session/{b.sid}"):
                    pass
    finally:
        driver.terminate()
        await asyncio.wait_for(driver.wait(), 10)


async def test_the_dashboard_shows_the_produced_bookings_live_and_a_report(
    main_worker: WorkerProcess, settings: Settings, browser: Browser
) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(ORG, "Dashboard Co", "Europe/Lisbon", "EUR"))
        await upsert_venue(conn, ORG, Venue(VENUE, "The Hall", CAPACITY))
    finally:
        await conn.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for n, day in enumerate(DAYS):
            key, value = booking(n, day)
            await producer.send_and_wait(WEDDING_BOOKINGS, value, key=key)
        token = bearer(settings, ORG, "dash-user", role="analyst", venues=[VENUE])
        fragment = f"org={ORG}&venue={VENUE}&from=2026-07&to=2026-09&token={token}"
        page = f"{main_worker.url}/dashboard#{fragment}"
        await browser.cmd("POST", "/url", {"url": page})

        async def figures() -> tuple[str, str, str, str]:
            return (
                await browser.text("bookings-total"),
                str(
                    await browser.js(
                        "return document.getElementById('revenue-total').dataset.minor"
                    )
                ),
                str(
                    await browser.js("return document.getElementById('occupancy').dataset.occupied")
                ),
                await browser.text("live-status"),
            )

        n = len(DAYS)
        await browser.until(figures, (str(n), str(n * AMOUNT_MINOR), str(n), "live"))
        assert await browser.text("occupancy") == f"{100 * n / AVAILABLE:.2f} %"
        assert await browser.text("revenue-total") == "€15,000.00"  # 6 × 2,500.00 EUR
        assert await browser.js("return document.getElementById('error').hidden") is True
        assert await browser.js("return window.Chart !== undefined") is True
        # the page names its icon (an empty one), so the browser asks no /favicon.ico (a 404)
        icon = await browser.js("return document.querySelector('link[rel=icon]').href")
        assert icon == "data:,"
        bars = await browser.js("return Chart.getChart('chart').data.datasets[0].data")
        assert bars == [3, 1, 2]

        # one more booking: the page changes without reloading (the stream brings it)
        await browser.js("window.__same_page = true")
        key, value = booking(n, NEW_DAY)
        await producer.send_and_wait(WEDDING_BOOKINGS, value, key=key)
        await browser.until(figures, (str(n + 1), str((n + 1) * AMOUNT_MINOR), str(n + 1), "live"))
        assert await browser.js("return window.__same_page === true") is True
        assert await browser.text("occupancy") == f"{100 * (n + 1) / AVAILABLE:.2f} %"
        bars = await browser.js("return Chart.getChart('chart').data.datasets[0].data")
        assert bars == [3, 2, 2]
    finally:
        await producer.stop()

    # a report of the venue, its status followed live, its files listed
    await browser.js("document.querySelector('#report-form button').click()")

    async def report_status() -> str:
        return str(
            await browser.js("return document.getElementById('report-status').dataset.status || ''")
        )

    await browser.until(report_status, "completed", timeout_s=120)
    links = await browser.js(
        "return [...document.querySelectorAll('#report-links a')]"
        ".map(a => [a.dataset.format, a.getAttribute('href')])"
    )
    report_id = str(links[0][1]).split("/")[4]
    assert sorted(links) == [
        ["csv", f"/orgs/{ORG}/reports/{report_id}/files/csv"],
        ["pdf", f"/orgs/{ORG}/reports/{report_id}/files/pdf"],
    ]
    shot = os.environ.get("WEDDING_SCREENSHOT")
    if shot:
        png = base64.b64decode(await browser.cmd("GET", "/screenshot"))
        assert png.startswith(b"\x89PNG")
        await asyncio.to_thread(Path(shot).write_bytes, png)
