"""The 2-minute soak (``python -m loadtests.soak --ci``) passes its checks: events on the four
topics neither lost nor counted twice through a worker's SIGKILL, a broker restart, a
PostgreSQL restart, a paused worker and a full artifact store; report success ≥ 99.5 % of
those not refused by design; every scheduled fire delivered exactly once; every fault
recovered from. The soak starts its own services (they are restarted, so not the session's).

The soak's expected figures are its own counts of the events it sent, compared with the
tables read over HTTP; this test re-reads its printed table and asserts them again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.recovery]
ROOT = Path(__file__).parents[2]
TABLE_ROW = re.compile(r"^\s+(bookings|payments|interactions|suppliers)\s+([\d,]+)\s+([\d,]+)"
                       r"\s+([\d,]+)\s+(\d+)\s+(\d+)$")  # fmt: skip


@pytest.fixture(scope="module")
def soak() -> str:
    """The printed summary of one 2-minute soak (run once for the tests of this module)."""
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.soak", "--ci"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    print(done.stdout)
    assert "events:" in done.stdout, f"{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout


def _rows(summary: str) -> dict[str, tuple[int, ...]]:
    rows = {
        m.group(1): tuple(int(x.replace(",", "")) for x in m.groups()[1:])
        for m in map(TABLE_ROW.match, summary.splitlines())
        if m
    }
    assert sorted(rows) == ["bookings", "interactions", "payments", "suppliers"], summary
    return rows


@pytest.mark.timeout(420)
def test_two_minute_soak_reports_deliveries_reads_and_recovery(soak: str) -> None:
    """Reports, deliveries, reads and recovery (the event counts: the next test)."""
    summary = soak
    for table, (produced, in_topic, counted, _lost, doubled) in _rows(summary).items():
        assert produced > 500, (table, produced)  # 40 events/s over 120 s, a quarter per table
        assert in_topic == produced, (table, produced, in_topic)
        assert counted <= produced and doubled == 0, (table, produced, counted, doubled)
    success = re.search(r"success ([\d.]+)% of (\d+)", summary)
    assert success is not None and float(success.group(1)) >= 99.5, summary
    assert int(success.group(2)) >= 30, summary  # one report every 2 s
    fires = re.search(r"deliveries per fire \[([\d, ]+)\] \((\d+) not delivered by design", summary)
    assert fires is not None, summary
    per_fire = [int(x) for x in fires.group(1).split(",")]
    assert all(n in (0, 1) for n in per_fire), per_fire
    assert per_fire.count(0) == int(fires.group(2)), summary  # a 0 only for a full store
    failed = [line for line in summary.splitlines() if "[FAIL]" in line]
    assert all(re.search(r"(bookings|payments|interactions|suppliers): 0 lost", f) for f in failed)
    assert summary.count("[ok] recovered from") == 5


@pytest.mark.timeout(420)
def test_two_minute_soak_loses_no_event(soak: str) -> None:
    """Every event produced is counted once by its table, through every fault (the soak's
    own count of what it sent against the tables read over HTTP)."""
    for table, (produced, _in_topic, counted, lost, doubled) in _rows(soak).items():
        assert (counted, lost, doubled) == (produced, 0, 0), table
