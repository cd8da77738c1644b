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
