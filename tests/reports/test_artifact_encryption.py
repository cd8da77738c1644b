"""Encryption at rest of report files, with data keys in a real PostgreSQL.

Each test renders real reports through the artifact store with an organisation's data key,
then attacks the files on disk as someone with the disk would: reads them for plaintext,
flips a byte, truncates, swaps files between reports and organisations, reorders segments,
edits the key version in the header. Expected plaintext comes from rendering the same table
without the store's encryption (CSV and JSON are byte-for-byte deterministic) and from an
independent reader (openpyxl) for Excel.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import openpyxl
import pytest

from stream_app.crypto.backfill import seal_existing
from stream_app.crypto.keyring import KeyRing
from stream_app.crypto.keys import (
    DataKeyNotFoundError,
    MasterKey,
    MasterKeyError,
    MasterKeys,
    load_master_keys,
)
from stream_app.crypto.rotation import rotate
from stream_app.crypto.segmented import HEADER_BYTES, SEGMENT_SIZE, TAG_BYTES
from stream_app.reports.artifacts import (
    ArtifactIntegrityError,
    ArtifactMissingError,
    ArtifactStore,
    HashingWriter,
    open_artifact,
)
from stream_app.reports.model import Cell, Column, ReportTable
from stream_app.reports.render import RENDERERS
from stream_app.schedules.sealing import unseal_schedule
from stream_app.schedules.store import create_schedule, get_schedule
from stream_app.schemas.updates import ArtifactLink
from tests.conftest import NewOrg
from tests.delivery.test_webhook import SECRET, hook_schedule
from tests.reports.test_render import CAFE, make_table

MASTER_A = MasterKey.of(bytes(range(32)))
MASTER_B = MasterKey.of(hashlib.sha256(b"second master key of the tests").digest())
FIGURE = "11601850.23"
"""A revenue figure of the rendered table (tests.reports.test_render.py ROWS)."""


def plain(fmt: str, table: ReportTable) -> bytes:
    """``table`` rendered in ``fmt`` into memory, without the artifact store."""
    buf = io.BytesIO()
    RENDERERS[fmt][1](table, HashingWriter(buf))
    return buf.getvalue()


def store_file(
    store: ArtifactStore, key_org: str, report_id: str, fmt: str, table: ReportTable, key: object
) -> ArtifactLink:
    ext, renderer = RENDERERS[fmt]
    with store.write(key_org, report_id, f"report.{ext}", fmt, key=key) as (w, out):  # type: ignore[arg-type]
        renderer(table, w)
    return out[0]


def big_table(rows: int) -> ReportTable:
    """A CSV of several 64 KiB segments (each row names the venue and a figure)."""
    columns = (Column("venue_name", "text", "venue"), Column("revenue", "money", "revenue"))
    data: list[list[Cell]] = [[f"{CAFE} #{i}", f"{i}.25"] for i in range(rows)]
    return make_table(data, columns, None)


@pytest.fixture
def ring(pg_pool: asyncpg.Pool) -> KeyRing:
    return KeyRing(pg_pool, MasterKeys(MASTER_A))


async def test_files_on_disk_hold_no_plaintext_and_decrypt_to_the_rendered_bytes(
    tmp_path: Path, ring: KeyRing, new_org: NewOrg
) -> None:
    org = await new_org()
    key = await ring.current(org)
    store = ArtifactStore(tmp_path)
    for fmt in ("csv", "json", "excel", "pdf", "powerpoint"):
        table = make_table()
        link = store_file(store, org, "r1", fmt, table, key)
        raw = (tmp_path / link.path).read_bytes()
        assert raw[:4] == b"WEDA" and raw[5:9] == (1).to_bytes(4, "big")  # magic, key version 1
        for needle in (CAFE.encode(), FIGURE.encode(), b"Dar Al-Kuwait", b"PK\x03\x04", b"%PDF"):
            assert needle not in raw, (fmt, needle)
        reader = await open_artifact(tmp_path, org, link.path, ring)
        got = reader.read_all()
        assert reader.size == len(got) == link.size_bytes
        assert hashlib.sha256(got).hexdigest() == link.sha256  # checksums are of the plaintext
        assert b"".join([c async for c in reader.chunks()]) == got
        if fmt in ("csv", "json"):
            assert got == plain(fmt, make_table())
            assert CAFE.encode() in got and FIGURE.encode() in got
        if fmt == "excel":
            sheet = openpyxl.load_workbook(io.BytesIO(got), read_only=True)["data"]
            names = [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)]
            assert names[0] == CAFE
        if fmt == "pdf":
            assert got.startswith(b"%PDF")
    # nothing else in the folder: no plaintext partial or temporary file was left behind
    assert sorted(p.name for p in (tmp_path / org / "r1").iterdir()) == [
        "report.csv", "report.json", "report.pdf", "report.pptx", "report.xlsx",
    ]  # fmt: skip


async def test_tampering_is_detected_with_a_clear_error(
    tmp_path: Path, ring: KeyRing, new_org: NewOrg
) -> None:
    org_a, org_b = await new_org(), await new_org()
    store = ArtifactStore(tmp_path)
    table_rows = 12_000  # about 5 segments of CSV
    key_a = await ring.current(org_a)
    link = store_file(store, org_a, "r1", "csv", big_table(table_rows), key_a)
    other = store_file(store, org_a, "r2", "csv", big_table(table_rows), key_a)
    path = tmp_path / link.path
    original = path.read_bytes()
    segments = -(-(len(original) - HEADER_BYTES) // (SEGMENT_SIZE + TAG_BYTES))
    assert segments >= 4
    expected = plain("csv", big_table(table_rows))
    assert (await open_artifact(tmp_path, org_a, link.path, ring)).read_all() == expected

    async def read() -> bytes:
        return (await open_artifact(tmp_path, org_a, link.path, ring)).read_all()

    # a flipped byte in the third segment: the first segments pass, the third fails
    flipped = bytearray(original)
    flipped[HEADER_BYTES + 2 * (SEGMENT_SIZE + TAG_BYTES) + 100] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(ArtifactIntegrityError, match=r"segment 2 of \d+ failed authentication"):
        await read()

    # truncated at a segment boundary (the new last segment was not sealed as last)
    path.write_bytes(original[: HEADER_BYTES + 2 * (SEGMENT_SIZE + TAG_BYTES)])
    with pytest.raises(ArtifactIntegrityError, match="segment 1 of 2 failed authentication"):
        await read()
    # truncated inside a segment, and inside the last tag
    for cut in (len(original) - 1000, HEADER_BYTES + 10):
        path.write_bytes(original[:cut])
        with pytest.raises(ArtifactIntegrityError):
            await read()

    # two segments swapped
    full = SEGMENT_SIZE + TAG_BYTES
    s1 = original[HEADER_BYTES : HEADER_BYTES + full]
    s2 = original[HEADER_BYTES + full : HEADER_BYTES + 2 * full]
    path.write_bytes(original[:HEADER_BYTES] + s2 + s1 + original[HEADER_BYTES + 2 * full :])
    with pytest.raises(ArtifactIntegrityError, match="segment 0 of"):
        await read()

    # another report's file of the same organisation, put in this report's place
    path.write_bytes((tmp_path / other.path).read_bytes())
    with pytest.raises(ArtifactIntegrityError, match="segment 0 of"):
        await read()

    # another organisation's file (sealed with its own key) put in place of A's
    key_b = await ring.current(org_b)
    b_link = store_file(store, org_b, "r1", "csv", big_table(10), key_b)
    # B's key has version 1 too: the header names a key A holds, the binding still fails
    path.write_bytes((tmp_path / b_link.path).read_bytes())
    with pytest.raises(ArtifactIntegrityError, match="segment 0 of"):
        await read()

    # the key version in the header edited to one that does not exist
    path.write_bytes(original[:5] + (7).to_bytes(4, "big") + original[9:])
    with pytest.raises(DataKeyNotFoundError, match="no data key version 7"):
        await read()

    # not an encrypted file at all (a plaintext file dropped into the store)
    path.write_bytes(expected)
    with pytest.raises(ArtifactIntegrityError, match="not an encrypted artifact"):
        await read()

    # a path of another organisation or outside the store is refused before any read
    with pytest.raises(ArtifactMissingError):
        await open_artifact(tmp_path, org_a, b_link.path, ring)
    with pytest.raises(ArtifactMissingError):
        await open_artifact(tmp_path, org_a, f"{org_a}/../{b_link.path}", ring)

    # the victim's untouched file still reads intact
    path.write_bytes(original)
    assert await read() == expected


async def test_key_rotation_keeps_old_files_readable(
    tmp_path: Path, pg_dsn: str, pg_pool: asyncpg.Pool, new_org: NewOrg
) -> None:
    org = await new_org()
    store = ArtifactStore(tmp_path)
    ring_a = KeyRing(pg_pool, MasterKeys(MASTER_A), current_ttl_s=0.001)
    v1 = store_file(store, org, "r1", "csv", make_table(), await ring_a.current(org))

    # data key rotation: new files use version 2, the version-1 file still opens
    (result,) = await rotate(pg_dsn, MasterKeys(MASTER_A), organization_id=org)
    assert (result.new_version, result.rewrapped) == (2, 0)
    key2 = await ring_a.current(org)
    assert key2.version == 2
    v2 = store_file(store, org, "r2", "csv", make_table(), key2)
    assert (tmp_path / v2.path).read_bytes()[5:9] == (2).to_bytes(4, "big")
    expected = plain("csv", make_table())
    for link in (v1, v2):
        assert (await open_artifact(tmp_path, org, link.path, ring_a)).read_all() == expected

    # master rotation: without the previous key nothing is re-wrapped (refused before it
    # starts: the new key alone wraps none of the stored data keys)
    with pytest.raises(MasterKeyError, match="wraps none of the stored data keys"):
        await rotate(pg_dsn, MasterKeys(MASTER_B), organization_id=org, data=False, master=True)
    (result,) = await rotate(
        pg_dsn, MasterKeys(MASTER_B, MASTER_A), organization_id=org, data=False, master=True
    )
    assert (result.new_version, result.rewrapped) == (None, 2)
    async with pg_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT master_key_id, wrapped_key FROM organization_data_keys"
            " WHERE organization_id = $1",
            org,
        )
    assert {r["master_key_id"] for r in rows} == {MASTER_B.key_id}
    # a worker with only the new master key reads old and new files
    ring_b = KeyRing(pg_pool, MasterKeys(MASTER_B))
    for link in (v1, v2):
        assert (await open_artifact(tmp_path, org, link.path, ring_b)).read_all() == expected
    # and one with only the old master key names the problem
    with pytest.raises(MasterKeyError, match=f"wrapped by master key {MASTER_B.key_id}"):
        await open_artifact(tmp_path, org, v1.path, KeyRing(pg_pool, MasterKeys(MASTER_A)))
    # the data keys in PostgreSQL are not the keys: no wrapped key equals an unwrapped one
    keys = {(await ring_b.get(org, v)).key for v in (1, 2)}
    assert not keys & {bytes(r["wrapped_key"]) for r in rows}
    assert not any(k in bytes(r["wrapped_key"]) for k in keys for r in rows)


async def test_a_download_unwraps_each_key_once(
    tmp_path: Path, ring: KeyRing, new_org: NewOrg
) -> None:
    org = await new_org()
    store = ArtifactStore(tmp_path)
    link = store_file(store, org, "r1", "csv", big_table(12_000), await ring.current(org))
    before = ring.unwraps
    for _ in range(3):
        reader = await open_artifact(tmp_path, org, link.path, ring)
        assert len(b"".join([c async for c in reader.chunks()])) == link.size_bytes
    assert ring.unwraps == before  # the cached key served 3 downloads of 5+ segments each


def test_master_key_sources_and_the_development_switch(tmp_path: Path) -> None:
    encoded = base64.b64encode(MASTER_A.key).decode()
    assert load_master_keys({"WEDDING_MASTER_KEY": encoded}).current.key_id == MASTER_A.key_id
    key_file = tmp_path / "master.key"
    key_file.write_text(encoded + "\n")
    got = load_master_keys({"WEDDING_MASTER_KEY_FILE": str(key_file)})
    assert got.current.key == MASTER_A.key and not got.current.development
    with pytest.raises(MasterKeyError, match="WEDDING_MASTER_KEY: required"):
        load_master_keys({})
    with pytest.raises(MasterKeyError, match="WEDDING_MASTER_KEY: required"):
        load_master_keys({"WEDDING_DEV_MODE": "0"})
    assert load_master_keys({"WEDDING_DEV_MODE": "1"}).current.development
    with pytest.raises(MasterKeyError, match="must decode to 32 bytes, got 16"):
        load_master_keys({"WEDDING_MASTER_KEY": base64.b64encode(os.urandom(16)).decode()})
    with pytest.raises(MasterKeyError, match="not base64"):
        load_master_keys({"WEDDING_MASTER_KEY": "not base64 at all!"})
    with pytest.raises(MasterKeyError, match="not both"):
        load_master_keys({"WEDDING_MASTER_KEY": encoded, "WEDDING_MASTER_KEY_FILE": "x"})
    both = load_master_keys(
        {
            "WEDDING_MASTER_KEY": base64.b64encode(MASTER_B.key).decode(),
            "WEDDING_MASTER_KEY_PREVIOUS": encoded,
        }
    )
    assert both.previous is not None and both.previous.key_id == MASTER_A.key_id
    assert "key=" not in repr(both)  # the key bytes never show in a repr or a log line


def test_excel_rendering_leaves_no_plaintext_in_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mid-render, every file the process has open under the temporary folder (the row spool
    is an anonymous file, reachable through /proc/self/fd) holds none of the rows' text."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    marker = "Quinta da Regaleira Hall"
    seen: list[int] = []

    def rows() -> Iterator[list[Cell]]:
        for i in range(30_000):
            if i == 29_000:  # about 1.5 MB of row XML spooled by now
                for fd in Path("/proc/self/fd").iterdir():
                    target = os.readlink(fd) if fd.is_symlink() else ""
                    if target.startswith(str(tmp)):
                        data = fd.read_bytes() if fd.exists() else b""
                        seen.append(len(data))
                        assert marker.encode() not in data and b"<row" not in data
            yield [f"{marker} {i}", f"{i}.25"]

    columns = (Column("venue_name", "text", "venue"), Column("revenue", "money", "revenue"))
    table = make_table(rows(), columns, None)
    buf = io.BytesIO()
    RENDERERS["excel"][1](table, HashingWriter(buf))
    assert seen and max(seen) > 1_000_000  # the spool was found, and it holds the rows
    assert list(tmp.iterdir()) == []  # nothing left behind
    sheet = openpyxl.load_workbook(io.BytesIO(buf.getvalue()), read_only=True)["data"]
    got = [r[0] for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert len(got) == 30_000 and got[29_999] == f"{marker} 29999"


async def test_seal_existing_encrypts_what_was_stored_in_plaintext(
    tmp_path: Path, pg_dsn: str, pg_pool: asyncpg.Pool, new_org: NewOrg
) -> None:
    org = await new_org()
    store = ArtifactStore(tmp_path)
    link = store_file(store, org, "old-report", "csv", make_table(), None)  # before encryption
    (tmp_path / "no-such-org" / "r").mkdir(parents=True)
    (tmp_path / "no-such-org" / "r" / "x.csv").write_bytes(b"a,b\r\n")
    schedule = hook_schedule("https://hooks.example.org/in")(org)
    async with pg_pool.acquire() as conn:
        await create_schedule(conn, schedule, datetime.now(UTC))
        # as a row written before encryption at rest: the secret in plaintext
        await conn.execute(
            "UPDATE schedules SET delivery_secrets = $2::text::jsonb WHERE organization_id = $1",
            org,
            f'{{"secret": "{SECRET}"}}',
        )
    masters = load_master_keys()  # the environment's (development) key, as create_schedule's
    done = await seal_existing(pg_dsn, masters, tmp_path)
    assert (done.files_sealed, done.files_skipped, done.schedules_sealed) == (1, 1, 1)
    raw = (tmp_path / link.path).read_bytes()
    assert raw[:4] == b"WEDA" and CAFE.encode() not in raw
    ring = KeyRing(pg_pool, masters)
    got = (await open_artifact(tmp_path, org, link.path, ring)).read_all()
    assert got == plain("csv", make_table()) and hashlib.sha256(got).hexdigest() == link.sha256
    async with pg_pool.acquire() as conn:
        stored = await get_schedule(conn, org, schedule.schedule_id)
        column = await conn.fetchval(
            "SELECT delivery_secrets::text FROM schedules WHERE organization_id = $1", org
        )
        await conn.execute("DELETE FROM schedules WHERE organization_id = $1", org)
    assert SECRET not in column and "wedding-sealed:v1:1:" in column
    assert await unseal_schedule(stored.schedule, ring) == schedule
    again = await seal_existing(pg_dsn, masters, tmp_path)  # idempotent
    assert (again.files_sealed, again.files_already, again.schedules_sealed) == (0, 1, 0)
    # a master key that wraps none of the stored data keys is refused before any file is
    # touched (`keys rotate` wrapped a deployment's new data key under the development key
    # left on in a new user's shell; this command would have done the same)
    stray = MasterKeys(MasterKey.of(hashlib.sha256(b"a master key nobody used").digest()))
    with pytest.raises(MasterKeyError, match=r"keys seal-existing's master key .* wraps none"):
        await seal_existing(pg_dsn, stray, tmp_path)
    assert (tmp_path / link.path).read_bytes() == raw
