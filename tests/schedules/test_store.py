"""Schedules in PostgreSQL: CRUD, tenant isolation, exactly-once claiming, catch-up,
expiration, minimum interval, and the scheduler tick (real PostgreSQL cluster)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from stream_app.crypto.keyring import KeyRing
from stream_app.db.tenancy import tenant_transaction
from stream_app.delivery.targets import EmailTarget, RetryPolicy, WebhookTarget
from stream_app.schedules.model import RecipientFilter, Schedule, ScheduleValidationError
from stream_app.schedules.runner import run_scheduler_tick, scheduler_loop
from stream_app.schedules.sealing import unseal_schedule
from stream_app.schedules.store import (
    ScheduleExistsError,
    ScheduleLimitError,
    ScheduleNotFoundError,
    claim_due_runs,
    create_schedule,
    delete_schedule,
    find_run_for_report,
    get_schedule,
    insert_run,
    list_runs,
    list_schedules,
    pause_schedule,
    resume_schedule,
    update_schedule,
)
from stream_app.schemas.reports import ReportRequest
from tests.schedules.builders import schedule

T0 = datetime(2031, 1, 6, 9, 0, 30, tzinfo=UTC)  # a Monday, 30 s past a minute


def minute(n: int) -> datetime:
    """The n-th whole minute after T0's minute (T0 = 09:00:30, minute(1) = 09:01:00)."""
    return T0.replace(second=0) + timedelta(minutes=n)


def make(org: str, sid: str, **overrides: Any) -> Schedule:
    """An every-minute schedule of the previous day's summary (csv and json), London time."""
    fields = {
        "date_range": "previous_day",
        "output_formats": ("csv", "json"),
        "cron": "* * * * *",
        "time_zone": "Europe/London",
    }
    return schedule(org, sid, **{**fields, **overrides})


NewSchedule = Callable[..., Awaitable[Schedule]]


@pytest.fixture
def new_schedule(db: asyncpg.Pool, new_org: Callable[[], Awaitable[str]]) -> NewSchedule:
    """Factory: ``await new_schedule(sid, **overrides)`` creates :func:`make`'s schedule
    ``sid`` of a new organisation at T0 and returns it."""

    async def create(sid: str, **overrides: Any) -> Schedule:
        s = make(await new_org(), sid, **overrides)
        async with db.acquire() as conn:
            await create_schedule(conn, s, T0)
        return s

    return create


async def runs_by_fire(pool: asyncpg.Pool, sid: str) -> Counter[datetime]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT fire_time FROM schedule_runs WHERE schedule_id = $1", sid)
    return Counter(r["fire_time"] for r in rows)


# --- CRUD -------------------------------------------------------------------------------


