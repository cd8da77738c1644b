"""GDPR against a real worker, Kafka and PostgreSQL: export, erasure, retention.

Two organisations share a client id. Everything the erasure test checks afterwards is found
by scans written here, independent of the code under test: every row of every PostgreSQL
table (as the superuser, ``to_jsonb`` of the whole row), every RocksDB database in the
worker's data folder (opened read-only after the worker stopped), the interactions table's
changelog topic read with aiokafka (first: the latest record of each of the client's keys is a
tombstone; then, with the worker's compaction lag set to 2 s and the partition kept busy,
after compaction: no record of the client at all, tombstones included), the report cache's
changelog (A's entries tombstoned) and every file of the artifact store. The PostgreSQL and
artifact scans are first shown to find the client before the erasure.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import rocksdict
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream_app.crypto.keyring import KeyRing
from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.queries.partitions import partition_for
from stream_app.reports.artifacts import open_artifact
from stream_app.settings import Settings, load_settings
from stream_app.topics import CLIENT_INTERACTIONS
from stream_app.web.auth import issue_token
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth, read_topic, request_report_http

SUFFIX = uuid.uuid4().hex[:8]
APP_ID = f"gdpr-tests-{SUFFIX}"
ORG_A = f"gdpr-a-{SUFFIX}"
ORG_B = f"gdpr-b-{SUFFIX}"
CLIENT = f"cl-{SUFFIX}"  # the shared client id
OTHER = f"other-{SUFFIX}"  # a second client of each organisation, never erased
PERSON = {
    ORG_A: (f"Ana Apagada {SUFFIX}", f"ana.{SUFFIX}@example.org"),
    ORG_B: (f"Bea Guardada {SUFFIX}", f"bea.{SUFFIX}@example.net"),
}
LAG_MS = 2_000  # the changelog's max.compaction.lag.ms for this worker (short: the test waits)
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
async def gdpr_worker(worker_factory: WorkerFactory) -> AsyncIterator[WorkerProcess]:
    """A worker of its own (the erasure test stops it to open its RocksDB folder)."""
    worker = worker_factory.start(
        APP_ID,
        "gdpr",
        WEDDING_SCHEDULING="0",
        WEDDING_RETENTION_INTERVAL_S="2",
        WEDDING_CHANGELOG_MAX_COMPACTION_LAG_MS=str(LAG_MS),
        WEDDING_GDPR_ERASURE_WAIT_S="90",
        # the test's events are produced after the worker is ready: other tests' events of
        # the session are not folded again by this worker
        WEDDING_OFFSET_RESET="latest",
    )
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    yield worker
    worker.stop()


async def call(
    worker: WorkerProcess, method: str, path: str, org: str, **kw: Any
) -> tuple[int, Any]:
    """``method path`` with an admin token of ``org`` (signed with the worker's secret)."""
    secret = worker.env.get("WEDDING_JWT_SECRET", load_settings().jwt_secret)
    token = issue_token(secret, user_id="admin-1", organization_id=org, ttl_seconds=600)
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw) as r,
    ):
        return r.status, await r.json(content_type=None)


# --- the history the test writes, as literals (the export must give back exactly these) ---


def history(org: str) -> dict[str, list[dict[str, Any]]]:
    """The PostgreSQL rows of ``org`` about CLIENT (and OTHER, which must not be exported)."""
    name, email = PERSON[org]
    return {
        "clients": [
            {"organization_id": org, "id": CLIENT, "display_name": name, "email": email,
             "country": "PT"},
        ],
        "weddings": [
            {"organization_id": org, "id": "w1", "client_id": CLIENT,
             "wedding_date": "2026-06-13", "venue_id": "v1", "guest_count": 120},
        ],
        "bookings": [
            {"organization_id": org, "id": "bk1", "venue_id": "v1", "supplier_id": None,
             "client_id": CLIENT, "wedding_id": "w1", "service_date": "2026-06-13",
             "nights": 0, "booked_at": "2026-01-10T10:00:00+00:00", "amount_minor": 500000,
             "currency": "EUR", "status": "booked", "cancelled_at": None,
             "source_event_id": None, "office_id": None},
        ],
        "payments": [
            {"organization_id": org, "id": "p1", "booking_id": "bk1", "kind": "payment",
             "amount_minor": 200000, "currency": "EUR", "occurred_at": "2026-01-15T10:00:00+00:00"},
            {"organization_id": org, "id": "p2", "booking_id": "bk1", "kind": "payment",
             "amount_minor": 100000, "currency": "EUR", "occurred_at": "2026-03-01T10:00:00+00:00"},
        ],
        "feedback": [
            {"organization_id": org, "id": "f1", "client_id": CLIENT, "booking_id": "bk1",
             "rating": 5, "nps": 9, "submitted_at": "2026-06-20T10:00:00+00:00"},
        ],
    }  # fmt: skip


