"""SFTP delivery against a real asyncssh SFTP server started by the test, rooted in a temp
folder, with a generated host key and a password login."""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import pytest_asyncio

from stream_app.delivery.egress import EgressPolicy
from stream_app.delivery.sftp import SftpMethod
from stream_app.delivery.targets import RetryPolicy, SftpTarget
from stream_app.schedules.model import Schedule
from tests.delivery.conftest import CSV_BYTES, Deliverer
from tests.schedules.builders import per_org
from tests.serving import PasswordLogin

USER, PASSWORD = "uploader", "correct horse battery staple"


@dataclass
class SftpServer:
    root: Path
    port: int
    host_key: str  # OpenSSH public key line
    ops: list[tuple[str, ...]] = field(default_factory=list)


@pytest_asyncio.fixture
async def sftp_server(tmp_path: Path) -> AsyncIterator[SftpServer]:
    root = tmp_path / "sftp-root"
    root.mkdir()
    key = asyncssh.generate_private_key("ssh-ed25519")
    ops: list[tuple[str, ...]] = []

    class Recording(asyncssh.SFTPServer):
        """The real asyncssh SFTP server, chrooted, noting opens and renames."""

        def __init__(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
            super().__init__(chan, chroot=str(root).encode())

        def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
            ops.append(("open", path.decode()))
            return super().open(path, pflags, attrs)

        def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
            ops.append(("rename", oldpath.decode(), newpath.decode()))
            super().posix_rename(oldpath, newpath)

    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[key],
        server_factory=lambda: PasswordLogin(USER, PASSWORD),
        sftp_factory=Recording,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield SftpServer(root, port, key.export_public_key().decode().strip(), ops)
    finally:
        server.close()
        await server.wait_closed()


def sftp_schedule(
    server: SftpServer,
    *,
    password: str = PASSWORD,
    port: int | None = None,
    host_key: str | None = None,
    attempts: int = 3,
    host: str = "127.0.0.1",
) -> Callable[[str], Schedule]:
    return per_org(
        "sftp",
        date_range="previous_quarter",
        output_formats=("csv", "json"),
        time_zone="Asia/Kolkata",
        delivery=SftpTarget(
            host=host,
            port=port or server.port,
            username=USER,
            password=password,
            path="/inbox/compliance",
            host_key=host_key or server.host_key,
        ),
        retry=RetryPolicy(max_attempts=attempts, base_backoff_s=0.01, max_backoff_s=0.05),
    )


@pytest.fixture
def sftp(loopback: EgressPolicy) -> SftpMethod:
    """The SFTP method of the tests (a 5 s connect timeout, loopback servers allowed)."""
    return SftpMethod(connect_timeout_s=5, egress=loopback)


async def test_upload_under_temporary_name_then_rename(
    make_run: Any,
    sftp_server: SftpServer,
    report_bytes: dict[str, bytes],
    delivering: Deliverer,
    sftp: SftpMethod,
) -> None:
    run, (status,) = await make_run(sftp_schedule(sftp_server))
    result = await delivering(run, status, sftp)
    assert result.outcome == "delivered" and result.attempts == 1

    folder = sftp_server.root / "inbox" / "compliance"
    # Asia/Kolkata is +05:30: "0 * * * *" fires at :30 UTC, here 09:30 UTC (15:00 IST)
    assert run.fire_time.isoformat() == "2031-01-06T09:30:00+00:00"
    org = run.schedule.organization_id
    prefix = f"{org}_{run.schedule.schedule_id}_20310106T093000Z_monthly_booking_summary"
    assert sorted(p.name for p in folder.iterdir()) == [f"{prefix}.csv", f"{prefix}.json"]
    assert (folder / f"{prefix}.csv").read_bytes() == report_bytes["csv"]
    assert (folder / f"{prefix}.json").read_bytes() == report_bytes["json"]

    # each file was opened for writing under a hidden temporary name, then renamed
    for ext in ("csv", "json"):
        final = f"/inbox/compliance/{prefix}.{ext}"
        (opened,) = [
            op[1] for op in sftp_server.ops if op[0] == "open" and f".{ext}.part-" in op[1]
        ]
        assert opened.startswith(f"/inbox/compliance/.{prefix}.{ext}.part-")
        assert ("rename", opened, final) in sftp_server.ops
        assert ("open", final) not in sftp_server.ops
    assert await delivering.run_row(run.run_id) == ("delivered", None)
    assert result.location is not None and f"/inbox/compliance/{prefix}.csv" in result.location


async def test_two_organisations_schedules_of_one_name_keep_both_files(
    make_run: Any,
    new_org: Callable[..., Awaitable[str]],
    sftp_server: SftpServer,
    delivering: Deliverer,
    sftp: SftpMethod,
) -> None:
    """Schedule ids are per organisation: two organisations' ``daily`` schedules firing at
    the same time into one folder wrote one remote name, and one file replaced the other
    while both runs said ``delivered`` (a trial user's finding). The organisation is in the
    name: both files are there."""
    build = sftp_schedule(sftp_server)
    written: list[str] = []
    for _ in range(2):
        org = await new_org()
        run, (status,) = await make_run(
            lambda o: dataclasses.replace(build(o), schedule_id="daily"), org=org
        )
        result = await delivering(run, status, sftp)
        assert result.outcome == "delivered"
        name = f"{org}_daily_20310106T093000Z_monthly_booking_summary.csv"
        assert (sftp_server.root / "inbox" / "compliance" / name).read_bytes() == CSV_BYTES
        written.append(name)
    folder = sftp_server.root / "inbox" / "compliance"
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".csv") == sorted(written)
    assert len(written) == 2