async def test_crud_round_trip(db: asyncpg.Pool, new_org: Any) -> None:
    org = await new_org()
    hook = WebhookTarget(url="https://hooks.example.org/in", secret="0123456789abcdef-secret")
    s = make(
        org,
        "crud-1",
        cron="0 8 * * MON",
        delivery=hook,
        retry=RetryPolicy(max_attempts=5, base_backoff_s=2.5, max_backoff_s=60),
        expires_at=T0 + timedelta(days=365),
        skip_if_empty=True,
        min_interval_seconds=600,
        priority="high",
    )
    async with db.acquire() as conn:
        created = await create_schedule(conn, s, T0)
        # Monday 6 Jan 2031 09:00:30 UTC is past 08:00 GMT: next Monday 13 Jan 08:00 UTC
        assert created.next_fire_time == datetime(2031, 1, 13, 8, 0, tzinfo=UTC)
        assert created.last_fire_time is None
        got = await get_schedule(conn, org, "crud-1")
        assert isinstance(got.schedule.delivery, WebhookTarget)
        assert got.schedule.delivery.secret.startswith("wedding-sealed:v1:")  # sealed at rest
        # every field, secrets included (opened as the delivery does), survives the round trip
        assert await unseal_schedule(got.schedule, KeyRing(db)) == s
        assert [x.schedule.schedule_id for x in await list_schedules(conn, org)] == ["crud-1"]

        with pytest.raises(ScheduleExistsError):
            await create_schedule(conn, s, T0)

        changed = replace(s, cron="30 7 * * *", time_zone="America/New_York")
        updated = await update_schedule(conn, changed, T0 + timedelta(hours=1))
        # 10:00:30 UTC = 05:00:30 EST; next 07:30 EST = 12:30 UTC the same day
        assert updated.next_fire_time == datetime(2031, 1, 6, 12, 30, tzinfo=UTC)
        stored = (await get_schedule(conn, org, "crud-1")).schedule
        assert await unseal_schedule(stored, KeyRing(db)) == changed

        paused = await pause_schedule(conn, org, "crud-1", T0)
        assert paused.schedule.paused and paused.next_fire_time is None
        resumed = await resume_schedule(conn, org, "crud-1", T0 + timedelta(days=3))
        # resumed Thu 9 Jan 09:00:30 UTC: next 07:30 EST = 12:30 UTC that day (no catch-up)
        assert not resumed.schedule.paused
        assert resumed.next_fire_time == datetime(2031, 1, 9, 12, 30, tzinfo=UTC)

        assert await delete_schedule(conn, org, "crud-1") is True
        assert await delete_schedule(conn, org, "crud-1") is False
        with pytest.raises(ScheduleNotFoundError):
            await get_schedule(conn, org, "crud-1")


async def test_expiration_in_the_past_is_rejected(db: asyncpg.Pool, new_org: Any) -> None:
    org = await new_org()
    async with db.acquire() as conn:
        with pytest.raises(ScheduleValidationError) as err:
            await create_schedule(conn, make(org, "old", expires_at=T0 - timedelta(days=1)), T0)
    assert err.value.field == "expires_at"


async def test_tenants_cannot_see_each_others_schedules(db: asyncpg.Pool, new_org: Any) -> None:
    org_a, org_b = await new_org(), await new_org()
    async with db.acquire() as conn:
        await create_schedule(conn, make(org_a, "tenant-a"), T0)
        with pytest.raises(ScheduleNotFoundError):
            await get_schedule(conn, org_b, "tenant-a")
        assert await list_schedules(conn, org_b) == []
        assert await delete_schedule(conn, org_b, "tenant-a") is False
        # RLS itself, without the query layer's predicate:
        async with tenant_transaction(conn, org_b):
            assert await conn.fetchval("SELECT count(*) FROM schedules") == 0
        async with tenant_transaction(conn, org_a):
            assert await conn.fetchval("SELECT count(*) FROM schedules") == 1
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DELETE FROM schedule_runs")


# --- claiming ---------------------------------------------------------------------------


async def test_two_concurrent_claimers_one_run_per_fire_time(
    db: asyncpg.Pool, new_schedule: NewSchedule
) -> None:
    await new_schedule("every-minute")
    claimed: dict[str, list[datetime]] = {"w1": [], "w2": []}

    async def claimer(worker: str, conn: asyncpg.Connection, now: datetime) -> None:
        runs = await claim_due_runs(conn, now, worker_id=worker)
        claimed[worker].extend(
            r.fire_time for r in runs if r.schedule.schedule_id == "every-minute"
        )

    async with db.acquire() as c1, db.acquire() as c2:
        # 8 simulated minutes in 15 s steps; both workers claim at every step, concurrently
        for i in range(1, 8 * 4 + 1):
            now = T0 + timedelta(seconds=15 * i)
            await asyncio.gather(claimer("w1", c1, now), claimer("w2", c2, now))

    expected = [minute(n) for n in range(1, 9)]  # 09:01 … 09:08 (T0 + 480 s = 09:08:30)
    assert sorted(claimed["w1"] + claimed["w2"]) == expected
    assert await runs_by_fire(db, "every-minute") == Counter(expected)


