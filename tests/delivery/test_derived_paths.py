"""The delivery never opens the path a ``report-results`` message names: the files are derived
from the run's organisation, the report id, the schedule's type and the format (issue 9)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
import pytest

from stream_app.crypto.keyring import KeyRing
from stream_app.delivery.base import PermanentDeliveryError
from stream_app.delivery.dispatch import resolve_files
from stream_app.reports.artifacts import ArtifactStore
from stream_app.schemas.updates import ArtifactLink, ReportStatus
from tests.conftest import NewOrg

TYPE = "monthly_booking_summary"


async def store_file(root: Path, keys: KeyRing, org: str, report: str, data: bytes) -> ArtifactLink:
    key = await keys.current(org)
    with ArtifactStore(root).write(org, report, f"{TYPE}.csv", "csv", key=key) as (writer, out):
        writer.write(data)
        writer.rows = 1
    return out[0]


@pytest.fixture
def keys(db: asyncpg.Pool) -> KeyRing:
    """Data keys of the test organisations (master key: WEDDING_DEV_MODE, tests/conftest.py)."""
    return KeyRing(db)


def status(org: str, report: str, link: ArtifactLink) -> ReportStatus:
    return ReportStatus(
        kind="report_status",
        report_id=report,
        organization_id=org,
        report_type=TYPE,
        status="completed",
        at=datetime(2031, 1, 1, tzinfo=UTC),
        artifacts=[link],
    )


def forged(link: ArtifactLink, **changes: object) -> ArtifactLink:
    """``link`` with some fields replaced, as a writer to ``report-results`` could send it."""
    return msgspec.structs.replace(link, **changes)


async def test_a_forged_path_to_another_tenants_file_is_not_followed(
    tmp_path: Path, keys: KeyRing, new_org: NewOrg
) -> None:
    a, b = await new_org(), await new_org()
    own = await store_file(tmp_path, keys, a, "r1", b"a's rows\r\n")
    victim = await store_file(tmp_path, keys, b, "secret", b"b's confidential rows\r\n")
    # the message points at B's file and carries B's checksum and size
    message = status(
        a,
        "r1",
        forged(own, path=victim.path, sha256=victim.sha256, size_bytes=victim.size_bytes),
    )
    with pytest.raises(PermanentDeliveryError, match="does not match its checksum"):
        await resolve_files(message, tmp_path, keys, organization_id=a, report_type=TYPE)
    # with the report's own checksum the file sent is A's own, whatever path the message says
    message = status(a, "r1", forged(own, path="../../etc/passwd", uri="file:///etc/passwd"))
    (sent,) = await resolve_files(message, tmp_path, keys, organization_id=a, report_type=TYPE)
    assert sent.path == (tmp_path / a / "r1" / f"{TYPE}.csv").resolve()
    plain = b"".join(sent.reader.iter_chunks()) if sent.reader is not None else b"(no reader)"
    assert plain == b"a's rows\r\n"
    assert hashlib.sha256(plain).hexdigest() == own.sha256
    assert sent.link.path == f"{a}/r1/{TYPE}.csv"  # what gets signed into download links
    assert sent.link.uri == f"/orgs/{a}/reports/r1/files/csv"


async def test_a_status_of_another_organisation_is_refused(
    tmp_path: Path, keys: KeyRing, new_org: NewOrg
) -> None:
    a, b = await new_org(), await new_org()
    victim = await store_file(tmp_path, keys, b, "r1", b"b's rows\r\n")
    with pytest.raises(PermanentDeliveryError, match=f"for a delivery of '{a}'"):
        await resolve_files(
            status(b, "r1", victim), tmp_path, keys, organization_id=a, report_type=TYPE
        )


@pytest.mark.parametrize("fmt", ["exe", "../csv"])
async def test_an_unknown_format_is_refused(
    tmp_path: Path, keys: KeyRing, new_org: NewOrg, fmt: str
) -> None:
    a = await new_org()
    own = await store_file(tmp_path, keys, a, "r1", b"rows\r\n")
    with pytest.raises(PermanentDeliveryError, match="format"):
        await resolve_files(
            status(a, "r1", forged(own, format=fmt)),
            tmp_path,
            keys,
            organization_id=a,
            report_type=TYPE,
        )


async def test_a_file_removed_before_its_delivery_says_so(
    tmp_path: Path, keys: KeyRing, new_org: NewOrg
) -> None:
    """An attacker round: deliveries queued when an erasure purged the organisation's files
    failed with "artifact … unreadable: … is not in the artifact store"."""
    a = await new_org()
    own = await store_file(tmp_path, keys, a, "r1", b"rows\r\n")
    (tmp_path / a / "r1" / f"{TYPE}.csv").unlink()  # as an erasure's purge does
    with pytest.raises(PermanentDeliveryError) as failed:
        await resolve_files(
            status(a, "r1", own), tmp_path, keys, organization_id=a, report_type=TYPE
        )
    assert str(failed.value) == (
        f"artifact '{a}/r1/{TYPE}.csv' was removed before its delivery (a GDPR erasure purges"
        " the organisation's report files, the retention rule old ones); request the report"
        " again to deliver it"
    )
