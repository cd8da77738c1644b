"""``wedding-engine demo``: the whole product end to end on the real hotel booking data.

Starts Kafka, PostgreSQL and Redis, a worker, replays the data set, waits until every event is in
the tables, requests the monthly booking summary for the whole period, prints the artifact
paths and headline figures, then stops the worker and the services it started (unless asked
not to; services that ran before the demo are left running). Each run's worker starts with an
empty folder and restores its tables from the changelogs.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import os
import shutil
import time
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

import asyncpg

from stream_app.crypto.keyring import KeyRing
from stream_app.devservices import manager
from stream_app.devservices.workers import start_worker
from stream_app.reports.artifacts import open_artifact

Totals = dict[str, tuple[int, int, int]]
"""venue or hotel name → (bookings, cancellations, revenue in cents)."""


def _report_totals(csv_text: str) -> Totals:
    """The monthly booking summary's CSV summed per venue over its months."""
    per_venue: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in csv.DictReader(io.StringIO(csv_text, newline="")):
        acc = per_venue[row["venue_name"]]
        acc[0] += int(row["bookings"])
        acc[1] += int(row["cancellations"])
        acc[2] += int(row["revenue_minor"])
    return {venue: (b, c, rev) for venue, (b, c, rev) in per_venue.items()}


def _headline(csv_text: str) -> list[str]:
    """One line per venue of the summary's CSV, in name order: bookings, cancellations with
    the cancellation rate (cancellations ÷ bookings, two decimals) and revenue in EUR."""
    lines = []
    for venue, (b, c, rev) in sorted(_report_totals(csv_text).items()):
        rate = Decimal(c * 100) / Decimal(b) if b else Decimal(0)
        lines.append(
            f"  {venue}: {b:,} bookings, {c:,} cancelled ({rate:.2f} %), "
            f"revenue EUR {Decimal(rev).scaleb(-2):,.2f}"
        )
    return lines


def data_set_totals(path: Path) -> Totals:
    """Per hotel of the data set at ``path`` (gzip CSV), straight from its columns with the
    :mod:`csv` module, apart from the product's replay mapping: bookings = rows with an ADR
    of 0 or more (the one negative ADR is no storable booking), cancellations = rows with
    ``is_canceled`` 1, revenue = ADR × (weekend + week nights) in cents of the rows not
    cancelled, exact (:class:`~decimal.Decimal`)."""
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            adr = Decimal(row["adr"])
            if adr < 0:
                continue
            hotel = acc[row["hotel"]]
            hotel[0] += 1
            if row["is_canceled"] == "1":
                hotel[1] += 1
            else:
                nights = int(row["stays_in_weekend_nights"]) + int(row["stays_in_week_nights"])
                hotel[2] += int(adr * 100 * nights)
    return {hotel: (b, c, rev) for hotel, (b, c, rev) in acc.items()}


def differences(report: Totals, data: Totals) -> list[str]:
    """Where the report's venues (``City Hotel (H2)``) and the data set's hotels (``City
    Hotel``) disagree, one line each; empty when every figure is equal."""
    named = {venue.split(" (")[0]: figures for venue, figures in report.items()}
    return [
        f"  {hotel}: report {named.get(hotel)}, CSV {data.get(hotel)}"
        for hotel in sorted(set(named) | set(data))
        if named.get(hotel) != data.get(hotel)
    ]