async def test_two_worker_processes_one_run_per_fire_time(
    db: asyncpg.Pool, new_schedule: NewSchedule, pg_dsn: str
) -> None:
    await new_schedule("two-procs")
    script = Path(__file__).with_name("claimer_proc.py")
    go_at = time.time() + 2.0  # both processes have imported everything by then
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            pg_dsn,
            worker,
            T0.isoformat(),
            "5",
            "120",
            str(go_at),
            stdout=asyncio.subprocess.PIPE,
        )
        for worker in ("p1", "p2")
    ]
    outputs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    fired = [datetime.fromisoformat(t) for out, _ in outputs for t in json.loads(out)]
    # 120 steps of 5 s = 10 minutes after 09:00:30 → fire times 09:01 … 09:10
    expected = [minute(n) for n in range(1, 11)]
    assert sorted(fired) == expected
    assert await runs_by_fire(db, "two-procs") == Counter(expected)


async def test_the_unique_constraint_alone_gives_one_run(
    db: asyncpg.Pool, new_schedule: NewSchedule
) -> None:
    s = await new_schedule("unique")
    fire = minute(1)

    async def insert(worker: str) -> bool:
        async with db.acquire() as conn:
            run = await insert_run(conn, s, fire, missed_from=fire, now=fire, worker_id=worker)
        return run is not None

    results = await asyncio.gather(*(insert(f"w{i}") for i in range(6)))
    assert sorted(results) == [False] * 5 + [True]
    assert await runs_by_fire(db, "unique") == Counter({fire: 1})


async def test_catch_up_after_downtime_is_one_run_for_the_latest_fire(
    db: asyncpg.Pool, new_schedule: NewSchedule
) -> None:
    await new_schedule("catch-up")
    async with db.acquire() as conn:
        first = await claim_due_runs(conn, minute(1) + timedelta(seconds=1))
        assert [r.fire_time for r in first] == [minute(1)]
        # down from 09:01:01 to 09:45:10: 44 missed fire times (09:02 … 09:45)
        back = await claim_due_runs(conn, minute(45) + timedelta(seconds=10))
        assert len(back) == 1
        assert back[0].fire_time == minute(45)
        assert back[0].missed_from == minute(2)
        assert await claim_due_runs(conn, minute(45) + timedelta(seconds=50)) == []
        nxt = await claim_due_runs(conn, minute(46))
        assert [r.fire_time for r in nxt] == [minute(46)]
    assert await runs_by_fire(db, "catch-up") == Counter([minute(1), minute(45), minute(46)])


async def test_catch_up_of_a_daily_schedule_reports_on_the_latest_period(
    db: asyncpg.Pool, new_schedule: NewSchedule
) -> None:
    await new_schedule("daily", cron="0 6 * * *")
    async with db.acquire() as conn:
        # down for 10 days: fire times 7 Jan … 16 Jan 06:00 were missed
        (run,) = await claim_due_runs(conn, datetime(2031, 1, 16, 7, 0, tzinfo=UTC))
    assert run.fire_time == datetime(2031, 1, 16, 6, 0, tzinfo=UTC)
    assert run.missed_from == datetime(2031, 1, 7, 6, 0, tzinfo=UTC)
    assert (run.date_from, run.date_to) == (date(2031, 1, 15), date(2031, 1, 15))


async def test_expired_schedule_stops(db: asyncpg.Pool, new_org: Any) -> None:
    org = await new_org()
    s = make(org, "expiring", expires_at=T0 + timedelta(seconds=90))  # 09:02:00
    async with db.acquire() as conn:
        await create_schedule(conn, s, T0)
        claimed = []
        for i in range(1, 11):
            claimed += await claim_due_runs(conn, T0 + timedelta(seconds=30 * i))
        stored = await get_schedule(conn, org, "expiring")
    # 09:01 runs; 09:02 is at the expiration (not before it): no run
    assert [r.fire_time for r in claimed] == [minute(1)]
    assert stored.next_fire_time is None


