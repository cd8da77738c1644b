"""Cron fire times in a schedule's IANA time zone, returned as UTC instants.

Library: `cronsim <https://pypi.org/project/cronsim/>`_ (used by Healthchecks.io), which
documents that it evaluates expressions like Debian's cron, *including its handling of DST
transitions* (cronsim README, "DST Transitions"; Debian ``cron(8)``: "If time has moved
forward, those jobs that would have run in the interval that has been skipped will be run
immediately. Conversely, if time has moved backward, care is taken to avoid running jobs
twice."). Only 5-field expressions are accepted: cronsim applies the Debian DST handling to
5-field expressions only.

Daylight-saving policy (pinned by ``tests/schedules/test_cron.py``):

* **Expressions with a fixed minute and hour** (neither field starts with ``*``, e.g.
  ``30 1 * * *``, ``0 8 * * MON``, ``0,30 2 * * *``): the expression is matched against the
  local wall clock.

  - A local time that **does not exist** (spring forward, e.g. 01:30 on the last Sunday of
    March in Europe/London) fires **once, at the first local time that exists after the gap**
    (the moment of the change: 02:00 BST = 01:00 UTC). Several skipped times collapse into
    that one run.
  - A local time that **exists twice** (fall back, e.g. 01:30 on the last Sunday of October in
    Europe/London) fires **once, at its first occurrence** (the earlier UTC instant, still on
    summer time: 01:30 BST = 00:30 UTC).

* **Expressions with a wildcard minute or hour** (``*/15 * * * *``, ``30 * * * *``): fire
  times are real elapsed instants. In the skipped hour there is nothing to fire; in the
  repeated hour a matching minute fires in both passes (``30 * * * *`` fires at 01:30 EDT
  and again at 01:30 EST, one real hour later), as Debian's cron does.

Every function here returns strictly increasing, distinct, UTC-aware datetimes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from stream_app import iana
from stream_app.errors import WeddingError

_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_PROBE_START = datetime(2001, 1, 1, tzinfo=UTC)
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""Vixie cron's macros and the five fields each stands for (``crontab(5)``): named in the
error when one is given, since only five fields are accepted."""
_SEARCH_WINDOWS = (
    timedelta(hours=2),
    timedelta(days=2),
    timedelta(days=40),
    timedelta(days=400),
    timedelta(days=366 * 60),
)


class CronExpressionError(WeddingError, ValueError):
    """A cron expression cannot be used.

    Attributes:
        part: the cron field at fault (``minute`` … ``day-of-week``), or ``expression``.
        reason: what is wrong.
    """

    retriable = False

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


def _zone(name: str) -> ZoneInfo:
    try:
        return iana.zone(name)
    except ValueError as exc:
        raise CronExpressionError("time_zone", str(exc)) from None


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: a naive datetime is not accepted; give a UTC offset")


def validate_cron(expr: str, time_zone: str = "UTC") -> None:
    """Check that ``expr`` is a 5-field cron expression that fires at least once.

    Raises:
        CronExpressionError: naming the bad field and its text (``minute field '61': Bad
            minute``), a wrong number of fields, or an expression that never fires (such as
            ``0 0 31 2 *``) within 50 years of 2001.
    """
    if not expr.isascii():  # str.split() took a no-break space for a field separator
        raise CronExpressionError(
            "expression",
            f"{expr!r} holds a character that is not ASCII; fields are separated by spaces",
        )
    parts = expr.split()
    if len(parts) == 1 and parts[0].startswith("@"):
        fields = _MACROS.get(parts[0].lower())
        instead = f"; write {fields!r} instead" if fields else ""
        raise CronExpressionError(
            "expression",
            f"{expr!r} is a macro; give the 5 fields (minute hour day-of-month month "
            f"day-of-week){instead}",
        )
    if len(parts) != 5:
        raise CronExpressionError(
            "expression",
            f"{expr!r} has {len(parts)} fields; expected 5 (minute hour day-of-month month "
            "day-of-week)",
        )
    zone = _zone(time_zone)
    try:
        it = CronSim(expr, _PROBE_START.astimezone(zone))
    except CronSimError as exc:
        message = str(exc)
        if message == "Bad day-of-month" and _never_in_month(parts):
            raise CronExpressionError(
                "day-of-month",
                f"day-of-month field {parts[2]!r} never occurs in month field {parts[3]!r} "
                "(no such date), so the expression never fires",
            ) from exc
        for index, name in enumerate(_FIELD_NAMES):
            if message == f"Bad {name}":
                raise CronExpressionError(
                    name, f"{name} field {parts[index]!r} is not valid"
                ) from exc
        raise CronExpressionError("expression", message) from exc
    try:
        next(it)
    except StopIteration:
        raise CronExpressionError("expression", f"{expr!r} never fires") from None


