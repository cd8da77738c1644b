"""One worker per data folder: the folder's lock (stream_app.statedir.lock_state); and only
with the Kafka cluster its tables were built from (stream_app.statedir.check_cluster)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.db.roles import APP_ROLE, SYSTEM_ROLE, as_role
from stream_app.settings import Settings
from stream_app.statedir import CLUSTER_FILE, check_cluster, kafka_cluster_id, lock_state


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


def test_tables_of_another_kafka_cluster_are_refused(settings: Settings, tmp_path: Path) -> None:
    """The session's real broker names its cluster; a new folder records it, the same
    cluster passes, another one is refused naming the folder and what to do."""
    cluster = asyncio.run(kafka_cluster_id(settings.kafka_bootstrap))
    assert cluster is not None and len(cluster) == 22  # KRaft: a base64 UUID without padding
    data_dir = tmp_path / "data"
    tabledir = data_dir / "v1" / "tables"
    check_cluster(tabledir, cluster, data_dir=data_dir)
    assert (data_dir / "v1" / CLUSTER_FILE).read_text() == cluster + "\n"
    check_cluster(tabledir, cluster, data_dir=data_dir)  # the same cluster: no refusal
    with pytest.raises(RuntimeError) as refused:
        check_cluster(tabledir, "AAAAAAAAAAAAAAAAAAAAAA", data_dir=data_dir)
    assert str(refused.value) == (
        f"WEDDING_DATA_DIR: {data_dir} holds tables built from another Kafka cluster"
        f" ({cluster!r}; the broker now is 'AAAAAAAAAAAAAAAAAAAAAA', e.g. a new one after"
        f" 'services down' and 'services up'): remove the folder (rm -r {data_dir}; the"
        " tables are rebuilt from the changelogs) or set WEDDING_DATA_DIR to another folder"
    )


def test_a_worker_on_another_cluster_s_folder_refuses_to_start(
    settings: Settings, tmp_path: Path
) -> None:
    """s6 fresh user: a worker on a folder left from before ``services down``/``up`` stopped
    with faust's ConsistencyError. It now refuses at start: one line, exit status 2."""
    data_dir = tmp_path / "worker-data"
    (data_dir / "v1").mkdir(parents=True)
    (data_dir / "v1" / CLUSTER_FILE).write_text("ZZZZZZZZZZZZZZZZZZZZZZ\n")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "POSTGRES_DSN": as_role(settings.postgres_dsn, APP_ROLE),
        "POSTGRES_SYSTEM_DSN": as_role(settings.postgres_dsn, SYSTEM_ROLE),
        "WEDDING_DATA_DIR": str(data_dir),
        "WEDDING_DEV_MODE": "1",
        "WEDDING_APP_ID": "wedding-statedir-tests",
    }
    done = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    cluster = asyncio.run(kafka_cluster_id(settings.kafka_bootstrap))
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2, done.stderr
    assert errors == [
        f"error: WEDDING_DATA_DIR: {data_dir} holds tables built from another Kafka cluster"
        f" ('ZZZZZZZZZZZZZZZZZZZZZZ'; the broker now is {cluster!r}, e.g. a new one after"
        f" 'services down' and 'services up'): remove the folder (rm -r {data_dir}; the"
        " tables are rebuilt from the changelogs) or set WEDDING_DATA_DIR to another folder"
    ]
    assert not (data_dir / "v1" / "tables").exists()  # nothing opened