async def test_expired_schedule_created_then_claimed_late_gives_none(
    db: asyncpg.Pool, new_org: Any
) -> None:
    org = await new_org()
    s = make(org, "expired-late", cron="0 12 * * *", expires_at=T0 + timedelta(hours=1))
    async with db.acquire() as conn:
        created = await create_schedule(conn, s, T0)
        assert created.next_fire_time is None  # its first fire (12:00) is after 10:00:30
        assert await claim_due_runs(conn, T0 + timedelta(days=3)) == []


async def test_min_interval_is_respected(db: asyncpg.Pool, new_schedule: NewSchedule) -> None:
    await new_schedule("spaced", min_interval_seconds=180)
    async with db.acquire() as conn:
        fired = []
        for i in range(1, 12 * 2 + 1):  # 12 minutes in 30 s steps
            fired += [
                r.fire_time for r in await claim_due_runs(conn, T0 + timedelta(seconds=30 * i))
            ]
    assert fired == [minute(1), minute(4), minute(7), minute(10)]


async def test_paused_schedule_is_not_claimed(db: asyncpg.Pool, new_schedule: NewSchedule) -> None:
    org = (await new_schedule("paused", paused=True)).organization_id
    async with db.acquire() as conn:
        assert await claim_due_runs(conn, T0 + timedelta(minutes=5)) == []
        await resume_schedule(conn, org, "paused", T0 + timedelta(minutes=5))
        (run,) = await claim_due_runs(conn, T0 + timedelta(minutes=6))
    assert run.fire_time == minute(6)  # resumed at 09:05:30: 09:06, no catch-up of the pause
    assert run.missed_from == minute(6)


async def test_naive_now_is_rejected(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        with pytest.raises(ValueError, match="naive"):
            await claim_due_runs(conn, datetime(2031, 1, 1))  # noqa: DTZ001


# --- the scheduler tick -----------------------------------------------------------------


async def test_tick_submits_fresh_report_requests(db: asyncpg.Pool, new_org: Any) -> None:
    org = await new_org()
    s = make(org, "monthly", cron="0 8 1 * *", date_range="previous_month")
    async with db.acquire() as conn:
        await create_schedule(conn, s, datetime(2031, 3, 20, tzinfo=UTC))
    sent: list[ReportRequest] = []

    async def submit(req: ReportRequest) -> None:
        sent.append(req)

    now = datetime(2031, 4, 1, 7, 0, 5, tzinfo=UTC)  # 08:00:05 BST on 1 April
    (run,) = await run_scheduler_tick(db, now, submit, worker_id="w1")
    assert run.status == "submitted" and run.cache_strategy == "skip"
    assert run.fire_time == datetime(2031, 4, 1, 7, 0, tzinfo=UTC)
    (req,) = sent
    # random, unguessable, and the one stored in the run row
    assert re.fullmatch(r"sched-[0-9a-f]{32}", req.report_id)
    assert [p.report_id for p in run.reports] == [req.report_id]
    assert (req.date_from, req.date_to) == (date(2031, 3, 1), date(2031, 3, 31))
    assert req.organization_id == org and req.user_id == "user-1"
    assert req.output_formats == ["csv", "json"] and req.requested_at == now
    async with db.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, cache_strategy, claimed_by FROM schedule_runs WHERE id = $1", run.run_id
        )
        assert dict(row) == {"status": "submitted", "cache_strategy": "skip", "claimed_by": "w1"}
        found = await find_run_for_report(conn, org, req.report_id)
        assert found is not None and found.run_id == run.run_id
        assert await find_run_for_report(conn, org, "sched-monthly-nope") is None
        other = await new_org()  # another organisation never finds this run by its id
        assert await find_run_for_report(conn, other, req.report_id) is None
    assert await run_scheduler_tick(db, now + timedelta(seconds=30), submit) == []
    assert len(sent) == 1