def _never_in_month(parts: list[str]) -> bool:
    """Whether the day-of-month field is valid on its own and refused only with this month
    field (cronsim refuses ``30 2``, 30 February, as a bad day-of-month)."""
    try:
        CronSim(" ".join([parts[0], parts[1], parts[2], "*", parts[4]]), _PROBE_START)
    except CronSimError:
        return False
    return True


def fire_times(expr: str, time_zone: str, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after ``after``, in increasing order, as UTC datetimes.

    Args:
        expr: 5-field cron expression, read in ``time_zone`` (DST policy: module docstring).
        time_zone: IANA zone name.
        after: exclusive lower bound (any aware datetime).

    Yields:
        UTC-aware datetimes, strictly increasing. The iterator ends if no fire time exists
        within 50 years of the previous one (cronsim's search limit), or at the end of the
        calendar (year 9999: a rare expression such as ``0 0 * 2 MON#5``, fifth Mondays of
        February, fires every ~28 years, and a long preview of it reaches there).

    Raises:
        CronExpressionError: invalid expression or zone.
        ValueError: ``after`` is naive.
    """
    _require_aware("after", after)
    validate_cron(expr, time_zone)
    zone = _zone(time_zone)
    previous = after.astimezone(UTC)
    # cronsim matches fixed-time expressions on the naive wall clock, so when `after` falls
    # in the second pass of a repeated hour it may return the first pass (earlier in UTC);
    # those and any duplicates from the spring-forward fix-up are dropped here.
    times = iter(CronSim(expr, previous.astimezone(zone)))
    while True:
        try:
            local = next(times)
            instant = local.astimezone(UTC)
        except (StopIteration, OverflowError):  # no more, or past year 9999
            return
        if instant <= previous:
            continue
        previous = instant
        yield instant


def next_fire_time(expr: str, time_zone: str, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after`` (UTC), or ``None`` if there is none.

    Raises:
        CronExpressionError: invalid expression or zone.
        ValueError: ``after`` is naive.
    """
    return next(fire_times(expr, time_zone, after), None)


def preview(expr: str, time_zone: str, after: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` fire times strictly after ``after``, as UTC datetimes.

    Raises:
        CronExpressionError: invalid expression or zone.
        ValueError: ``after`` is naive or ``count`` is not between 1 and 1000.
    """
    if not 1 <= count <= 1000:
        raise ValueError("count: must be between 1 and 1000")
    out: list[datetime] = []
    for instant in fire_times(expr, time_zone, after):
        out.append(instant)
        if len(out) == count:
            break
    return out


def latest_fire_time(
    expr: str, time_zone: str, after: datetime, until: datetime
) -> datetime | None:
    """The last fire time ``t`` with ``after < t <= until`` (UTC), or ``None``.

    Cost does not grow with the length of ``until - after``: the search looks back from
    ``until`` over widening windows (2 hours, 2 days, 40 days, 400 days, 60 years) and stops
    at the first window holding a fire time, so catching up a year of an every-minute
    schedule reads about 120 fire times.

    Raises:
        CronExpressionError: invalid expression or zone.
        ValueError: a naive datetime.
    """
    _require_aware("after", after)
    _require_aware("until", until)
    if until <= after:
        return None
    for window in _SEARCH_WINDOWS:
        start = max(after, until - window)
        latest: datetime | None = None
        for instant in fire_times(expr, time_zone, start):
            if instant > until:
                break
            latest = instant
        if latest is not None or start == after:
            return latest
    return None