async def seed(conn: asyncpg.Connection, org: str) -> None:
    await upsert_organization(conn, Organization(org, f"Org {org}", "Europe/Lisbon", "EUR"))
    await upsert_venue(conn, org, Venue("v1", "Quinta", 2))
    h = history(org)
    c = h["clients"][0]
    await conn.execute(
        "INSERT INTO clients (organization_id, id, display_name, email, country)"
        " VALUES ($1, $2, $3, $4, $5), ($1, $6, 'Outro Cliente', NULL, 'ES')",
        org, CLIENT, c["display_name"], c["email"], c["country"], OTHER,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO weddings (organization_id, id, client_id, wedding_date, venue_id,"
        " guest_count) VALUES ($1, 'w1', $2, '2026-06-13', 'v1', 120)",
        org, CLIENT,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO bookings (organization_id, id, venue_id, client_id, wedding_id,"
        " service_date, nights, booked_at, amount_minor, currency, status) VALUES"
        " ($1, 'bk1', 'v1', $2, 'w1', '2026-06-13', 0, '2026-01-10T10:00Z', 500000, 'EUR',"
        "  'booked'),"
        " ($1, 'bk2', 'v1', $3, NULL, '2026-07-04', 0, '2026-02-01T10:00Z', 300000, 'EUR',"
        "  'booked')",
        org, CLIENT, OTHER,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO payments (organization_id, id, booking_id, kind, amount_minor, currency,"
        " occurred_at) VALUES ($1, 'p1', 'bk1', 'payment', 200000, 'EUR', '2026-01-15T10:00Z'),"
        " ($1, 'p2', 'bk1', 'payment', 100000, 'EUR', '2026-03-01T10:00Z'),"
        " ($1, 'p3', 'bk2', 'payment', 50000, 'EUR', '2026-02-02T10:00Z')",
        org,
    )
    await conn.execute(
        "INSERT INTO feedback (organization_id, id, client_id, booking_id, rating, nps,"
        " submitted_at) VALUES ($1, 'f1', $2, 'bk1', 5, 9, '2026-06-20T10:00Z'),"
        " ($1, 'f2', $3, 'bk2', 3, 6, '2026-07-10T10:00Z')",
        org, CLIENT, OTHER,
    )  # fmt: skip


def interaction(org: str, client: str, n: int, kind: str, minutes: int, **kw: Any) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": f"{org}-{client}-{n}",
            "organization_id": org,
            "occurred_at": (NOW - timedelta(hours=2) + timedelta(minutes=minutes)).isoformat(),
            "event_type": kind,
            "client_id": client,
            **kw,
        }
    )


async def produce_interactions(settings: Settings) -> None:
    events: list[tuple[str, str, int, str, int, dict[str, Any]]] = [
        (ORG_A, CLIENT, 1, "inquiry", 0, {"channel": "email"}),
        (ORG_A, CLIENT, 2, "response", 10, {}),
        (ORG_A, CLIENT, 3, "rating", 20, {"score": 5}),
        (ORG_A, OTHER, 1, "inquiry", 0, {}),
        (ORG_A, OTHER, 2, "rating", 30, {"score": 3}),
        (ORG_B, CLIENT, 1, "inquiry", 0, {}),
        (ORG_B, CLIENT, 2, "response", 5, {}),
        (ORG_B, CLIENT, 3, "booked", 60, {}),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for org, client, n, kind, minutes, kw in events:
            await producer.send_and_wait(
                CLIENT_INTERACTIONS,
                interaction(org, client, n, kind, minutes, **kw),
                key=f"{org}/{client}".encode(),
            )
    finally:
        await producer.stop()


async def wait_for(
    worker: WorkerProcess, org: str, path: str, check: Any, timeout_s: float = 90
) -> Any:
    deadline = time.monotonic() + timeout_s
    body: Any = None
    while time.monotonic() < deadline:
        status, body = await call(worker, "GET", path, org)
        if status == 200 and check(body):
            return body
        await asyncio.sleep(0.3)
    raise AssertionError(f"{path}: not as expected after {timeout_s} s: {body}")


# --- the independent scans ---


async def scan_postgres(conn: asyncpg.Connection, needles: dict[str, str]) -> dict[str, int]:
    """Rows of organisation A (or of no organisation) holding each needle, over every column
    of every table; personal fields (names, e-mails) are looked for in every row."""
    tables = await conn.fetch(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    )
    found = dict.fromkeys(needles, 0)
    for t in tables:
        name = t["table_name"]
        has_org = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema ="
            " current_schema() AND table_name = $1 AND column_name = 'organization_id'",
            name,
        )
        rows = await conn.fetch(f'SELECT to_jsonb(t)::text AS j, {"t.organization_id" if has_org else "NULL"} AS org FROM "{name}" t')  # fmt: skip  # noqa: E501
        for r in rows:
            for label, needle in needles.items():
                scoped = label == "client_id"
                if needle in r["j"] and (not scoped or r["org"] in (ORG_A, None)):
                    found[label] += 1
    return found


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def scan_files(settings: Settings, root: Path, needles: dict[str, str]) -> dict[str, int]:
    """Files of the store ``root`` holding each needle (UTF-8), in their raw bytes or, for an
    encrypted artifact (every report file), in its decrypted plaintext."""
    found = dict.fromkeys(needles, 0)
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=2)
    try:
        keys = KeyRing(pool)
        for path in await asyncio.to_thread(_files_under, root):
            data = await asyncio.to_thread(path.read_bytes)
            rel = path.relative_to(root)
            # decrypted: the two organisations of this test (other tests' files, under keys
            # of their own, are scanned as they are on disk)
            if data.startswith(b"WEDA") and len(rel.parts) == 3 and rel.parts[0] in (ORG_A, ORG_B):
                reader = await open_artifact(root, rel.parts[0], rel.as_posix(), keys)
                data = await asyncio.to_thread(reader.read_all)
            for label, needle in needles.items():
                found[label] += needle.encode() in data
    finally:
        await pool.close()
    return found


