"""One worker per data folder: the folder's lock (stream_app.statedir.lock_state)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stream_app.statedir import lock_state


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