async def test_failed_submission_is_resubmitted_with_the_same_report_id(
    db: asyncpg.Pool, new_schedule: NewSchedule
) -> None:
    org = (await new_schedule("flaky", cron="0 * * * *")).organization_id
    attempts: list[str] = []

    async def broken(req: ReportRequest) -> None:
        attempts.append(req.report_id)
        raise ConnectionError("broker down")

    async def working(req: ReportRequest) -> None:
        attempts.append(req.report_id)

    at_ten = datetime(2031, 1, 6, 10, 0, 1, tzinfo=UTC)
    assert await run_scheduler_tick(db, at_ten, broken, resubmit_after_s=60) == []
    # before resubmit_after_s nothing is retried; after it, the same run and id are
    assert (
        await run_scheduler_tick(db, at_ten + timedelta(seconds=30), working, resubmit_after_s=60)
        == []
    )
    (run,) = await run_scheduler_tick(
        db, at_ten + timedelta(seconds=61), working, resubmit_after_s=60
    )
    assert run.fire_time == datetime(2031, 1, 6, 10, 0, tzinfo=UTC)
    assert len(attempts) == 2 and attempts[0] == attempts[1]  # the id stored with the run
    assert [p.report_id for p in run.reports] == attempts[:1]
    async with db.acquire() as conn:
        (listed,) = await list_runs(conn, org, "flaky")
    assert listed.status == "submitted"


async def test_audiences_become_separate_reports(db: asyncpg.Pool, new_org: Any) -> None:
    org = await new_org()
    email = EmailTarget(recipients=("boss@x.org", "venue1@x.org"))
    s = make(
        org,
        "split",
        cron="0 * * * *",
        delivery=email,
        recipient_filters=(
            RecipientFilter(recipient="venue1@x.org", field="venue_id", values=("v1",)),
        ),
    )
    async with db.acquire() as conn:
        await create_schedule(conn, s, T0)
    sent: list[str] = []

    async def submit(req: ReportRequest) -> None:
        sent.append(req.report_id)

    (run,) = await run_scheduler_tick(db, datetime(2031, 1, 6, 10, 0, 1, tzinfo=UTC), submit)
    assert sent == [p.report_id for p in run.reports] and len(set(sent)) == 2
    assert [p.audience.recipients for p in run.reports] == [("boss@x.org",), ("venue1@x.org",)]
    assert run.reports[1].audience.filters == (("venue_id", ("v1",)),)


async def test_scheduler_loop_ticks_until_stopped(
    db: asyncpg.Pool, new_schedule: NewSchedule
) -> None:
    org = (await new_schedule("loop")).organization_id
    stop = asyncio.Event()
    simulated = [T0]
    sent: list[str] = []

    def clock() -> datetime:
        simulated[0] += timedelta(seconds=60)  # each tick is one simulated minute later
        return simulated[0]

    async def submit(req: ReportRequest) -> None:
        sent.append(req.report_id)
        if len(sent) == 3:
            stop.set()

    await asyncio.wait_for(scheduler_loop(db, submit, 0.01, stop, clock=clock), timeout=10)
    async with db.acquire() as conn:
        runs = await list_runs(conn, org, "loop")
    assert [r.fire_time for r in sorted(runs, key=lambda r: r.fire_time)] == [
        datetime(2031, 1, 6, 9, n, tzinfo=UTC) for n in (1, 2, 3)
    ]
    assert sorted(sent) == sorted(r.reports[0].report_id for r in runs)


async def test_an_unreadable_schedule_does_not_block_the_others(
    db: asyncpg.Pool, new_schedule: NewSchedule, caplog: pytest.LogCaptureFixture
) -> None:
    org = (await new_schedule("broken")).organization_id
    async with db.acquire() as conn:
        await create_schedule(conn, make(org, "healthy"), T0)
        await conn.execute("UPDATE schedules SET time_zone = 'Mars/Base' WHERE id = 'broken'")
        runs = await claim_due_runs(conn, minute(1))
        broken_next = await conn.fetchval(
            "SELECT next_fire_time FROM schedules WHERE id = 'broken'"
        )
    assert [r.schedule.schedule_id for r in runs] == ["healthy"]
    assert broken_next is None
    assert "broken cannot be read" in caplog.text


