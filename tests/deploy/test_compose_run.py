"""The compose file's environments, run here without Docker.

``init`` runs with exactly the ``init`` service's variables, and a worker with exactly
``worker-1``'s plus the image's ``ENV``: only the compose network's host names are pointed at
the session's Kafka, PostgreSQL and Redis, the volumes at temporary folders, and the example
secrets replaced by real ones (the examples are refused on purpose). So the logins, the bind
address and every variable are the ones a container gets.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from tests.deploy.helpers import PYTHON_VARIABLES, dockerfile, isolate_worker
from tests.deploy.test_compose import INTERPOLATION, compose, env_example

CLI = str(Path(sys.executable).parent / "wedding-engine")


def service_env(name: str, settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The variables the container of service ``name`` gets, pointed at the session."""
    values = {
        **env_example(),
        "WEDDING_JWT_SECRET": secrets.token_urlsafe(32),
        "WEDDING_LINK_SECRET": secrets.token_urlsafe(32),
        "WEDDING_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    pg = urlsplit(settings.postgres_dsn)
    hosts = {
        "kafka:9092": settings.kafka_bootstrap,
        "@postgres:5432/wedding": f"@{pg.hostname}:{pg.port}{pg.path}",
        "redis://redis:6379/0": settings.redis_url,
    }
    image_env, _, _ = dockerfile()
    env = {k: v for k, v in image_env.items() if k not in PYTHON_VARIABLES}
    for key, raw in compose()["services"][name]["environment"].items():
        value = INTERPOLATION.sub(lambda m: values[m.group(1)], str(raw))
        for host, here in hosts.items():
            value = value.replace(host, here)
        env[key] = value
    env["WEDDING_DATA_DIR"] = str(tmp_path / "tables")
    env["WEDDING_ARTIFACT_DIR"] = str(tmp_path / "artifacts")
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env}


def start(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``argv`` as a child process in a session of its own, its output in ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def test_init_runs_with_only_the_owner_login(settings: Settings, tmp_path: Path) -> None:
    env = service_env("init", settings, tmp_path)
    assert not {"POSTGRES_DSN", "POSTGRES_SYSTEM_DSN"} & set(env)
    done = subprocess.run(
        [CLI, *compose()["services"]["init"]["command"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # the session's database is migrated already: the owner login sees every migration
    assert "migrations applied: none (up to date)" in done.stdout


async def test_a_worker_serves_with_worker_1_s_environment(
    settings: Settings, tmp_path: Path
) -> None:
    env = service_env("worker-1", settings, tmp_path)
    assert env["WEDDING_WEB_BIND"] == "0.0.0.0" and env["WEDDING_WEB_HOST"] == "worker-1"
    assert "WEDDING_DEV_MODE" not in env  # the production checks apply
    port = isolate_worker(env, "compose")
    log_path = tmp_path / "worker.log"
    proc = start([CLI, *compose()["services"]["worker-1"]["command"]], env, log_path)
    worker = WorkerProcess(port, tmp_path / "tables", log_path, env, proc)
    try:
        # its only member: every partition; served on the bind address, 127.0.0.1 included
        assert await worker.wait_ready(timeout_s=120, min_partitions=4) == [0, 1, 2, 3]
    finally:
        code = await asyncio.to_thread(worker.stop, 60)
    assert code == 0, log_path.read_text()[-3000:]
