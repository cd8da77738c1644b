"""Artifact paths are derived from (organisation, report id, type, format) and stay inside the
report's own folder; the cleanup of a report deletes that folder and nothing else."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stream_app.reports.artifacts import (
    ArtifactPathError,
    ArtifactStore,
    ArtifactStoreFullError,
    artifact_path,
    artifact_relpath,
    remove_report_folder,
    report_folder,
    store_usage,
)

TYPE = "monthly_booking_summary"


def fill(root: Path) -> dict[str, bytes]:
    """Two organisations' files (org-a: r1, r2; org-b: r1) written through the store."""
    store = ArtifactStore(root)
    written: dict[str, bytes] = {}
    for org, report in (("org-a", "r1"), ("org-a", "r2"), ("org-b", "r1")):
        for fmt, ext in (("csv", "csv"), ("excel", "xlsx")):
            data = f"{org}/{report}/{fmt}".encode()
            with store.write(org, report, f"{TYPE}.{ext}", fmt, key=None) as (writer, out):
                writer.write(data)
            (link,) = out
            assert link.sha256 == hashlib.sha256(data).hexdigest()
            assert link.uri == f"/orgs/{org}/reports/{report}/files/{fmt}"  # no file:// path
            written[link.path] = data
    return written


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_paths_are_derived_from_identity(tmp_path: Path) -> None:
    written = fill(tmp_path)
    assert artifact_relpath("org-a", "r1", TYPE, "excel") == f"org-a/r1/{TYPE}.xlsx"
    path = artifact_path(tmp_path, "org-b", "r1", TYPE, "csv")
    assert path == (tmp_path / "org-b" / "r1" / f"{TYPE}.csv").resolve()
    assert path.read_bytes() == written[f"org-b/r1/{TYPE}.csv"] == b"org-b/r1/csv"


@pytest.mark.parametrize(
    ("org", "report", "rtype", "fmt"),
    [
        ("org-a", "..", TYPE, "csv"),
        ("org-a", ".", TYPE, "csv"),
        ("..", "org-b", TYPE, "csv"),
        ("org-a", "r1/../../org-b/r1", TYPE, "csv"),
        ("org-a", "r1", "../r2/x", "csv"),
        ("org-a", "r1", TYPE, "exe"),
        ("org-a", "r1", TYPE, "../csv"),
    ],
)
def test_anything_but_an_own_file_is_refused(
    tmp_path: Path, org: str, report: str, rtype: str, fmt: str
) -> None:
    with pytest.raises(ArtifactPathError):
        artifact_path(tmp_path, org, report, rtype, fmt)


def test_a_symlinked_organisation_folder_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "store"
    fill(root)
    (root / "org-c").symlink_to(root / "org-b")  # org-c would read and delete org-b's files
    with pytest.raises(ArtifactPathError):
        report_folder(root, "org-c", "r1")
    with pytest.raises(ArtifactPathError):
        remove_report_folder(root, "org-c", "r1")
    assert (root / "org-b" / "r1" / f"{TYPE}.csv").is_file()


def test_cleanup_removes_exactly_one_report_folder(tmp_path: Path) -> None:
    written = fill(tmp_path)
    assert remove_report_folder(tmp_path, "org-a", "r1") is True
    left = snapshot(tmp_path)
    assert left == {k: v for k, v in written.items() if not k.startswith("org-a/r1/")}
    assert remove_report_folder(tmp_path, "org-a", "r1") is False  # gone already


@pytest.mark.parametrize(
    ("org", "report"),
    [("org-a", ".."), ("org-a", "."), ("..", "org-a"), ("org-a", ""), (".", "r1")],
)
def test_cleanup_refuses_the_store_and_organisation_folders(
    tmp_path: Path, org: str, report: str
) -> None:
    written = fill(tmp_path)
    with pytest.raises(ArtifactPathError):
        remove_report_folder(tmp_path, org, report)
    assert snapshot(tmp_path) == written  # all 6 files still there


@pytest.mark.parametrize("report", ["..", ".", "a/b"])
def test_the_store_writes_only_into_a_report_folder(tmp_path: Path, report: str) -> None:
    store = ArtifactStore(tmp_path)
    with (
        pytest.raises(ArtifactPathError),
        store.write("org-a", report, f"{TYPE}.csv", "csv", key=None),
    ):
        pytest.fail("the block must not run")
    assert snapshot(tmp_path) == {}


def test_a_store_at_its_limit_refuses_a_file_and_keeps_nothing_of_it(tmp_path: Path) -> None:
    (tmp_path / "old.bin").write_bytes(b"x" * 900)  # 900 of 1,000 bytes already used
    store = ArtifactStore(tmp_path, max_bytes=1_000)
    with store.write("org-a", "r-1", f"{TYPE}.csv", "csv", key=None) as (writer, out):
        writer.write(b"y" * 100)  # exactly the room left
    assert out[0].size_bytes == 100
    with (
        pytest.raises(ArtifactStoreFullError) as caught,
        store.write("org-a", "r-2", f"{TYPE}.csv", "csv", key=None) as (writer, _),
    ):
        writer.write(b"z")
    assert str(caught.value).startswith("artifact store full: the store limit of 1,000 bytes")
    assert caught.value.retriable is False
    assert sorted(p.name for p in (tmp_path / "org-a").rglob("*") if p.is_file()) == [f"{TYPE}.csv"]
    assert store_usage(tmp_path) == 1_000


def test_one_organisation_cannot_take_more_than_its_quota_of_the_store(tmp_path: Path) -> None:
    """An attacker round filled a shared store with one tenant's reports; every other
    tenant's then failed. Each organisation's files are bounded; the others write on."""
    store = ArtifactStore(tmp_path, org_max_bytes=1_000)
    with store.write("org-a", "r-1", f"{TYPE}.csv", "csv", key=None) as (writer, _):
        writer.write(b"a" * 1_000)  # the whole quota
    with (
        pytest.raises(ArtifactStoreFullError) as caught,
        store.write("org-a", "r-2", f"{TYPE}.csv", "csv", key=None) as (writer, _),
    ):
        writer.write(b"a")
    assert str(caught.value) == (
        "artifact quota of organisation 'org-a' reached: its files would take more than 1,000"
        " bytes (WEDDING_ARTIFACT_ORG_MAX_BYTES; 1,000 in use); shorten its retention"
        " (PUT /orgs/{org}/retention, artifacts_days) or raise the quota"
    )
    assert caught.value.retriable is False
    assert not (tmp_path / "org-a" / "r-2" / f"{TYPE}.csv").exists()
    with store.write("org-b", "r-1", f"{TYPE}.csv", "csv", key=None) as (writer, out):
        writer.write(b"b" * 1_000)  # another organisation: its own quota
    assert out[0].size_bytes == 1_000
    # with both limits, the smaller room decides and names itself
    both = ArtifactStore(tmp_path, max_bytes=2_500, org_max_bytes=1_000)
    with (
        pytest.raises(ArtifactStoreFullError) as caught,
        both.write("org-c", "r-1", f"{TYPE}.csv", "csv", key=None) as (writer, _),
    ):
        writer.write(b"c" * 501)  # org-c has 1,000 of quota, the store 500 of room
    assert str(caught.value).startswith("artifact store full: the store limit of 2,500 bytes")