def scan_rocksdb(data_dir: Path) -> tuple[int, int, int]:
    """(records of A's client, records of B's client, databases) in every RocksDB database
    under ``data_dir``: a record is A's when its key or value holds the client id and its key
    is not one of B's; names and e-mails never reach Kafka and are asserted absent too."""
    a = b = dbs = 0
    client = CLIENT.encode()
    personal = [p.encode() for pair in PERSON.values() for p in pair]
    for current in data_dir.rglob("CURRENT"):
        db = rocksdict.Rdict(
            str(current.parent),
            options=rocksdict.Options(raw_mode=True),
            access_type=rocksdict.AccessType.read_only(),
        )
        dbs += 1
        try:
            for key, value in db.items():
                k, v = bytes(key), bytes(value)  # type: ignore[arg-type]
                assert not any(p in k or p in v for p in personal), k
                if client in k or client in v:
                    if ORG_B.encode() + b"/" + client in k:
                        b += 1
                    else:
                        a += 1
        finally:
            db.close()
    return a, b, dbs


async def compact_away(settings: Settings, changelog: str, started: float) -> float | None:
    """Write fillers to the partition of A's client until the changelog holds no record of
    the client (seconds since ``started``), or None after 150 s. B's rows must stay."""
    partition = partition_for(f"{ORG_A}/{CLIENT}".encode(), settings.topic_partitions)
    fillers = [
        c for c in (f"fill-{SUFFIX}-{n}" for n in range(200))
        if partition_for(f"{ORG_A}/{c}".encode(), settings.topic_partitions) == partition
    ][:5]  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        n = 0
        while time.monotonic() - started < 150:
            n += 1
            client = fillers[n % len(fillers)]
            await producer.send_and_wait(
                CLIENT_INTERACTIONS,
                interaction(ORG_A, client, n, "inquiry", 0),
                key=f"{ORG_A}/{client}".encode(),
            )
            records = await read_topic(settings.kafka_bootstrap, changelog)
            if not any(f"{ORG_A}/{CLIENT}/".encode() in r.key for r in records):
                b_rows = [r for r in records if f"{ORG_B}/{CLIENT}/".encode() in r.key]
                assert b_rows and b_rows[-1].value is not None
                return time.monotonic() - started
            await asyncio.sleep(1)
    finally:
        await producer.stop()
    return None


