"""The delivery never opens the path a ``report-results`` message names: the files are derived
from the run's organisation, the report id, the schedule's type and the format (issue 9)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from stream_app.delivery.base import PermanentDeliveryError
from stream_app.delivery.dispatch import resolve_files
from stream_app.reports.artifacts import ArtifactStore
from stream_app.schemas.updates import ArtifactLink, ReportStatus

TYPE = "monthly_booking_summary"


def store_file(root: Path, org: str, report: str, data: bytes) -> ArtifactLink:
    with ArtifactStore(root).write(org, report, f"{TYPE}.csv", "csv") as (writer, out):
        writer.write(data)
        writer.rows = 1
    return out[0]


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


def test_a_forged_path_to_another_tenants_file_is_not_followed(tmp_path: Path) -> None:
    own = store_file(tmp_path, "org-a", "r1", b"a's rows\r\n")
    victim = store_file(tmp_path, "org-b", "secret", b"b's confidential rows\r\n")
    # the message points at B's file and carries B's checksum and size
    message = status(
        "org-a",
        "r1",
        forged(own, path=victim.path, sha256=victim.sha256, size_bytes=victim.size_bytes),
    )
    with pytest.raises(PermanentDeliveryError, match="does not match its checksum"):
        resolve_files(message, tmp_path, organization_id="org-a", report_type=TYPE)
    # with the report's own checksum the file sent is A's own, whatever path the message says
    message = status("org-a", "r1", forged(own, path="../../etc/passwd", uri="file:///etc/passwd"))
    (sent,) = resolve_files(message, tmp_path, organization_id="org-a", report_type=TYPE)
    assert sent.path == (tmp_path / "org-a" / "r1" / f"{TYPE}.csv").resolve()
    assert hashlib.sha256(sent.path.read_bytes()).hexdigest() == own.sha256
    assert sent.link.path == f"org-a/r1/{TYPE}.csv"  # what gets signed into download links
    assert sent.link.uri == "/orgs/org-a/reports/r1/files/csv"


def test_a_status_of_another_organisation_is_refused(tmp_path: Path) -> None:
    victim = store_file(tmp_path, "org-b", "r1", b"b's rows\r\n")
    with pytest.raises(PermanentDeliveryError, match="for a run of 'org-a'"):
        resolve_files(
            status("org-b", "r1", victim), tmp_path, organization_id="org-a", report_type=TYPE
        )


@pytest.mark.parametrize("fmt", ["exe", "../csv"])
def test_an_unknown_format_is_refused(tmp_path: Path, fmt: str) -> None:
    own = store_file(tmp_path, "org-a", "r1", b"rows\r\n")
    with pytest.raises(PermanentDeliveryError, match="format"):
        resolve_files(
            status("org-a", "r1", forged(own, format=fmt)),
            tmp_path,
            organization_id="org-a",
            report_type=TYPE,
        )
