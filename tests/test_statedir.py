"""Local table state is kept after a clean stop and deleted after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stream_app.statedir import CLEAN_MARKER, lock_state, mark_clean, open_state


def _tables_with_a_store(root: Path) -> Path:
    tables = root / "v1" / "tables"
    (tables / "venue-bookings-0.db").mkdir(parents=True)
    (tables / "venue-bookings-0.db" / "CURRENT").write_text("MANIFEST-000001\n")
    return tables


def test_a_first_start_has_nothing_to_delete(tmp_path: Path) -> None:
    assert open_state(tmp_path / "v1" / "tables") is False
    assert not (tmp_path / "v1").exists()


def test_after_a_crash_the_state_is_deleted(tmp_path: Path) -> None:
    tables = _tables_with_a_store(tmp_path)
    assert open_state(tables) is True
    assert not tables.exists()


def test_after_a_clean_stop_the_state_is_kept_once(tmp_path: Path) -> None:
    tables = _tables_with_a_store(tmp_path)
    mark_clean(tables)
    assert (tables / CLEAN_MARKER).is_file()
    assert open_state(tables) is False
    assert (tables / "venue-bookings-0.db" / "CURRENT").read_text() == "MANIFEST-000001\n"
    # the marker is consumed: a crash of this run must not look like a clean stop
    assert not (tables / CLEAN_MARKER).exists()
    assert open_state(tables) is True
    assert not tables.exists()


def test_a_second_process_cannot_take_a_data_folder_in_use(tmp_path: Path) -> None:
    """The fresh user's case: a second worker on the same folder deleted the live worker's
    tables. The lock is per process (flock), so the second one runs in a child process."""
    tabledir = tmp_path / "v1" / "tables"
    fd = lock_state(tabledir)
    code = (
        "import sys; from pathlib import Path; from stream_app.statedir import lock_state\n"
        "try:\n    lock_state(Path(sys.argv[1]))\nexcept RuntimeError as e:\n"
        "    print(e); sys.exit(3)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tabledir)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 3
    assert f"is used by a running worker (pid {os.getpid()})" in out.stdout
    os.close(fd)  # released: the next worker gets it
    again = subprocess.run(
        [sys.executable, "-c", code, str(tabledir)], capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stdout