def file_hashes(folder: Path) -> dict[Path, str]:
    """SHA-256 of every file under ``folder``."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


async def topic_configs(settings: Settings, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (resp,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, None)]
        )
    finally:
        await admin.close()
    (resource,) = resp.resources
    return {entry[0]: entry[1] for entry in resource[4]}


async def org_rows(conn: asyncpg.Connection, org: str) -> dict[str, list[str]]:
    """Every row of ``org`` in the history tables, as JSON text (for before/after)."""
    out = {}
    for table in ("clients", "weddings", "bookings", "payments", "feedback", "gdpr_requests"):
        rows = await conn.fetch(
            f"SELECT to_jsonb(t)::text FROM {table} t WHERE organization_id = $1 ORDER BY id", org
        )
        out[table] = [r[0] for r in rows]
    return out


def normalise(row: dict[str, Any]) -> dict[str, Any]:
    """Timestamps compared as instants (the server's text form may use another offset)."""
    return {
        k: datetime.fromisoformat(v) if k.endswith("_at") and isinstance(v, str) else v
        for k, v in row.items()
        if k != "created_at"
    }


# --- tests ---


async def test_bad_gdpr_and_retention_bodies_are_400_naming_the_field(
    settings: Settings, gdpr_worker: WorkerProcess
) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await seed(conn, ORG_A)
        await seed(conn, ORG_B)
    finally:
        await conn.close()
    cases: list[tuple[str, Any, str]] = [
        ("gdpr/export", {}, "$.client_id"),
        ("gdpr/export", {"client_id": "a/b"}, "$.client_id"),
        ("gdpr/export", {"client_id": ".."}, "$.client_id"),
        ("gdpr/erase", {"client_id": "."}, "$.client_id"),
        ("gdpr/export", {"client_id": CLIENT, "kind": "erasure"}, "$.kind"),
        ("gdpr/erase", {"client_id": CLIENT, "why": "x"}, "$.why"),
        ("gdpr/erase", [CLIENT], "$"),
    ]
    for route, body, field in cases:
        status, answer = await call(gdpr_worker, "POST", f"/orgs/{ORG_A}/{route}", ORG_A, json=body)
        assert (status, answer["error"]["field"]) == (400, field), (route, body, answer)
    for body, field in [
        ({"artifacts_days": 0}, "$.artifacts_days"),
        ({"report_rows_days": "30"}, "$.report_rows_days"),
        ({"delivery_log_days": True}, "$.delivery_log_days"),
        ({"keep": 1}, "$.keep"),
    ]:
        status, answer = await call(
            gdpr_worker, "PUT", f"/orgs/{ORG_A}/retention", ORG_A, json=body
        )
        assert (status, answer["error"]["field"]) == (400, field), (body, answer)
    # another organisation's token cannot export or erase A's client
    async with (
        aiohttp.ClientSession(gdpr_worker.url) as s,
        s.post(
            f"/orgs/{ORG_A}/gdpr/erase", json={"client_id": CLIENT}, headers=auth(settings, ORG_B)
        ) as r,
    ):
        assert r.status == 403
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM gdpr_requests WHERE organization_id = $1", ORG_A
            )
            == 0
        )
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM clients WHERE organization_id = $1 AND id = $2", ORG_A, CLIENT
            )
            == 1
        )
    finally:
        await conn.close()


