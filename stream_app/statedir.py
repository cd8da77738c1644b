"""Local table state after a crash: rebuilt from the changelog, never trusted.

A worker writes a table row to RocksDB at once and its changelog record a moment later (the
producer batches it). faust keeps, per changelog partition, the offset of the last record the
broker acknowledged (the *persisted offset*) and on start replays only the changelog records
after it. After a crash (SIGKILL, OOM kill, power loss) the local RocksDB can therefore hold
writes whose changelog records never reached the broker. Those rows are newer than anything
another worker could restore, and the events that made them are read again (their offsets
were never committed: faust flushes the producer before it commits). Re-reading them finds
their ids already in the local rows, so nothing is written again and the changelog stays
without them: the next worker to own the partition restores the older rows while the
committed offsets have moved past those events, and they are lost there.

So the worker trusts its local state only after a clean stop. :func:`open_state` runs before
the worker starts: when the marker file :data:`CLEAN_MARKER` written by :func:`mark_clean`
after the previous run's graceful stop is missing, it deletes the table folder, and faust
rebuilds every assigned partition from the changelog (the crashed run's lost writes are then
redone from the uncommitted events, and this time they reach the changelog). Kafka Streams
applies the same rule to its state directory after an unclean shutdown under exactly-once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

CLEAN_MARKER = "CLEAN_SHUTDOWN"
"""File in the table folder whose presence says the previous run stopped gracefully."""


def open_state(tabledir: Path) -> bool:
    """Prepare ``tabledir`` for a new run; True when it was deleted (previous run crashed).

    A missing folder is a first start (nothing to delete). The marker is removed, so a crash
    of this run leaves no marker behind.

    Raises:
        OSError: the folder cannot be read or deleted.
    """
    if not tabledir.exists():
        return False
    marker = tabledir / CLEAN_MARKER
    if marker.exists():
        marker.unlink()
        return False
    log.warning(
        "%s: the previous run did not stop cleanly; local table state deleted, "
        "it is rebuilt from the changelog",
        tabledir,
    )
    shutil.rmtree(tabledir)
    return True


def mark_clean(tabledir: Path) -> None:
    """Record that this run stopped gracefully (its changelog writes were flushed).

    Raises:
        OSError: the marker cannot be written.
    """
    tabledir.mkdir(parents=True, exist_ok=True)
    (tabledir / CLEAN_MARKER).write_text(datetime.now(UTC).isoformat() + "\n")


LOCK_FILE = "worker.lock"
"""File beside the table folder that a running worker holds an exclusive lock on."""


def lock_state(tabledir: Path) -> int:
    """Take the exclusive lock of ``tabledir``'s data folder for this process's lifetime.

    Two workers on one folder would share RocksDB files, and the second would judge the
    first's live state "not stopped cleanly" and delete it. The lock (``flock`` on
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
