"""The worker's garbage-collector settings (run in a child process: they are process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("gen0", "expected"),
    [(50_000, "(50000, 20, 100) True"), (0, "(700, 10, 10) False")],
)
def test_tune_sets_the_thresholds_and_freezes_the_start_up_heap(gen0: int, expected: str) -> None:
    code = (
        "import gc; from stream_app.runtime.gc_tuning import tune; "
        f"t = tune({gen0}); print(t, gc.get_freeze_count() > 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


PAUSED = """
import gc
from stream_app.runtime.gc_tuning import paused

seen = []
with paused():
    seen.append(gc.isenabled())
    with paused():
        seen.append(gc.isenabled())
    seen.append(gc.isenabled())
seen.append(gc.isenabled())
try:
    with paused():
        raise ValueError
except ValueError:
    seen.append(gc.isenabled())
gc.disable()
with paused():
    pass
seen.append(gc.isenabled())
gc.enable()
with paused():
    passes = gc.get_stats()[0]["collections"]
    junk = [[i] for i in range(50_000)]  # 50,000 young lists, 70 thresholds: no pass runs
    seen.append(gc.get_stats()[0]["collections"] == passes)
print(seen)
"""


def test_paused_holds_the_collector_off_inside_the_block_only() -> None:
    """Off inside (also nested, and no pass runs however much is allocated), on again
    after, even after an exception; left off when it was off before."""
    out = subprocess.run([sys.executable, "-c", PAUSED], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str([False, False, False, True, True, False, True])


FOLLOW = """
from stream_app.runtime.gc_tuning import follow_batch, tune
tune(50_000)
seen = [
    follow_batch(100, now=10.0),  # a small batch: tune's threshold
    follow_batch(45_000, now=11.0),  # a backlog batch
    follow_batch(10, now=12.5),  # a quiet topic's batch within the hold
    follow_batch(10, now=13.1),  # 2.1 s after the last backlog batch
    follow_batch(1_999, now=14.0),
    follow_batch(2_000, now=15.0),
    follow_batch(10, now=20.0),
]
tune(0)
seen.append(follow_batch(45_000, now=16.0))  # Python's settings are left alone
print(seen)
"""


def test_follow_batch_raises_the_young_threshold_over_a_backlog_only() -> None:
    out = subprocess.run([sys.executable, "-c", FOLLOW], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(
        [50_000, 1_000_000, 1_000_000, 50_000, 50_000, 1_000_000, 50_000, 50_000]
    )