async def test_retention_job_deletes_what_the_rules_let_expire_once(
    settings: Settings, gdpr_worker: WorkerProcess
) -> None:
    org = f"gdpr-r-{SUFFIX}"
    root = settings.artifact_dir
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(org, "Retention", "Europe/Lisbon", "EUR"))
        ages = {"old-40": 40, "old-10": 10, "new-1": 1}
        for rid, days in ages.items():
            at = NOW - timedelta(days=days)
            folder = root / org / f"{org}-{rid}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "compliance.csv").write_text("a,b\n1,2\n")
            await conn.execute(
                "INSERT INTO reports (id, organization_id, user_id, report_type, status, request,"
                " artifacts, created_at, updated_at, generated_at, cache_key) VALUES"
                " ($1, $2, 'u', 'compliance', 'completed', '{}', $3::jsonb, $4, $4, $4, $5)",
                f"{org}-{rid}",
                org,
                orjson.dumps(
                    [{"format": "csv", "path": f"{org}/{org}-{rid}/compliance.csv"}]
                ).decode(),
                at,
                f"key-{rid}",
            )
            await conn.execute(
                "INSERT INTO delivery_log (schedule_id, organization_id, report_id, method,"
                " attempt, outcome, started_at, finished_at) VALUES"
                " ('s1', $1, $2, 'api', 1, 'delivered', $3, $3)",
                org,
                f"{org}-{rid}",
                at,
            )
    finally:
        await conn.close()
    status, body = await call(
        gdpr_worker,
        "PUT",
        f"/orgs/{org}/retention",
        org,
        json={"artifacts_days": 5, "report_rows_days": 30, "delivery_log_days": 7},
    )
    assert (status, body["artifacts_days"], body["report_rows_days"]) == (200, 5, 30), body
    status, body = await call(gdpr_worker, "GET", f"/orgs/{org}/retention", org)
    assert body == {
        "organization_id": org,
        "artifacts_days": 5,
        "report_rows_days": 30,
        "delivery_log_days": 7,
    }
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        deadline = time.monotonic() + 30
        runs: list[Any] = []
        while time.monotonic() < deadline:
            runs = await conn.fetch(
                "SELECT details FROM audit_log WHERE organization_id = $1"
                " AND action = 'retention.run' ORDER BY id",
                org,
            )
            if runs:
                break
            await asyncio.sleep(0.5)
        assert runs, "no retention run within 30 s"
        await asyncio.sleep(5)  # more intervals pass: nothing more is deleted
        runs = await conn.fetch(
            "SELECT details FROM audit_log WHERE organization_id = $1"
            " AND action = 'retention.run' ORDER BY id",
            org,
        )
        counts = [orjson.loads(r["details"]) for r in runs]
        assert len(counts) >= 2
        first = {k: counts[0][k] for k in ("artifact_files", "artifact_reports", "report_rows")}
        # old-40: row and file deleted; old-10: file deleted, row kept; new-1 untouched
        assert first == {"artifact_files": 2, "artifact_reports": 1, "report_rows": 1}
        assert counts[0]["delivery_log_rows"] == 2  # 40 and 10 days old; the 1-day one stays
        assert all(
            c["artifact_files"] == c["report_rows"] == c["delivery_log_rows"] == 0
            for c in counts[1:]
        )
        # each interval was claimed once
        slots = await conn.fetch("SELECT slot_start FROM retention_runs")
        assert len(slots) == len({s["slot_start"] for s in slots})
        reports = {
            r["id"]: orjson.loads(r["artifacts"])
            for r in await conn.fetch(
                "SELECT id, artifacts FROM reports WHERE organization_id = $1", org
            )
        }
        assert set(reports) == {f"{org}-old-10", f"{org}-new-1"}
        assert reports[f"{org}-old-10"] == [] and len(reports[f"{org}-new-1"]) == 1
        left = await conn.fetch(
            "SELECT report_id FROM delivery_log WHERE organization_id = $1", org
        )
        assert [r["report_id"] for r in left] == [f"{org}-new-1"]
    finally:
        await conn.close()
    assert sorted(p.parent.name for p in (root / org).rglob("*.csv")) == [f"{org}-new-1"]


async def test_erasing_a_client_the_organisation_does_not_hold_is_404_and_purges_nothing(
    settings: Settings, gdpr_worker: WorkerProcess
) -> None:
    """A client only B has, or nobody has: A's erasure answers 404 naming ``$.client_id`` and
    leaves A's report files, A's requests and audit log and B's client as they were (before,
    it answered 200 and purged every report file of A)."""
    only_b, nobody = f"onlyb-{SUFFIX}", f"nobody-{SUFFIX}"
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await conn.execute(
            "INSERT INTO clients (organization_id, id, display_name, email, country)"
            " VALUES ($1, $2, 'Só B', NULL, 'PT')",
            ORG_B,
            only_b,
        )
    finally:
        await conn.close()
    today = NOW.date()
    report = {  # not the dates of the next test's report: no cached answer shared with it
        "report_type": "compliance",
        "date_from": (today - timedelta(days=5)).isoformat(),
        "date_to": (today - timedelta(days=3)).isoformat(),
        "output_formats": ["csv"],
    }
    rep_a = await request_report_http(gdpr_worker.url, settings, ORG_A, report)
    assert rep_a["status"] == "completed", rep_a
    files_a = file_hashes(settings.artifact_dir / ORG_A)
    assert len(files_a) >= 1
    for client in (only_b, nobody):
        for action in ("erase", "export"):  # an export records nothing either
            status, answer = await call(
                gdpr_worker,
                "POST",
                f"/orgs/{ORG_A}/gdpr/{action}",
                ORG_A,
                json={"client_id": client},
            )
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            assert (status, error.get("code"), error.get("field")) == (
                404,
                "not_found",
                "$.client_id",
            ), (client, action, answer)
    assert file_hashes(settings.artifact_dir / ORG_A) == files_a
    status, rep = await call(
        gdpr_worker, "GET", f"/orgs/{ORG_A}/reports/{rep_a['report_id']}", ORG_A
    )
    assert status == 200 and len(rep["artifacts"]) == 1, rep
    assert "artifacts_purged" not in rep["metadata"]
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM gdpr_requests WHERE organization_id = $1),"
            " (SELECT count(*) FROM audit_log WHERE organization_id = $1"
            "  AND action LIKE 'gdpr.%'),"
            " (SELECT count(*) FROM clients WHERE organization_id = $2 AND id = $3)",
            ORG_A,
            ORG_B,
            only_b,
        )
    finally:
        await conn.close()
    assert tuple(counts) == (0, 0, 1)


