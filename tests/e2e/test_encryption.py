"""Encryption at rest through real workers: report files on disk hold none of the report's
plaintext, and after ``wedding-engine keys rotate`` (a new data key, then a new master key)
old and new files download intact over HTTP, the last ones from a worker that holds only the
new master key. A worker without a master key outside development mode refuses to start.

The workers run their own consumer group with a real (non-development) master key and are
stopped at the end of the test, so they do not take later tests' report requests.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from stream_app.crypto.keys import MasterKey
from stream_app.settings import Settings
from stream_app.synthetic.generator import SynthConfig
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth, download, request_report_http
from tests.synthetic.helpers import load

ORG = "enc-ph"
GROUP = "wedding-crypto-tests"
KEY_A = hashlib.sha256(b"e2e master key A").digest()
KEY_B = hashlib.sha256(b"e2e master key B").digest()


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def worker_env(master: bytes) -> dict[str, str]:
    return {
        "WEDDING_DEV_MODE": "0",  # a real master key, as in a deployment
        "WEDDING_MASTER_KEY": b64(master),
        "WEDDING_DATA_KEY_TTL_S": "0.5",
        "WEDDING_SCHEDULING": "0",
    }


def cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        k: v for k, v in os.environ.items() if not k.startswith(("WEDDING_MASTER", "WEDDING_DEV"))
    }
    full.update(POSTGRES_DSN=settings.postgres_dsn, KAFKA_BOOTSTRAP=settings.kafka_bootstrap)
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "stream_app.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def own_workers(worker_factory: WorkerFactory) -> Iterator[None]:
    started = len(worker_factory.workers)
    yield
    for worker in worker_factory.workers[started:]:
        worker.stop()


async def report(url: str, settings: Settings, year: int) -> dict[str, Any]:
    status = await request_report_http(
        url,
        settings,
        ORG,
        {
            "report_type": "photography_business",
            "date_from": f"{year}-01-01",
            "date_to": f"{year}-12-31",
            "output_formats": ["csv", "json", "excel"],
            "cache_strategy": "skip",
        },
        timeout_s=180,
    )
    assert status["status"] == "completed", status
    return status


async def check_downloads(url: str, settings: Settings, status: dict[str, Any]) -> list[bytes]:
    """Every file of ``status`` downloads with its recorded plaintext SHA-256 and size."""
    bodies = []
    for a in status["artifacts"]:
        body = await download(url, settings, ORG, a["download_url"])
        assert len(body) == a["size_bytes"]
        assert hashlib.sha256(body).hexdigest() == a["sha256"]
        bodies.append(body)
    return bodies


async def key_rows(settings: Settings) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        rows = await conn.fetch(
            "SELECT version, master_key_id FROM organization_data_keys"
            " WHERE organization_id = $1 ORDER BY version",
            ORG,
        )
    finally:
        await conn.close()
    return [(r["version"], r["master_key_id"]) for r in rows]


@pytest.mark.usefixtures("own_workers")
async def test_files_are_encrypted_and_survive_data_and_master_key_rotation(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    rows = await load(settings, SynthConfig("photography", 1_000, 23, organization_id=ORG))
    names = sorted({s[2] for s in rows["suppliers"]}, key=len, reverse=True)
    first = worker_factory.start(GROUP, "a", **worker_env(KEY_A))
    await first.wait_ready(timeout_s=120, min_partitions=4)

    old = await report(first.url, settings, 2024)
    old_bodies = await check_downloads(first.url, settings, old)
    csv_body = old_bodies[[a["format"] for a in old["artifacts"]].index("csv")]
    # distinctive plaintext of the report: a photographer's name and a revenue figure
    name = next(n for n in names if n.encode() in csv_body)
    lines = csv_body.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]  # the main table's rows
    figure = max((line.split(b",")[-1] for line in lines), key=len)  # a revenue in minor units
    assert len(figure) >= 6 and figure in csv_body, figure
    files = sorted((settings.artifact_dir / ORG / old["report_id"]).iterdir())
    assert [f.suffix for f in files] == [".csv", ".json", ".xlsx"]
    for f in files:
        data = f.read_bytes()
        assert data[:4] == b"WEDA"
        assert name.encode() not in data and figure not in data
    assert await key_rows(settings) == [(1, MasterKey.of(KEY_A).key_id)]

    # a new data key: new files are sealed with version 2, old ones still download
    done = cli(settings, "keys", "rotate", "--org", ORG, WEDDING_MASTER_KEY=b64(KEY_A))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{ORG}: data key version 2"
    mid = await report(first.url, settings, 2025)
    for f in (settings.artifact_dir / ORG / mid["report_id"]).iterdir():
        assert f.read_bytes()[5:9] == (2).to_bytes(4, "big")
    mid_bodies = await check_downloads(first.url, settings, mid)
    assert await check_downloads(first.url, settings, old) == old_bodies
    first.stop()

    # a new master key: every data key re-wrapped, then a worker holding only the new key
    refused = cli(
        settings, "keys", "rotate", "--master", "--org", ORG, WEDDING_MASTER_KEY=b64(KEY_B)
    )
    assert refused.returncode == 2 and "previous master key" in refused.stderr
    done = cli(
        settings,
        "keys",
        "rotate",
        "--master",
        "--org",
        ORG,
        WEDDING_MASTER_KEY=b64(KEY_B),
        WEDDING_MASTER_KEY_PREVIOUS=b64(KEY_A),
    )
    assert done.returncode == 0, done.stderr
    new_id = MasterKey.of(KEY_B).key_id
    assert f"2 key(s) re-wrapped under {new_id}" in done.stdout
    assert await key_rows(settings) == [(1, new_id), (2, new_id)]

    second = worker_factory.start(GROUP, "b", **worker_env(KEY_B))
    await second.wait_ready(timeout_s=120)
    assert await check_downloads(second.url, settings, old) == old_bodies
    assert await check_downloads(second.url, settings, mid) == mid_bodies
    new = await report(second.url, settings, 2023)
    await check_downloads(second.url, settings, new)

    # a file swapped on disk with another report's is refused, not served
    old_csv = settings.artifact_dir / ORG / old["report_id"] / "photography_business.csv"
    new_csv = settings.artifact_dir / ORG / new["report_id"] / "photography_business.csv"
    saved = new_csv.read_bytes()
    new_csv.write_bytes(old_csv.read_bytes())
    url = next(a["download_url"] for a in new["artifacts"] if a["format"] == "csv")
    async with (
        aiohttp.ClientSession(second.url) as s,
        s.get(url, headers=auth(settings, ORG)) as r,
    ):
        assert r.status == 500
        assert (await r.json())["error"]["code"] == "artifact_corrupt"
    new_csv.write_bytes(saved)
    assert await check_downloads(second.url, settings, old) == old_bodies
    await check_downloads(second.url, settings, new)


def test_a_worker_without_a_master_key_refuses_to_start(settings: Settings) -> None:
    done = cli(settings, "worker", "--web-port", "1", WEDDING_DEV_MODE="0")
    assert done.returncode == 2
    assert "WEDDING_MASTER_KEY: required" in done.stderr
