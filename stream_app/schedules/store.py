"""Schedules and their runs in PostgreSQL (migration ``002_schedules.sql``).

CRUD functions are tenant-scoped: they run in :func:`stream_app.db.tenancy.tenant_transaction`,
so row-level security is a second wall behind the ``organization_id`` predicates. Claiming due
runs is the scheduler's cross-tenant path and runs on the connection's own role.

Firing policy (see :func:`claim_due_runs`):

* **Exactly once.** A run is a row of ``schedule_runs`` with ``UNIQUE (organization_id,
  schedule_id, fire_time)``. Claimers lock the due schedule rows with ``FOR UPDATE SKIP
  LOCKED`` and insert with ``ON CONFLICT DO NOTHING``; the lock makes concurrent workers
  skip a schedule another worker is handling, and the constraint guarantees one run per fire
  time even if the lock were bypassed. State lives in the database, so restarts neither
  repeat nor lose a run.
* **Catch-up.** After downtime a schedule gets **one** run for the whole missed period: the
  run's ``fire_time`` is the **latest** missed fire time (its report covers the period that
  fire time asks for) and ``missed_from`` the earliest. The missed fire times in between
  produce no runs.
* **Minimum interval.** A fire time less than ``min_interval_seconds`` after the fire time of
  the schedule's previous run is skipped (no run, not deferred).
* **Expiration.** Fire times at or after ``expires_at`` never run; a fire time before it
  that was missed in downtime is still caught up. When no fire time before ``expires_at`` is
  left, ``next_fire_time`` becomes NULL and the schedule stops.
* **Unreadable schedule.** A stored schedule that no longer validates (say its zone left the
  tz database) is logged and stops firing (``next_fire_time`` NULL); the others go on.
* **Pause.** A paused schedule is not claimed; resuming starts from the first fire time after
  the resume (the paused period is not caught up).
* **Identity.** Schedules and runs are keyed by ``(organization_id, id)`` (migration 008):
  two organisations may both own schedule ``monthly``. A run's report ids are random
  (:func:`plan_reports`), drawn by the claimer and stored in the run row by the same insert
  that claims it, so they cannot be guessed and a re-submission re-uses them.
* **Runs that never complete.** A run ``submitted`` longer than a bound while some of its
  reports has no delivery outcome is marked ``failed`` with the cause
  (:func:`fail_stale_submitted_runs`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import asyncpg
import orjson

from stream_app.crypto.keys import current_data_key, load_master_keys
from stream_app.db.tenancy import tenant_transaction
from stream_app.delivery.sealing import has_secrets
from stream_app.delivery.targets import RetryPolicy, target_from_parts, target_parts
from stream_app.delivery.worker import default_worker_id
from stream_app.errors import WeddingError
from stream_app.schedules.cron import latest_fire_time, next_fire_time
from stream_app.schedules.model import Audience, RecipientFilter, Schedule, report_dates
from stream_app.schedules.sealing import seal_schedule

log = logging.getLogger(__name__)

CACHE_STRATEGY: Final = "skip"
"""Scheduled runs always read fresh data; recorded on every run for the report agent."""

RUN_STATUSES = frozenset({"claimed", "submitted", "retrying", "delivered", "skipped", "failed"})
_TINY = timedelta(microseconds=1)


class ScheduleNotFoundError(WeddingError, LookupError):
    """No schedule with this id for this organisation."""

    retriable = False


class ScheduleExistsError(WeddingError, ValueError):
    """A schedule with this id already exists."""

    retriable = False


class ScheduleLimitError(WeddingError, ValueError):
    """The organisation holds the most schedules it may (``limit``)."""

    retriable = False

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the organisation holds {limit} schedules, the most it may"
            " (WEDDING_MAX_SCHEDULES_PER_ORG); delete one first"
        )
        self.limit = limit


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """A schedule as stored, with its firing state.

    Attributes:
        schedule: the validated schedule.
        next_fire_time: the first fire time not yet handled (UTC), ``None`` when it will not
            fire again (expired, or no fire time left).
        last_fire_time: fire time of the latest run (UTC), ``None`` before the first run.
        created_at / updated_at: UTC.
    """

    schedule: Schedule
    next_fire_time: datetime | None
    last_fire_time: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PlannedReport:
    """One report of a run: its request id and who receives it.

    Attributes:
        report_id: the :class:`~stream_app.schemas.reports.ReportRequest` id: ``sched-`` and
            128 random bits in hex (:func:`secrets.token_hex`), drawn when the run is claimed
            and stored in the run row, so nobody can guess it and a re-submitted request
            carries the same id (it is not generated twice).
        audience: recipients and filters.
    """

    report_id: str
    audience: Audience


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """A run of a schedule, claimed by one worker for one fire time.

    Attributes:
        run_id: ``schedule_runs.id``.
        schedule: the schedule (as stored when the run was read).
        fire_time: the fire time (UTC); after downtime the latest missed one.
        missed_from: the earliest fire time this run stands for (= ``fire_time`` normally).
        claimed_at: the ``now`` of the claim (UTC).
        claimed_by: the claiming worker's id.
        status: ``claimed`` → ``submitted`` (→ ``retrying``) → ``delivered`` | ``skipped`` |
            ``failed``.
        cache_strategy: always ``skip`` (fresh data).
        date_from / date_to: the report's inclusive local date range.
        reports: the reports to generate and deliver.
        error: the cause when ``failed``.
    """

    run_id: int
    schedule: Schedule
    fire_time: datetime
    missed_from: datetime
    claimed_at: datetime
    claimed_by: str
    status: str
    cache_strategy: str
    date_from: date
    date_to: date
    reports: tuple[PlannedReport, ...]
    error: str | None = None

    def planned(self, report_id: str) -> PlannedReport:
        """The planned report with ``report_id``.

        Raises:
            KeyError: the run has no such report.
        """
        for planned in self.reports:
            if planned.report_id == report_id:
                return planned
        raise KeyError(f"report_id: {report_id!r} is not part of run {self.run_id}")


# --- (de)serialisation ------------------------------------------------------------------


def _filters_to_db(schedule: Schedule) -> list[dict[str, Any]]:
    return [
        {"recipient": f.recipient, "field": f.field, "values": list(f.values)}
        for f in schedule.recipient_filters
    ]


def _schedule_from_row(row: asyncpg.Record) -> Schedule:
    """Rebuild a schedule from a ``schedules`` row (validation runs again)."""
    return Schedule(
        schedule_id=row["id"],
        organization_id=row["organization_id"],
        created_by=row["created_by"],
        report_type=row["report_type"],
        date_range=row["date_range"],
        output_formats=tuple(row["output_formats"]),
        cron=row["cron"],
        time_zone=row["time_zone"],
        delivery=target_from_parts(
            row["delivery_method"],
            orjson.loads(row["delivery_options"]),
            orjson.loads(row["delivery_secrets"]),
        ),
        retry=RetryPolicy(
            max_attempts=row["retry_max_attempts"],
            base_backoff_s=row["retry_base_backoff_s"],
            max_backoff_s=row["retry_max_backoff_s"],
        ),
        expires_at=row["expires_at"],
        paused=row["paused"],
        skip_if_empty=row["skip_if_empty"],
        min_interval_seconds=row["min_interval_seconds"],
        recipient_filters=tuple(
            RecipientFilter(recipient=f["recipient"], field=f["field"], values=tuple(f["values"]))
            for f in orjson.loads(row["recipient_filters"])
        ),
        priority=row["priority"],
    )


def _stored_from_row(row: asyncpg.Record) -> StoredSchedule:
    return StoredSchedule(
        schedule=_schedule_from_row(row),
        next_fire_time=row["next_fire_time"],
        last_fire_time=row["last_fire_time"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _schedule_params(schedule: Schedule) -> list[Any]:
    method, options, secrets = target_parts(schedule.delivery)
    return [
        schedule.schedule_id,
        schedule.organization_id,
        schedule.created_by,
        schedule.report_type,
        schedule.date_range,
        list(schedule.output_formats),
        schedule.cron,
        schedule.time_zone,
        method,
        orjson.dumps(options).decode(),
        orjson.dumps(secrets).decode(),
        schedule.retry.max_attempts,
        schedule.retry.base_backoff_s,
        schedule.retry.max_backoff_s,
        schedule.expires_at,
        schedule.paused,
        schedule.skip_if_empty,
        schedule.min_interval_seconds,
        orjson.dumps(_filters_to_db(schedule)).decode(),
        schedule.priority,
    ]


_COLUMNS = (
    "id, organization_id, created_by, report_type, date_range, output_formats, cron, time_zone,"
    " delivery_method, delivery_options, delivery_secrets, retry_max_attempts,"
    " retry_base_backoff_s, retry_max_backoff_s, expires_at, paused, skip_if_empty,"
    " min_interval_seconds, recipient_filters, priority"
)
_SELECT = (
    f"SELECT {_COLUMNS}, next_fire_time, last_fire_time, created_at, updated_at FROM schedules"
)


async def _sealed(conn: asyncpg.Connection, schedule: Schedule) -> Schedule:
    """``schedule`` with its delivery secrets sealed under the organisation's current data
    key (:mod:`stream_app.schedules.sealing`); the stored and returned schedule hold no
    plaintext secret."""
    if has_secrets(schedule.delivery):
        key = await current_data_key(conn, load_master_keys(), schedule.organization_id)
        return seal_schedule(schedule, key)
    return schedule


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: a naive datetime is not accepted; give a UTC offset")


def _first_fire_after(schedule: Schedule, after: datetime) -> datetime | None:
    """The first fire time after ``after`` that is before the expiration, else None."""
    upcoming = next_fire_time(schedule.cron, schedule.time_zone, after)
    if upcoming is None or (schedule.expires_at is not None and upcoming >= schedule.expires_at):
        return None
    return upcoming


# --- CRUD (tenant-scoped) ---------------------------------------------------------------


async def create_schedule(
    conn: asyncpg.Connection,
    schedule: Schedule,
    now: datetime,
    *,
    max_schedules: int | None = None,
) -> StoredSchedule:
    """Store a new schedule; its first fire time is the first one strictly after ``now``.

    Schedule ids are per organisation: another organisation's ``monthly`` does not conflict.

    Args:
        conn: a connection (the write runs as the tenant role of ``schedule``'s organisation).
        schedule: the schedule.
        now: the current time (UTC-aware).
        max_schedules: the most schedules the organisation may hold with this one (None: no
            limit); creations of one organisation are serialised to count them.

    Raises:
        ScheduleValidationError: ``expires_at`` is not after ``now``.
        ScheduleExistsError: the organisation already has a schedule with this id.
        ScheduleLimitError: the organisation already holds ``max_schedules``.
        asyncpg.ForeignKeyViolationError: the organisation does not exist.
    """
    _require_aware("now", now)
    schedule.check_at(now)
    upcoming = None if schedule.paused else _first_fire_after(schedule, now)
    placeholders = ", ".join(f"${i}" for i in range(1, 21))
    schedule = await _sealed(conn, schedule)
    try:
        async with tenant_transaction(conn, schedule.organization_id):
            if max_schedules is not None:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended('wedding-schedules/' || $1, 0))",
                    schedule.organization_id,
                )
                held = await conn.fetchval(
                    "SELECT count(*) FROM schedules WHERE organization_id = $1",
                    schedule.organization_id,
                )
                taken = await conn.fetchval(
                    "SELECT true FROM schedules WHERE organization_id = $1 AND id = $2",
                    schedule.organization_id,
                    schedule.schedule_id,
                )
                if held >= max_schedules and not taken:  # a taken id: the conflict below
                    raise ScheduleLimitError(max_schedules)
            row = await conn.fetchrow(
                f"INSERT INTO schedules ({_COLUMNS}, next_fire_time, created_at, updated_at)"
                f" VALUES ({placeholders}, $21, $22, $22)"
                " RETURNING next_fire_time, last_fire_time, created_at, updated_at",
                *_schedule_params(schedule),
                upcoming,
                now,
            )
    except asyncpg.UniqueViolationError as exc:
        raise ScheduleExistsError(f"schedule_id: {schedule.schedule_id!r} already exists") from exc
    assert row is not None
    return StoredSchedule(
        schedule, row["next_fire_time"], row["last_fire_time"], row["created_at"], row["updated_at"]
    )


async def get_schedule(
    conn: asyncpg.Connection, organization_id: str, schedule_id: str
) -> StoredSchedule:
    """Read one schedule of ``organization_id``.

    Raises:
        ScheduleNotFoundError: no such schedule for this organisation.
    """
    async with tenant_transaction(conn, organization_id):
        row = await conn.fetchrow(
            f"{_SELECT} WHERE organization_id = $1 AND id = $2", organization_id, schedule_id
        )
    if row is None:
        raise ScheduleNotFoundError(f"schedule_id: {schedule_id!r} does not exist")
    return _stored_from_row(row)


async def list_schedules(conn: asyncpg.Connection, organization_id: str) -> list[StoredSchedule]:
    """All schedules of ``organization_id``, by id."""
    async with tenant_transaction(conn, organization_id):
        rows = await conn.fetch(
            f"{_SELECT} WHERE organization_id = $1 ORDER BY id", organization_id
        )
    return [_stored_from_row(r) for r in rows]


async def update_schedule(
    conn: asyncpg.Connection, schedule: Schedule, now: datetime
) -> StoredSchedule:
    """Replace a schedule's configuration; firing restarts after ``now`` (UTC-aware).

    The run history and ``last_fire_time`` are kept (the minimum interval still applies).

    Raises:
        ScheduleValidationError: ``expires_at`` is not after ``now``.
        ScheduleNotFoundError: no such schedule for this organisation.
    """
    _require_aware("now", now)
    schedule.check_at(now)
    upcoming = None if schedule.paused else _first_fire_after(schedule, now)
    sets = ", ".join(
        f"{name.strip()} = ${i}" for i, name in enumerate(_COLUMNS.split(",")[2:], start=3)
    )
    schedule = await _sealed(conn, schedule)
    async with tenant_transaction(conn, schedule.organization_id):
        row = await conn.fetchrow(
            f"UPDATE schedules SET {sets}, next_fire_time = $21, updated_at = $22"
            " WHERE id = $1 AND organization_id = $2"
            " RETURNING next_fire_time, last_fire_time, created_at, updated_at",
            *_schedule_params(schedule),
            upcoming,
            now,
        )
    if row is None:
        raise ScheduleNotFoundError(f"schedule_id: {schedule.schedule_id!r} does not exist")
    return StoredSchedule(
        schedule, row["next_fire_time"], row["last_fire_time"], row["created_at"], row["updated_at"]
    )


async def set_paused(
    conn: asyncpg.Connection, organization_id: str, schedule_id: str, paused: bool, now: datetime
) -> StoredSchedule:
    """Pause or resume a schedule. Resuming fires next at the first fire time after ``now``.

    Raises:
        ScheduleNotFoundError: no such schedule for this organisation.
    """
    _require_aware("now", now)
    stored = await get_schedule(conn, organization_id, schedule_id)
    upcoming = None if paused else _first_fire_after(stored.schedule, now)
    async with tenant_transaction(conn, organization_id):
        row = await conn.fetchrow(
            "UPDATE schedules SET paused = $3, next_fire_time = $4, updated_at = $5"
            " WHERE organization_id = $1 AND id = $2 RETURNING id",
            organization_id,
            schedule_id,
            paused,
            upcoming,
            now,
        )
    if row is None:
        raise ScheduleNotFoundError(f"schedule_id: {schedule_id!r} does not exist")
    return await get_schedule(conn, organization_id, schedule_id)


async def pause_schedule(
    conn: asyncpg.Connection, organization_id: str, schedule_id: str, now: datetime
) -> StoredSchedule:
    """Pause a schedule (see :func:`set_paused`)."""
    return await set_paused(conn, organization_id, schedule_id, True, now)


async def resume_schedule(
    conn: asyncpg.Connection, organization_id: str, schedule_id: str, now: datetime
) -> StoredSchedule:
    """Resume a schedule; the paused period is not caught up (see :func:`set_paused`)."""
    return await set_paused(conn, organization_id, schedule_id, False, now)


async def delete_schedule(conn: asyncpg.Connection, organization_id: str, schedule_id: str) -> bool:
    """Delete a schedule and its runs; the delivery log rows stay (their run_id becomes NULL).

    Returns:
        Whether a schedule was deleted.
    """
    async with tenant_transaction(conn, organization_id):
        status = await conn.execute(
            "DELETE FROM schedules WHERE organization_id = $1 AND id = $2",
            organization_id,
            schedule_id,
        )
    return bool(status == "DELETE 1")


# --- runs -------------------------------------------------------------------------------


SCHEDULED_ID_BYTES = 16
"""Random bytes of a scheduled report id (128 bits: not guessable, no collisions)."""


def new_scheduled_report_id() -> str:
    """A fresh scheduled report id, ``sched-<32 hex digits>`` (:mod:`secrets`)."""
    return f"sched-{secrets.token_hex(SCHEDULED_ID_BYTES)}"


def plan_reports(schedule: Schedule, fire_time: datetime) -> tuple[PlannedReport, ...]:
    """The reports of a run fired at ``fire_time``: one per audience, each with a random id.

    The ids are drawn here, once per claim attempt; only the claimer whose insert wins keeps
    them (in the run row), so every worker re-submitting the run uses the same ids.
    """
    return tuple(PlannedReport(new_scheduled_report_id(), a) for a in schedule.audiences())


def _reports_to_db(reports: tuple[PlannedReport, ...]) -> str:
    return orjson.dumps(
        [
            {
                "report_id": p.report_id,
                "recipients": list(p.audience.recipients),
                "filters": [[name, list(values)] for name, values in p.audience.filters],
            }
            for p in reports
        ]
    ).decode()


def _reports_from_db(raw: str) -> tuple[PlannedReport, ...]:
    return tuple(
        PlannedReport(
            p["report_id"],
            Audience(
                recipients=tuple(p["recipients"]),
                filters=tuple((name, tuple(values)) for name, values in p["filters"]),
            ),
        )
        for p in orjson.loads(raw)
    )


_RUN_STORED = (
    "fire_time",
    "missed_from",
    "claimed_at",
    "claimed_by",
    "status",
    "cache_strategy",
    "date_from",
    "date_to",
    "error",
)
"""The fields of :class:`ClaimedRun` kept as they are in their ``schedule_runs`` columns."""
_RUN_COLUMNS = ("id AS run_id", *_RUN_STORED, "reports")
"""The ``schedule_runs`` columns a :class:`ClaimedRun` is read from (:func:`_run_of`)."""


def _run_of(row: asyncpg.Record, schedule: Schedule) -> ClaimedRun:
    """A run of ``schedule`` from a row of its :data:`_RUN_COLUMNS`."""
    stored = {name: row[name] for name in _RUN_STORED}
    return ClaimedRun(
        run_id=row["run_id"], schedule=schedule, reports=_reports_from_db(row["reports"]), **stored
    )


async def insert_run(
    conn: asyncpg.Connection,
    schedule: Schedule,
    fire_time: datetime,
    *,
    missed_from: datetime,
    now: datetime,
    worker_id: str,
) -> ClaimedRun | None:
    """Insert the run of ``schedule`` for ``fire_time`` unless one exists.

    ``INSERT ... ON CONFLICT (organization_id, schedule_id, fire_time) DO NOTHING``: of any
    number of callers for the same fire time exactly one gets the run (and its random report
    ids); the others get ``None``. Cross-tenant (the scheduler's connection).
    """
    local_date = fire_time.astimezone(schedule.zone).date()
    date_from, date_to = report_dates(schedule.date_range, local_date)
    reports = plan_reports(schedule, fire_time)
    row = await conn.fetchrow(
        "INSERT INTO schedule_runs (schedule_id, organization_id, fire_time, missed_from,"
        " claimed_at, claimed_by, status, cache_strategy, date_from, date_to, report_ids,"
        " reports, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, 'claimed', $7, $8, $9, $10, $11::jsonb, $5)"
        " ON CONFLICT (organization_id, schedule_id, fire_time) DO NOTHING"
        f" RETURNING {', '.join(_RUN_COLUMNS)}",
        schedule.schedule_id,
        schedule.organization_id,
        fire_time,
        missed_from,
        now,
        worker_id,
        CACHE_STRATEGY,
        date_from,
        date_to,
        [p.report_id for p in reports],
        _reports_to_db(reports),
    )
    return None if row is None else _run_of(row, schedule)


_CLAIM_SQL = f"""
WITH due AS (
  SELECT organization_id, id, next_fire_time,
         row_number() OVER (PARTITION BY organization_id ORDER BY next_fire_time, id) AS turn
    FROM schedules
   WHERE NOT paused AND next_fire_time <= $1
), taken AS (
  SELECT organization_id, id, turn, next_fire_time FROM due
   ORDER BY turn, next_fire_time, organization_id, id LIMIT $2
)
SELECT {", ".join("s." + c.strip() for c in _COLUMNS.split(","))},
       s.next_fire_time, s.last_fire_time, s.created_at, s.updated_at
  FROM schedules s JOIN taken t ON t.organization_id = s.organization_id AND t.id = s.id
 WHERE NOT s.paused AND s.next_fire_time <= $1
 ORDER BY t.turn, t.next_fire_time, s.organization_id, s.id
   FOR UPDATE OF s SKIP LOCKED
"""
"""The due schedules a tick claims, in turns: every organisation's earliest due schedule
before any organisation's second (``turn``), then by due time; at most ``$2``. A tenant with
hundreds of schedules due at once took the claims of whole ticks, and another tenant's
schedule due at the same minute waited behind them (an attacker round: 45-56 s late)."""


async def claim_due_runs(
    conn: asyncpg.Connection, now: datetime, *, worker_id: str | None = None, limit: int = 100
) -> list[ClaimedRun]:
    """Claim the runs that are due at ``now``, at most one per schedule (cross-tenant).

    In one transaction: lock the active schedules whose ``next_fire_time <= now``, taken in
    turns across organisations (:data:`_CLAIM_SQL`: each organisation's earliest first, so
    one tenant's many schedules do not hold another's back; ``FOR UPDATE SKIP LOCKED``, so a
    schedule another worker is handling is skipped, not waited for); for each, take the
    **latest** fire time in ``[next_fire_time, now]`` that is before ``expires_at`` (one run
    for a missed period, the catch-up policy of this module); skip it
    when it is less than ``min_interval_seconds`` after the previous run's fire time; insert
    the run with ``ON CONFLICT DO NOTHING``; and move ``next_fire_time`` to the first fire time
    after ``now`` that also honours the minimum interval (NULL when none is left before the
    expiration).

    Args:
        conn: a connection on the scheduler's (owner) role; must not be in a transaction.
        now: the current time (UTC-aware); injected so tests can simulate time.
        worker_id: recorded as ``claimed_by`` (default ``host:pid``).
        limit: at most this many schedules per call (the rest are claimed by the next call).

    Returns:
        The runs this call inserted, in the order claimed (organisations in turns), which is
        the order they are submitted in.

    Raises:
        ValueError: ``now`` is naive.
    """
    _require_aware("now", now)
    now = now.astimezone(UTC)
    worker = worker_id or default_worker_id()
    claimed: list[ClaimedRun] = []
    async with conn.transaction():
        rows = await conn.fetch(_CLAIM_SQL, now, limit)
        for row in rows:
            try:
                schedule = _schedule_from_row(row)
            except (ValueError, KeyError) as exc:
                # e.g. a zone no longer in the tz database: stop this schedule, keep the others
                log.error("schedule %s cannot be read, it stops firing: %s", row["id"], exc)
                await conn.execute(
                    "UPDATE schedules SET next_fire_time = NULL"
                    " WHERE organization_id = $1 AND id = $2",
                    row["organization_id"],
                    row["id"],
                )
                continue
            first_due: datetime = row["next_fire_time"]
            last_fire: datetime | None = row["last_fire_time"]
            until = now
            if schedule.expires_at is not None:
                until = min(until, schedule.expires_at - _TINY)
            fire = latest_fire_time(schedule.cron, schedule.time_zone, first_due - _TINY, until)
            min_gap = timedelta(seconds=schedule.min_interval_seconds)
            if fire is not None and last_fire is not None and fire - last_fire < min_gap:
                fire = None  # too soon after the previous run: skipped
            if fire is not None:
                run = await insert_run(
                    conn, schedule, fire, missed_from=first_due, now=now, worker_id=worker
                )
                if run is not None:
                    claimed.append(run)
                last_fire = fire if last_fire is None else max(last_fire, fire)
            resume_after = now
            if last_fire is not None and min_gap:
                resume_after = max(now, last_fire + min_gap - _TINY)
            await conn.execute(
                "UPDATE schedules SET next_fire_time = $2, last_fire_time = $3"
                " WHERE id = $1 AND organization_id = $4",
                schedule.schedule_id,
                _first_fire_after(schedule, resume_after),
                last_fire,
                schedule.organization_id,
            )
    return claimed


_RUN_SELECT = (
    f"SELECT {', '.join('r.' + c for c in _RUN_COLUMNS)},"
    f" {', '.join('s.' + c.strip() for c in _COLUMNS.split(','))}"
    " FROM schedule_runs r JOIN schedules s"
    " ON s.organization_id = r.organization_id AND s.id = r.schedule_id"
)


def _run_from_row(row: asyncpg.Record) -> ClaimedRun:
    """A run and its schedule from a :data:`_RUN_SELECT` row."""
    return _run_of(row, _schedule_from_row(row))


async def reclaim_stale_runs(
    conn: asyncpg.Connection,
    now: datetime,
    *,
    older_than_s: float,
    worker_id: str | None = None,
    limit: int = 100,
) -> list[ClaimedRun]:
    """Take over runs still ``claimed`` (never submitted) ``older_than_s`` seconds after claim.

    Cross-tenant (the scheduler). A worker that dies between claiming and submitting leaves
    such a run; re-submitting it is safe because its report ids are stored in the run row and
    the report agent does not generate a known (organisation, id) twice.
    The taken-over runs get ``claimed_at = now`` and ``claimed_by = worker_id``.
    """
    _require_aware("now", now)
    cutoff = now - timedelta(seconds=older_than_s)
    async with conn.transaction():
        ids = await conn.fetch(  # one statement: the rows it locks are the ones taken over
            "UPDATE schedule_runs SET claimed_at = $2, claimed_by = $3, updated_at = $2"
            " WHERE id IN (SELECT id FROM schedule_runs WHERE status = 'claimed'"
            " AND claimed_at <= $1 ORDER BY claimed_at LIMIT $4 FOR UPDATE SKIP LOCKED)"
            " RETURNING id",
            cutoff,
            now,
            worker_id or default_worker_id(),
            limit,
        )
        if not ids:
            return []
        rows = await conn.fetch(
            f"{_RUN_SELECT} WHERE r.id = ANY($1::bigint[]) ORDER BY r.fire_time",
            [r["id"] for r in ids],
        )
    return [_run_from_row(r) for r in rows]


async def update_run_status(
    conn: asyncpg.Connection,
    organization_id: str,
    run_id: int,
    status: str,
    *,
    error: str | None = None,
) -> None:
    """Set the status of run ``(organization_id, run_id)`` (one of :data:`RUN_STATUSES`) and,
    for ``failed``, its cause. Opens no transaction: call it inside the organisation's
    :func:`~stream_app.db.tenancy.tenant_transaction`.

    Raises:
        ValueError: unknown status.
    """
    if status not in RUN_STATUSES:
        raise ValueError(f"status: {status!r} is not one of {sorted(RUN_STATUSES)}")
    await conn.execute(
        "UPDATE schedule_runs SET status = $3, error = $4, updated_at = now()"
        " WHERE organization_id = $1 AND id = $2",
        organization_id,
        run_id,
        status,
        error,
    )


async def mark_submitted(
    conn: asyncpg.Connection, run_id: int, now: datetime | None = None
) -> bool:
    """Move a run from ``claimed`` to ``submitted`` at ``now`` (default the database's clock);
    False if it was no longer ``claimed``. Cross-tenant (the scheduler)."""
    status = await conn.execute(
        "UPDATE schedule_runs SET status = 'submitted', updated_at = now(),"
        " submitted_at = COALESCE($2, now()) WHERE id = $1 AND status = 'claimed'",
        run_id,
        now,
    )
    return bool(status == "UPDATE 1")


@dataclass(frozen=True, slots=True)
class StaleRun:
    """A run that was ``submitted`` too long ago and is now ``failed``.

    Attributes:
        organization_id / schedule_id / run_id: which run.
        submitted_at: when it was submitted (UTC).
        missing: the planned report ids that never reached a delivery outcome.
        error: the cause stored on the run.
    """

    organization_id: str
    schedule_id: str
    run_id: int
    submitted_at: datetime
    missing: tuple[str, ...]
    error: str


async def fail_stale_submitted_runs(
    conn: asyncpg.Connection, now: datetime, *, older_than_s: float, limit: int = 100
) -> list[StaleRun]:
    """Mark ``failed`` the runs ``submitted`` at least ``older_than_s`` seconds before ``now``
    of which some planned report has no delivery outcome yet (cross-tenant: the scheduler).

    Such a run would otherwise wait for ever: its report was lost, never generated, or (before
    migration 008) squatted by another request. A run whose reports all have an outcome is
    left to the delivery agent (it may be retrying). Rows are locked ``FOR UPDATE SKIP
    LOCKED``, so workers sweeping at once fail each run once.

    Returns:
        The runs this call failed, with the cause stored on each.

    Raises:
        ValueError: ``now`` is naive.
    """
    _require_aware("now", now)
    cutoff = now - timedelta(seconds=older_than_s)
    failed: list[StaleRun] = []
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT r.id, r.organization_id, r.schedule_id, r.submitted_at,"
            " ARRAY(SELECT unnest(r.report_ids) EXCEPT SELECT d.report_id FROM delivery_log d"
            "       WHERE d.organization_id = r.organization_id AND d.run_id = r.id) AS missing"
            " FROM schedule_runs r WHERE r.status = 'submitted' AND r.submitted_at <= $1"
            " ORDER BY r.submitted_at LIMIT $2 FOR UPDATE OF r SKIP LOCKED",
            cutoff,
            limit,
        )
        for row in rows:
            missing = tuple(sorted(row["missing"]))
            if not missing:
                continue
            cause = (
                f"report(s) {', '.join(missing)} did not finish within {older_than_s:g} s of"
                f" submission (submitted {row['submitted_at'].astimezone(UTC).isoformat()})"
            )
            await conn.execute(
                "UPDATE schedule_runs SET status = 'failed', error = $3, updated_at = now()"
                " WHERE organization_id = $1 AND id = $2 AND status = 'submitted'",
                row["organization_id"],
                row["id"],
                cause,
            )
            failed.append(
                StaleRun(
                    organization_id=row["organization_id"],
                    schedule_id=row["schedule_id"],
                    run_id=row["id"],
                    submitted_at=row["submitted_at"],
                    missing=missing,
                    error=cause,
                )
            )
    return failed


async def get_run(conn: asyncpg.Connection, run_id: int) -> ClaimedRun | None:
    """A run by its surrogate id, or ``None``; cross-tenant (scheduler and tests)."""
    row = await conn.fetchrow(f"{_RUN_SELECT} WHERE r.id = $1", run_id)
    return None if row is None else _run_from_row(row)


async def find_run_for_report(
    conn: asyncpg.Connection, organization_id: str, report_id: str
) -> ClaimedRun | None:
    """The run of ``organization_id`` that planned ``report_id``, or ``None`` (tenant-scoped).

    Use it on each ``report-results`` status to find out whether a report was scheduled; a
    report of another organisation with the same id never matches.
    """
    async with tenant_transaction(conn, organization_id):
        row = await conn.fetchrow(
            f"{_RUN_SELECT} WHERE r.organization_id = $1 AND r.report_ids @> ARRAY[$2]::text[]",
            organization_id,
            report_id,
        )
    return None if row is None else _run_from_row(row)


async def list_runs(
    conn: asyncpg.Connection, organization_id: str, schedule_id: str, *, limit: int = 100
) -> list[ClaimedRun]:
    """The latest runs of a schedule, newest first (tenant-scoped)."""
    async with tenant_transaction(conn, organization_id):
        rows = await conn.fetch(
            f"{_RUN_SELECT} WHERE r.organization_id = $1 AND r.schedule_id = $2"
            " ORDER BY r.fire_time DESC LIMIT $3",
            organization_id,
            schedule_id,
            limit,
        )
    return [_run_from_row(r) for r in rows]
