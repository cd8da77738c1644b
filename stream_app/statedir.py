"""The worker's data folder: one worker per folder, and only with the Kafka cluster whose
changelogs its tables were built from.

Local table state survives a crash: rows reach RocksDB only after their changelog records are
acknowledged, together with the changelog offset, in one write batch
(:mod:`stream_app.runtime.state`), so after any stop faust replays only the changelog's tail.
Those offsets mean nothing to another cluster (a fresh broker after ``services down`` and
``services up`` has new, empty changelog topics: faust stopped with a ``ConsistencyError``),
so the folder records its cluster's id (:data:`CLUSTER_FILE`) and a worker started against
another cluster is refused (:func:`check_cluster`).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

log = logging.getLogger(__name__)

CLUSTER_FILE = "kafka-cluster-id"
"""File beside the table folder naming the Kafka cluster its tables were built from."""


async def kafka_cluster_id(bootstrap: str) -> str | None:
    """The id of the Kafka cluster at ``bootstrap`` (``describe_cluster``); None when the
    broker names none.

    Raises:
        aiokafka.errors.KafkaConnectionError: the broker cannot be reached.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    found = cluster.get("cluster_id")
    return None if found is None else str(found)


def check_cluster(tabledir: Path, cluster_id: str | None, *, data_dir: Path) -> None:
    """Refuse table state built from another Kafka cluster than ``cluster_id``; record
    ``cluster_id`` beside ``tabledir`` when the folder records none yet (a new folder, or one
    from before this record existed: it is taken as this cluster's). Call it holding the
    folder's lock (:func:`lock_state`).

    Args:
        tabledir: faust's table folder; :data:`CLUSTER_FILE` is written beside it.
        cluster_id: the broker's cluster id (:func:`kafka_cluster_id`); None checks nothing.
        data_dir: the worker's data folder (``WEDDING_DATA_DIR``), named in the refusal.

    Raises:
        RuntimeError: one line naming the folder, both cluster ids and what to do.
    """
    if cluster_id is None:
        return
    marker = tabledir.parent / CLUSTER_FILE
    try:
        recorded = marker.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        tabledir.parent.mkdir(parents=True, exist_ok=True)
        partial = marker.with_suffix(".tmp")
        partial.write_text(cluster_id + "\n", encoding="utf-8")
        partial.replace(marker)
        return
    if recorded != cluster_id:
        raise RuntimeError(
            f"WEDDING_DATA_DIR: {data_dir.absolute()} holds tables built from another Kafka"
            f" cluster ({recorded!r}; the broker now is {cluster_id!r}, e.g. a new one after"
            f" 'services down' and 'services up'): remove the folder (rm -r"
            f" {data_dir.absolute()}; the tables are rebuilt from the changelogs) or set"
            " WEDDING_DATA_DIR to another folder"
        )


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
