"""The per-minute aggregation of refused requests: how many audit rows a flood can cause.

Pure accounting (no database): the rows returned are what the worker writes.
"""

from __future__ import annotations

from stream_app.web.refusals import Refusal, RefusalAggregator


class Clock:
    """A settable wall clock (seconds since the epoch)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def refusal(org: str = "org-a", client: str = "10.0.0.1", code: str = "unauthorized") -> Refusal:
    return Refusal(org, client, 401, code, "Authorization", "GET", "/orgs/{org}/reports")


MINUTE0 = 1_800_000_000 - 1_800_000_000 % 60  # 2027-01-15T08:00:00Z, a minute's start


def test_a_flood_of_one_key_is_one_row_then_one_count() -> None:
    clock = Clock(MINUTE0 + 1)
    agg = RefusalAggregator(max_keys=10, clock=clock)
    first = agg.note(refusal())
    assert [(r.organization_id, r.actor, r.details["count"]) for r in first] == [
        ("org-a", "10.0.0.1", 1)
    ]
    assert first[0].details["window_start"] == "2027-01-15T08:00:00Z"
    rows = [row for _ in range(4999) for row in agg.note(refusal())]
    assert rows == []  # the rest of the minute is only counted
    assert agg.flush_due() == []  # the minute is not over
    clock.t = MINUTE0 + 61
    summary = agg.flush_due()
    assert [(r.action, r.details["count"], r.details["aggregated"]) for r in summary] == [
        ("request.refused", 4999, True)
    ]
    assert agg.flush_due() == []  # written once


def test_the_next_minute_flushes_the_last_one_and_starts_again() -> None:
    clock = Clock(MINUTE0 + 59)
    agg = RefusalAggregator(max_keys=10, clock=clock)
    agg.note(refusal())
    agg.note(refusal())
    agg.note(refusal(code="forbidden"))
    clock.t = MINUTE0 + 60
    rows = agg.note(refusal())
    assert [(r.details["code"], r.details["count"], r.details["aggregated"]) for r in rows] == [
        ("unauthorized", 1, True),  # the 2nd refusal of minute 0
        ("unauthorized", 1, False),  # the first of minute 1
    ]
    assert rows[1].details["window_start"] == "2027-01-15T08:01:00Z"


def test_keys_beyond_the_limit_are_counted_in_one_system_row() -> None:
    clock = Clock(MINUTE0)
    agg = RefusalAggregator(max_keys=3, clock=clock)
    written = [row for i in range(1000) for row in agg.note(refusal(org=f"org-{i}"))]
    assert [r.organization_id for r in written] == ["org-0", "org-1", "org-2"]
    clock.t = MINUTE0 + 60
    [overflow] = agg.flush_due()
    assert (overflow.organization_id, overflow.action) == ("(system)", "request.refused.overflow")
    assert overflow.details["count"] == 997
    # at most 2 × max_keys + 1 rows for the minute, whatever the flood
    assert len(written) + 1 <= 2 * 3 + 1