async def test_wrong_password_is_not_retried(
    make_run: Any,
    sftp_server: SftpServer,
    artifact_root: Path,
    delivering: Deliverer,
    sftp: SftpMethod,
) -> None:
    run, (status,) = await make_run(sftp_schedule(sftp_server, password="wrong"))
    result = await delivering(run, status, sftp)
    assert result.outcome == "failed" and result.attempts == 1
    state, error = await delivering.run_row(run.run_id)
    assert state == "failed" and error is not None and "PermissionDenied" in error
    assert not (sftp_server.root / "inbox").exists()
    for artifact in status.artifacts:
        assert (artifact_root / artifact.path).is_file()


async def test_unexpected_host_key_is_refused(
    make_run: Any, sftp_server: SftpServer, delivering: Deliverer, sftp: SftpMethod
) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    run, (status,) = await make_run(sftp_schedule(sftp_server, host_key=other))
    result = await delivering(run, status, sftp)
    assert result.outcome == "failed" and result.attempts == 1
    assert "HostKeyNotVerifiable" in result.detail
    assert sftp_server.ops == []


async def test_server_unreachable_is_retried_then_fails(
    make_run: Any, sftp_server: SftpServer, delivering: Deliverer, sftp: SftpMethod
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = int(sock.getsockname()[1])
    run, (status,) = await make_run(sftp_schedule(sftp_server, port=closed, attempts=2))
    result, _ = await delivering.with_retries(run, status, sftp)
    assert result.outcome == "failed" and result.attempts == 2
    log = await delivering.log(run.run_id)
    assert [(e.attempt, e.outcome, e.retriable) for e in log] == [
        (1, "retrying", True),
        (2, "failed", True),
    ]
    assert (await delivering.run_row(run.run_id))[0] == "failed"


async def test_host_name_of_an_internal_address_is_refused(
    make_run: Any, sftp_server: SftpServer, delivering: Deliverer
) -> None:
    """SSRF: ``localhost`` resolves to 127.0.0.1 at delivery time; without an allow-list the
    upload is refused before any connection, permanently, with the reason in the log."""
    run, (status,) = await make_run(sftp_schedule(sftp_server, host="localhost"))
    result = await delivering(run, status, SftpMethod(connect_timeout_s=5, egress=EgressPolicy()))
    assert (result.outcome, result.attempts) == ("failed", 1)
    assert sftp_server.ops == [] and not (sftp_server.root / "inbox").exists()
    (entry,) = await delivering.log(run.run_id)
    assert re.search(
        r"refused: 'localhost' resolves to (127\.0\.0\.1|::1) \(loopback\)", entry.detail or ""
    )


async def test_host_name_of_an_allowed_address_is_uploaded_to(
    make_run: Any, sftp_server: SftpServer, delivering: Deliverer, sftp: SftpMethod
) -> None:
    """The name is resolved once and the checked address is connected to; the host key
    check still holds (the key is the target's, not looked up by name)."""
    run, (status,) = await make_run(sftp_schedule(sftp_server, host="localhost"))
    result = await delivering(run, status, sftp)
    assert result.outcome == "delivered"
    assert len(list((sftp_server.root / "inbox" / "compliance").iterdir())) == 2