async def test_min_interval_holds_across_an_update(
    db: asyncpg.Pool, new_schedule: NewSchedule
) -> None:
    s = await new_schedule("spaced-upd", min_interval_seconds=180)
    async with db.acquire() as conn:
        (first,) = await claim_due_runs(conn, minute(1) + timedelta(seconds=1))
        # an update restarts firing from "now" (09:01:30): the next fire time is 09:02 ...
        updated = await update_schedule(
            conn, replace(s, date_range="last_n_days:7"), minute(1) + timedelta(seconds=30)
        )
        assert updated.next_fire_time == minute(2)
        # ... but 09:02 and 09:03 are within 180 s of the 09:01 run: skipped
        fired = [first.fire_time]
        for n in range(2, 6):
            fired += [
                r.fire_time for r in await claim_due_runs(conn, minute(n) + timedelta(seconds=1))
            ]
    assert fired == [minute(1), minute(4)]


# --- one tenant's many schedules ----------------------------------------------------------


async def test_claims_take_every_organisations_earliest_due_schedule_first(
    db: asyncpg.Pool, new_org: Callable[[], Awaitable[str]]
) -> None:
    """An attacker round: one tenant's 510 every-minute schedules held another tenant's
    schedule due the same minute back by 45-56 s (claims by due time, 100 a tick). Claims
    now go in turns: each organisation's earliest due schedule before any one's second."""
    start = datetime(2030, 3, 4, 9, 0, 30, tzinfo=UTC)  # before every other test's schedules
    flooder, victim = await new_org(), await new_org()
    async with db.acquire() as conn:
        for n in range(30):
            await create_schedule(conn, make(flooder, f"flood-{n:02d}"), start)
        await create_schedule(conn, make(victim, "victim"), start)
    try:
        async with db.acquire() as conn:
            due = start.replace(second=0) + timedelta(minutes=1, seconds=1)
            first = await claim_due_runs(conn, due, limit=5)
            rest = await claim_due_runs(conn, due, limit=100)
        orgs = [r.schedule.organization_id for r in first]
        assert sorted(orgs[:2]) == sorted([flooder, victim])  # turn 1: one each
        assert orgs[2:] == [flooder] * 3
        assert [r.schedule.organization_id for r in rest] == [flooder] * 26  # nothing twice
    finally:  # other tests claim every due schedule of the database: leave none of these
        async with db.acquire() as conn:
            await conn.execute(
                "DELETE FROM schedules WHERE organization_id = ANY($1::text[])", [flooder, victim]
            )


async def test_an_organisation_holds_at_most_its_schedules_however_fast_it_creates(
    db: asyncpg.Pool, new_org: Callable[[], Awaitable[str]]
) -> None:
    org = await new_org()

    async def create(n: int) -> bool:
        async with db.acquire() as conn:
            try:
                await create_schedule(conn, make(org, f"many-{n}"), T0, max_schedules=3)
            except ScheduleLimitError as exc:
                assert str(exc) == (
                    "the organisation holds 3 schedules, the most it may"
                    " (WEDDING_MAX_SCHEDULES_PER_ORG); delete one first"
                )
                return False
        return True

    made = await asyncio.gather(*(create(n) for n in range(10)))
    assert sorted(made) == [False] * 7 + [True] * 3
    async with db.acquire() as conn:
        assert len(await list_schedules(conn, org)) == 3
        await delete_schedule(conn, org, (await list_schedules(conn, org))[0].schedule.schedule_id)
        await conn.execute(
            "UPDATE schedules SET paused = true WHERE organization_id = $1", org
        )  # paused ones count too
    assert await create(10) is True
    assert await create(11) is False
    async with db.acquire() as conn:  # at the limit, a taken id is still its own conflict
        with pytest.raises(ScheduleExistsError):
            await create_schedule(conn, make(org, "many-10"), T0, max_schedules=3)
