"""The worker's data folder: one worker per folder.

Local table state survives a crash: rows reach RocksDB only after their changelog records are
acknowledged, together with the changelog offset, in one write batch
(:mod:`stream_app.runtime.state`), so after any stop faust replays only the changelog's tail.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = "worker.lock"
"""File beside the table folder that a running worker holds an exclusive lock on."""


def lock_state(tabledir: Path) -> int:
    """Take the exclusive lock of ``tabledir``'s data folder for this process's lifetime.

    Two workers on one folder would share RocksDB files (RocksDB refuses a second opener of a
    database, and the second worker would fail late and confusingly). The lock (``flock`` on
    :data:`LOCK_FILE` beside the table folder) is released by the kernel when the process
    ends, however it ends. Returns the lock's file descriptor (keep it open).

    Raises:
        RuntimeError: another running worker holds the folder; the message names it and
            ``WEDDING_DATA_DIR``.
    """
    tabledir.parent.mkdir(parents=True, exist_ok=True)
    path = tabledir.parent / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RuntimeError(
            f"WEDDING_DATA_DIR: {tabledir.parent} is used by a running worker (pid {holder});"
            " give this worker its own WEDDING_DATA_DIR"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