async def test_requests_about_one_client_at_once_are_served_one_after_the_other(
    settings: Settings, gdpr_worker: WorkerProcess
) -> None:
    """An attacker round: an erasure and two exports of one client at once (a double click)
    ended in PostgreSQL deadlocks: 500s, and request rows left ``received`` or
    ``in_progress`` for ever (the compliance report's evidence). Now an organisation's GDPR
    transactions run one at a time: every request answers, every row is completed."""
    org = f"gdpr-race-{SUFFIX}"
    clients = [f"race-{n}-{SUFFIX}" for n in range(3)]
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(org, "Race", "Europe/Lisbon", "EUR"))
        await conn.executemany(
            "INSERT INTO clients (organization_id, id, display_name, email, country)"
            " VALUES ($1, $2, 'Race', 'race@example.com', 'PT')",
            [(org, c) for c in clients],
        )
    finally:
        await conn.close()

    def post(action: str, client: str) -> Any:
        path = f"/orgs/{org}/gdpr/{action}"
        return call(gdpr_worker, "POST", path, org, json={"client_id": client})

    answers: list[tuple[int, Any]] = []
    for client in clients[:2]:  # an erasure beside two exports of the same client
        answers += await asyncio.gather(
            post("export", client), post("erase", client), post("export", client)
        )
    # three erasures of one client at once: one erases, the others find it erased (a second
    # round's finding: all three answered completed and purged the files three times)
    erasures = await asyncio.gather(*(post("erase", clients[2]) for _ in range(3)))
    assert sorted(status for status, _ in erasures) == [200, 404, 404], erasures
    answers += erasures
    assert all(status in (200, 404) for status, _ in answers), answers
    assert [answers[1][0], answers[4][0]] == [200, 200]  # each erasure of the first two
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        statuses = await conn.fetch(
            "SELECT status, count(*) FROM gdpr_requests WHERE organization_id = $1 GROUP BY status",
            org,
        )
        # an export answered after the erasure's database step wrote the erased id back (a
        # second round's finding): no request row holds a client's id in clear
        clear = await conn.fetchval(
            "SELECT count(*) FROM gdpr_requests WHERE organization_id = $1"
            " AND client_id = ANY($2::text[])",
            org,
            clients,
        )
        left = await conn.fetchval(
            "SELECT count(*) FROM clients WHERE organization_id = $1 AND id = ANY($2::text[])",
            org,
            clients,
        )
    finally:
        await conn.close()
    recorded = sum(1 for status, _ in answers if status == 200)
    assert dict(statuses) == {"completed": recorded}
    assert (clear, left) == (0, 0)


