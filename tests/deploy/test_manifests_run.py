"""The Kubernetes containers' environments, run here without a cluster.

The init Job's container and pod 0 of the StatefulSet get exactly what their manifests give
them (the image's ``ENV``, the ConfigMap, their Secret, their ``env`` with ``$(POD_NAME)``
expanded as the kubelet does), with the example Secrets' values replaced: the external
services' addresses by the session's (the example DSNs' ``sslmode=require`` dropped, the
session's PostgreSQL has no TLS) and the ``CHANGE-ME`` secrets by real ones.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from stream_app.crypto.keys import DEV_MASTER_KEY
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from tests.deploy.helpers import PYTHON_VARIABLES, dockerfile, isolate_worker
from tests.deploy.test_compose_run import CLI, start
from tests.deploy.test_manifests import by_kind, container_env, pod_spec

EXAMPLE_DB = re.compile(r"@wedding-db\.example\.internal:5432/wedding\?sslmode=require")


def pod_env(kind: str, settings: Settings, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The first container of the ``kind`` resource: its arguments and its environment,
    pointed at the session."""
    (resource,) = by_kind(kind)
    container = pod_spec(resource)["containers"][0]
    pod_name = f"{resource['metadata']['name']}-0"
    image_env, _, _ = dockerfile()
    env = {k: v for k, v in image_env.items() if k not in PYTHON_VARIABLES}
    env.update(container_env(container))
    env["POD_NAME"] = pod_name  # the downward API
    env = {k: v.replace("$(POD_NAME)", pod_name) for k, v in env.items()}
    pg = urlsplit(settings.postgres_dsn)
    for key, value in env.items():
        if key.endswith("_DSN"):
            env[key] = EXAMPLE_DB.sub(f"@{pg.hostname}:{pg.port}{pg.path}", value)
    env["KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    if "WEDDING_REDIS_URL" in env:
        env["WEDDING_REDIS_URL"] = settings.redis_url
    for name in ("WEDDING_JWT_SECRET", "WEDDING_LINK_SECRET"):
        if name in env:
            env[name] = secrets.token_urlsafe(32)
    if "WEDDING_MASTER_KEY" in env:
        # the key that wraps the session's data keys (other tests' workers run in development
        # mode), given as a real key: a worker with another one is not ready (/readyz "keys")
        env["WEDDING_MASTER_KEY"] = base64.b64encode(DEV_MASTER_KEY).decode()
    env["WEDDING_DATA_DIR"] = str(tmp_path / "tables")
    env["WEDDING_ARTIFACT_DIR"] = str(tmp_path / "artifacts")
    return container["args"], {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env}


def test_the_init_job_runs_with_only_the_owner_login(settings: Settings, tmp_path: Path) -> None:
    args, env = pod_env("Job", settings, tmp_path)
    assert urlsplit(env["POSTGRES_OWNER_DSN"]).username == "wedding_owner"
    done = subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "migrations applied: none (up to date)" in done.stdout


async def test_pod_0_serves_with_its_manifest_s_environment(
    settings: Settings, tmp_path: Path
) -> None:
    args, env = pod_env("StatefulSet", settings, tmp_path)
    assert env["WEDDING_WEB_HOST"] == "wedding-worker-0.wedding-workers"
    assert env["WEDDING_WEB_BIND"] == "0.0.0.0" and "WEDDING_DEV_MODE" not in env
    assert "POSTGRES_OWNER_DSN" not in env
    port = isolate_worker(env, "k8s")
    log_path = tmp_path / "worker.log"
    worker = WorkerProcess(
        port, tmp_path / "tables", log_path, env, start([CLI, *args], env, log_path)
    )
    try:
        assert await worker.wait_ready(timeout_s=120, min_partitions=4) == [0, 1, 2, 3]
        # the manifest's probes answer on the port and paths it names
        (sts,) = by_kind("StatefulSet")
        container = pod_spec(sts)["containers"][0]
        async with aiohttp.ClientSession() as session:
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                path = container[probe]["httpGet"]["path"]
                async with session.get(f"{worker.url}{path}") as resp:
                    assert resp.status == 200, (probe, await resp.text())
            async with session.get(f"{worker.url}/readyz") as resp:
                checks = (await resp.json())["checks"]
        assert {name: c["ok"] for name, c in checks.items()} == {
            "tables": True,
            "kafka": True,
            "postgres": True,
            "keys": True,
            "ratelimits": True,
        }
    finally:
        code = await asyncio.to_thread(worker.stop, 60)
    assert code == 0, log_path.read_text()[-3000:]