async def _run(path: Path) -> int:
    from stream_app.client import request_report_and_wait
    from stream_app.db.migrate import migrate
    from stream_app.lag import wait_for_lag_zero
    from stream_app.replay.produce import replay_hotel_bookings
    from stream_app.settings import load_settings
    from stream_app.topics import WEDDING_BOOKINGS, prepare_topics

    settings = load_settings()
    state = manager.default_state_dir()
    # the worker's tables are derived state: a folder left by an earlier demo may describe
    # topics the services no longer hold, so each demo's worker starts from the changelogs
    shutil.rmtree(state / "demo-worker", ignore_errors=True)
    # and its log is this run's alone: a failure's "last 40 lines" showed an earlier run's
    # lines among its own (a new user's trial)
    (state / "demo-worker.log").unlink(missing_ok=True)
    await prepare_topics(settings)
    await migrate(settings.postgres_owner_dsn)  # a worker never migrates (no owner login)
    worker = start_worker(
        kafka_bootstrap=settings.kafka_bootstrap,
        postgres_dsn=settings.postgres_dsn,
        data_dir=state / "demo-worker",
        log_path=state / "demo-worker.log",
        artifact_dir=settings.artifact_dir,
        redis_url=settings.redis_url,
        dev_mode=True,  # the demo signs its tokens with the public development secret
    )
    try:
        print(f"worker started (pid {worker.process.pid}, HTTP {worker.url}); waiting for it")
        await worker.wait_ready(timeout_s=120)
        t0 = time.perf_counter()
        summary = await replay_hotel_bookings(settings, path)
        print(
            f"replayed {summary.events:,} events ({summary.bookings:,} bookings, "
            f"{summary.cancellations:,} cancellations) from {path}"
        )
        await wait_for_lag_zero(settings.kafka_bootstrap, settings.app_id, WEDDING_BOOKINGS, 900)
        took = time.perf_counter() - t0
        print(
            f"all events folded into the tables in {took:.1f} s "
            f"({summary.events / took:,.0f} events/s, replay included)"
        )
        status = await request_report_and_wait(
            settings,
            organization_id="hotel-demand-pt",
            report_type="monthly_booking_summary",
            date_from=date(2015, 7, 1),
            date_to=date(2017, 8, 31),
            output_formats=["csv", "json"],
            user_id="demo",
        )
        print(f"report {status.report_id}: {status.status} in {status.processing_ms:.0f} ms")
        if status.status != "completed":
            print(f"  cause: {status.error}")
            return 1
        for a in status.artifacts:
            print(
                f"  {a.format}: {a.path} ({a.size_bytes:,} bytes, {a.rows} rows, sha256 {a.sha256})"
            )
            print(f"      {a.uri}")
        csv_link = next(a for a in status.artifacts if a.format == "csv")
        print("headline figures (arrivals 2015-07 .. 2017-08):")
        # the file on disk is encrypted: read it as a download does
        pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=1)
        try:
            reader = await open_artifact(
                settings.artifact_dir, status.organization_id, csv_link.path, KeyRing(pool)
            )
            csv_text = (await asyncio.to_thread(reader.read_all)).decode("utf-8-sig")
        finally:
            await pool.close()
        for line in _headline(csv_text):
            print(line)
        expected = await asyncio.to_thread(data_set_totals, path)
        wrong = differences(_report_totals(csv_text), expected)
        if wrong:
            print("DIFFERENT from the figures computed straight from the CSV:", *wrong, sep="\n")
            return 1
        print(
            "equal to the figures computed straight from the CSV"
            " (rows, is_canceled, ADR × nights; the negative-ADR row left out)"
        )
        return 0
    finally:
        worker.stop()


def run_demo(path: Path, *, keep_services: bool = False) -> int:
    """Run the demo on the CSV at ``path``; return the process exit code."""
    if not path.is_file():
        print(f"error: path: {path} is not a file (the hotel_bookings.csv.gz data set)")
        return 2
    ran_before = manager.status(None).all_running  # started by `services up`: left running
    if ran_before:
        print("using the Kafka, PostgreSQL and Redis that `services up` started")
    else:
        print("starting Kafka, PostgreSQL and Redis (a first run fetches Kafka from Maven Central)")
    services = manager.up(None)
    os.environ["KAFKA_BOOTSTRAP"] = services.kafka_bootstrap
    os.environ["POSTGRES_DSN"] = services.app_dsn
    os.environ["POSTGRES_SYSTEM_DSN"] = services.system_dsn
    os.environ["POSTGRES_OWNER_DSN"] = services.owner_dsn
    os.environ["WEDDING_REDIS_URL"] = services.redis_url
    os.environ["WEDDING_DEV_MODE"] = "1"
    print(f"  KAFKA_BOOTSTRAP={services.kafka_bootstrap}\n  POSTGRES_DSN={services.app_dsn}")
    try:
        return asyncio.run(_run(path))
    finally:
        if ran_before:
            print("services left running (they ran before the demo; `services down` stops them)")
        elif not keep_services:
            manager.down(None)
            print("services stopped")