async def test_export_then_erasure_leaves_no_trace_of_the_client_in_a_and_b_intact(
    settings: Settings, gdpr_worker: WorkerProcess
) -> None:
    name_a, email_a = PERSON[ORG_A]
    name_b, email_b = PERSON[ORG_B]
    await produce_interactions(settings)
    path_a = f"/orgs/{ORG_A}/clients/{CLIENT}/interactions"
    path_b = f"/orgs/{ORG_B}/clients/{CLIENT}/interactions"
    await wait_for(gdpr_worker, ORG_A, path_a, lambda b: b["ratings"] == {"5": 1})
    await wait_for(
        gdpr_worker, ORG_A, f"/orgs/{ORG_A}/clients/{OTHER}/interactions",
        lambda b: b["ratings"] == {"3": 1},
    )  # fmt: skip
    live_b = await wait_for(gdpr_worker, ORG_B, path_b, lambda b: b["bookings"] == 1)
    month = NOW.strftime("%Y-%m")
    prev = (NOW.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    summary = f"/interactions/summary?from={prev}&to={month}"
    sum_a = await wait_for(gdpr_worker, ORG_A, f"/orgs/{ORG_A}{summary}", lambda b: True)
    sum_b = await wait_for(gdpr_worker, ORG_B, f"/orgs/{ORG_B}{summary}", lambda b: True)
    assert sum_a["totals"]["clients"] == 2 and sum_a["ratings"]["average_milli"] == 4000

    # --- export (Art. 15): exactly the rows written above, and the live row ---
    status, doc = await call(
        gdpr_worker, "POST", f"/orgs/{ORG_A}/gdpr/export", ORG_A, json={"client_id": CLIENT}
    )
    assert status == 200, doc
    expected = history(ORG_A)
    for table, rows in expected.items():
        assert [normalise(r) for r in doc["postgresql"][table]] == [normalise(r) for r in rows], (
            table
        )
    # its own request is the document's request_id, not a row of it (a trial user saw it
    # listed "in_progress"); a second export lists the first, completed
    assert doc["postgresql"]["gdpr_requests"] == []
    status, again = await call(
        gdpr_worker, "POST", f"/orgs/{ORG_A}/gdpr/export", ORG_A, json={"client_id": CLIENT}
    )
    assert status == 200 and again["request_id"] != doc["request_id"], again
    (req,) = again["postgresql"]["gdpr_requests"]
    assert (req["id"], req["kind"], req["client_id"], req["status"]) == (
        doc["request_id"],
        "access",
        CLIENT,
        "completed",
    )
    live = doc["live_tables"]["client-interaction-totals"]
    assert (live["inquiries"], live["responses"], live["first_response_seconds"]) == (1, 1, 600)
    assert (live["ratings"], live["average_rating_milli"]) == ({"5": 1}, 5000)
    assert ORG_B not in orjson.dumps(doc).decode() and OTHER not in orjson.dumps(doc).decode()

    # --- a report of each organisation (A's lists the access request, with the client id) ---
    today = NOW.date()
    report = {
        "report_type": "compliance",
        "date_from": (today - timedelta(days=2)).isoformat(),
        "date_to": (today + timedelta(days=1)).isoformat(),
        "output_formats": ["csv", "json"],
    }
    rep_a = await request_report_http(gdpr_worker.url, settings, ORG_A, report)
    rep_b = await request_report_http(gdpr_worker.url, settings, ORG_B, report)
    assert rep_a["status"] == rep_b["status"] == "completed", (rep_a, rep_b)
    root = settings.artifact_dir
    files_b = file_hashes(root / ORG_B)
    assert files_b

    needles = {"client_id": CLIENT, "name": name_a, "email": email_a}
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        before_pg = await scan_postgres(conn, needles)
        before_b = await org_rows(conn, ORG_B)
        totals_sql = (
            "SELECT (SELECT count(*) FROM bookings WHERE organization_id = $1),"
            " (SELECT sum(amount_minor) FROM bookings WHERE organization_id = $1),"
            " (SELECT sum(amount_minor) FROM payments WHERE organization_id = $1),"
            " (SELECT count(*) FROM feedback WHERE organization_id = $1),"
            " (SELECT avg(rating)::float FROM feedback WHERE organization_id = $1)"
        )
        totals_before = tuple(await conn.fetchrow(totals_sql, ORG_A))
    finally:
        await conn.close()
    # the scans do find the client before the erasure (clients, weddings, bookings, feedback,
    # gdpr_requests)
    assert before_pg["client_id"] >= 5 and before_pg["name"] == before_pg["email"] == 1
    assert (await scan_files(settings, root, needles))["client_id"] >= 1
    assert totals_before == (2, 800000, 350000, 2, 4.0)

    # --- erasure (Art. 17) ---
    status, erased = await call(
        gdpr_worker, "POST", f"/orgs/{ORG_A}/gdpr/erase", ORG_A, json={"client_id": CLIENT}
    )
    assert (status, erased["status"]) == (200, "completed"), erased
    pg = erased["result"]["postgresql"]
    assert (pg["clients.deleted"], pg["feedback.deleted"]) == (1, 1)
    assert (pg["bookings.pseudonymised"], pg["weddings.pseudonymised"]) == (1, 1)
    assert pg["gdpr_requests.pseudonymised"] == 3  # the two access requests and this one
    assert erased["result"]["artifact_files_deleted"] >= 2
    assert CLIENT not in orjson.dumps(erased).decode()

    # live reads: A's client reads as nothing, B's is untouched; A's totals lose one client
    status, after_a = await call(gdpr_worker, "GET", path_a, ORG_A)
    assert (after_a["inquiries"], after_a["responses"], after_a["ratings"]) == (0, 0, {})
    assert (await call(gdpr_worker, "GET", path_b, ORG_B))[1] == live_b
    new_a = (await call(gdpr_worker, "GET", f"/orgs/{ORG_A}{summary}", ORG_A))[1]
    assert new_a["totals"]["clients"] == 1 and new_a["ratings"]["average_milli"] == 3000
    assert (await call(gdpr_worker, "GET", f"/orgs/{ORG_B}{summary}", ORG_B))[1] == sum_b
    # A's report files are gone and its download is refused; B's files are byte-identical
    status, rep = await call(
        gdpr_worker, "GET", f"/orgs/{ORG_A}/reports/{rep_a['report_id']}", ORG_A
    )
    assert rep["artifacts"] == [] and rep["metadata"]["artifacts_purged"] == erased["request_id"]
    status, _ = await call(
        gdpr_worker, "GET", f"/orgs/{ORG_A}/reports/{rep_a['report_id']}/files/csv", ORG_A
    )
    assert status == 404
    assert file_hashes(root / ORG_B) == files_b
    # an export after the erasure: nothing held, so 404 and nothing recorded (a request row
    # would store the erased id again: the scan below finds none)
    status, answer = await call(
        gdpr_worker, "POST", f"/orgs/{ORG_A}/gdpr/export", ORG_A, json={"client_id": CLIENT}
    )
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (
        404,
        "not_found",
        "$.client_id",
    ), answer

    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        assert await scan_postgres(conn, needles) == {"client_id": 0, "name": 0, "email": 0}
        assert await org_rows(conn, ORG_B) == before_b
        assert await scan_postgres(conn, {"name": name_b, "email": email_b}) == {
            "name": 1,
            "email": 1,
        }
        # money kept (pseudonymised), the client's feedback deleted: README's rule
        assert tuple(await conn.fetchrow(totals_sql, ORG_A)) == (2, 800000, 350000, 1, 3.0)
        requests = await conn.fetch(
            "SELECT kind, status, client_id, pseudonym FROM gdpr_requests"
            " WHERE organization_id = $1 ORDER BY received_at",
            ORG_A,
        )
        assert [(r["kind"], r["status"]) for r in requests] == [
            ("access", "completed"),
            ("access", "completed"),
            ("erasure", "completed"),
        ]
        pseudonym = requests[2]["pseudonym"]
        assert pseudonym.startswith("erased-") and {r["client_id"] for r in requests} == {pseudonym}
        actions = [
            r["action"]
            for r in await conn.fetch(
                "SELECT action FROM audit_log WHERE organization_id = $1 AND action LIKE 'gdpr.%'"
                " ORDER BY id",
                ORG_A,
            )
        ]
        assert actions == [
            "gdpr.access.received",
            "gdpr.access.completed",
            "gdpr.access.received",
            "gdpr.access.completed",
            "gdpr.erasure.received",
            "gdpr.erasure.completed",
        ]
    finally:
        await conn.close()
    assert await scan_files(settings, root, needles) == {"client_id": 0, "name": 0, "email": 0}

    # changelogs: the latest record of each of A's client keys is a tombstone; B's is a value
    changelog = f"{APP_ID}-client-interaction-totals-changelog"
    latest: dict[bytes, bytes | None] = {}
    for rec in await read_topic(settings.kafka_bootstrap, changelog):
        latest[rec.key] = rec.value
    mine = {k: v for k, v in latest.items() if f"{ORG_A}/{CLIENT}/".encode() in k}
    theirs = {k: v for k, v in latest.items() if f"{ORG_B}/{CLIENT}/".encode() in k}
    # one row per client (re-sends are caught by dedupe records keyed by a digest of the
    # event id, which names no client)
    assert len(mine) == 1 and all(v is None for v in mine.values()), mine
    assert len(theirs) == 1 and all(v is not None for v in theirs.values())
    configs = await topic_configs(settings, changelog)
    assert configs["cleanup.policy"] == "compact"
    assert configs["max.compaction.lag.ms"] == configs["delete.retention.ms"] == str(LAG_MS)
    assert configs["segment.ms"] == str(LAG_MS)
    # the report cache's entries of A are tombstoned as well
    cache_latest: dict[bytes, bytes | None] = {}
    for rec in await read_topic(settings.kafka_bootstrap, f"{APP_ID}-report-cache-changelog"):
        cache_latest[rec.key] = rec.value
    a_cache = {k: v for k, v in cache_latest.items() if ORG_A.encode() in k}
    assert a_cache and all(v is None for v in a_cache.values())
    inputs = await topic_configs(settings, CLIENT_INTERACTIONS)
    assert (inputs["retention.ms"], inputs["segment.ms"]) == (str(7 * 86_400_000), "86400000")

    # compaction: while the partition keeps being written (fillers of another client of A in
    # the same partition), the broker removes the client's records, tombstones included,
    # within the configured bound: afterwards the changelog holds no record of A's client
    started = time.monotonic()
    gone_after = await compact_away(settings, changelog, started)
    assert gone_after is not None, "A's client still in the changelog after 150 s"
    print(f"changelog compacted {gone_after:.1f} s after the erasure (lag {LAG_MS} ms)")

    # RocksDB: stop the worker, open every database read-only
    gdpr_worker.stop()
    a, b, dbs = scan_rocksdb(gdpr_worker.data_dir)
    assert dbs >= 4 and a == 0 and b == 1, (a, b, dbs)  # B's client row (no guard row now)
