"""SFTP delivery (asyncssh): each file is uploaded under a temporary name, then renamed.

A reader polling the remote folder never sees half a file: the upload goes to
``.<name>.part-<random>`` and is renamed to ``<name>`` only after the whole file was written
and closed. The rename uses the ``posix-rename@openssh.com`` extension (atomic, replaces an
existing file) when the server offers it, else a plain SFTP rename after removing an existing
target. Remote names: ``<organization_id>_<schedule_id>_<fire time UTC>_<artifact file name>``,
or for a report request's own delivery ``<organization_id>_<report_id>_<requested at
UTC>_<artifact file name>``. Schedule and report ids are per organisation, so the
organisation is in the name: two organisations' ``daily`` schedules firing at the same time
into one server's folder wrote one name, and the later rename replaced the other
organisation's file while both runs said ``delivered`` (a trial user's finding). A retry of
the same delivery writes the same name again (it replaces its own file).

The server's host key must match the target's ``host_key`` (no trust on first use), and
neither ``~/.ssh/config``, ``~/.ssh/known_hosts``, default keys nor an SSH agent are used.
Classification: connection refused/lost, timeouts and generic SFTP failures are retriable;
rejected credentials, a host key mismatch and permission/no-such-path errors are permanent.

SSRF (:mod:`stream_app.delivery.egress`): the host is resolved when the attempt is made,
every address is checked, and the connection goes to the first checked address as an IP
literal (no second lookup). The host key check does not depend on the name: the target's
``host_key`` is the only key trusted. A refused address is a permanent failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import secrets
from datetime import UTC
from typing import ClassVar

import asyncssh

from stream_app.delivery.base import (
    DeliveryJob,
    DeliveryMethod,
    PermanentDeliveryError,
    SendReceipt,
    TransientDeliveryError,
)
from stream_app.delivery.egress import EgressPolicy, EgressRefusedError, resolve_checked
from stream_app.delivery.targets import SftpTarget

DEFAULT_CONNECT_TIMEOUT_S = 20.0


def remote_name(job: DeliveryJob, filename: str) -> str:
    """The remote file name of one artifact of ``job`` (see the module docstring)."""
    owner = job.schedule_id if job.schedule_id is not None else job.report_id
    fired = job.order.fire_time.astimezone(UTC)
    return f"{job.organization_id}_{owner}_{fired:%Y%m%dT%H%M%SZ}_{filename}"


class SftpMethod(DeliveryMethod):
    """Delivery by SFTP upload (see the module docstring).

    Attributes:
        connect_timeout_s: seconds allowed for TCP connect plus SSH handshake and login.
        egress: which addresses uploads may go to (default: public addresses only).
    """

    name: ClassVar[str] = "sftp"

    def __init__(
        self,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.egress = egress or EgressPolicy()

    def describe_target(self, job: DeliveryJob) -> str:
        """``sftp://user@host:port/path``."""
        t = job.target
        if not isinstance(t, SftpTarget):
            return "sftp"
        return f"sftp://{t.username}@{t.host}:{t.port}{posixpath.join('/', t.path)}"

    async def send(self, job: DeliveryJob) -> SendReceipt:
        """Upload every file of ``job`` once.

        Raises:
            TransientDeliveryError: connection refused or lost, timeout, SFTP failure.
            PermanentDeliveryError: bad credentials, host key mismatch, permission denied,
                the host resolves to a refused address, the target is not SFTP.
        """
        target = job.target
        if not isinstance(target, SftpTarget):
            raise PermanentDeliveryError(f"the target is {target.method}, not sftp")
        where = self.describe_target(job)
        try:
            addresses = await asyncio.wait_for(
                resolve_checked(self.egress, target.host, target.port), self.connect_timeout_s
            )
        except EgressRefusedError as exc:
            raise PermanentDeliveryError(f"{where}: {exc}") from exc
        except (OSError, TimeoutError) as exc:
            raise TransientDeliveryError(f"{where}: cannot resolve: {exc}") from exc
        try:
            uploaded = await self._upload(job, target, str(addresses[0]))
        except (asyncssh.PermissionDenied, asyncssh.HostKeyNotVerifiable) as exc:
            raise PermanentDeliveryError(f"{where}: {type(exc).__name__}: {exc.reason}") from exc
        except (asyncssh.SFTPPermissionDenied, asyncssh.SFTPNoSuchFile) as exc:
            raise PermanentDeliveryError(f"{where}: {type(exc).__name__}: {exc.reason}") from exc
        except (asyncssh.Error, asyncssh.SFTPError) as exc:
            raise TransientDeliveryError(f"{where}: {type(exc).__name__}: {exc.reason}") from exc
        except (OSError, TimeoutError) as exc:
            raise TransientDeliveryError(f"{where}: {type(exc).__name__}: {exc}") from exc
        return SendReceipt(location=", ".join(uploaded), detail=f"{len(uploaded)} file(s)")

    async def _upload(self, job: DeliveryJob, target: SftpTarget, address: str) -> list[str]:
        keys = [asyncssh.import_private_key(target.private_key)] if target.private_key else None
        host_key = asyncssh.import_public_key(target.host_key)
        async with (
            asyncssh.connect(
                address,  # the checked address: no second lookup of target.host
                target.port,
                username=target.username,
                password=target.password,
                client_keys=keys,
                known_hosts=([host_key], [], []),
                agent_path=None,
                config=None,
                connect_timeout=self.connect_timeout_s,
                login_timeout=self.connect_timeout_s,
            ) as conn,
            conn.start_sftp_client() as sftp,
        ):
            if not await sftp.isdir(target.path):
                await sftp.makedirs(target.path, exist_ok=True)
            uploaded: list[str] = []
            for f in job.files:
                final = posixpath.join(target.path, remote_name(job, f.filename))
                temp = posixpath.join(
                    target.path, f".{remote_name(job, f.filename)}.part-{secrets.token_hex(4)}"
                )
                try:
                    async with sftp.open(temp, "wb") as remote:
                        async for chunk in f.chunks():  # decrypted: the plaintext is uploaded
                            await remote.write(chunk)
                    try:
                        await sftp.posix_rename(temp, final)
                    except asyncssh.SFTPOpUnsupported:
                        if await sftp.exists(final):
                            await sftp.remove(final)
                        await sftp.rename(temp, final)
                except BaseException:
                    await _remove_quietly(sftp, temp)
                    raise
                uploaded.append(final)
            return uploaded


async def _remove_quietly(sftp: asyncssh.SFTPClient, path: str) -> None:
    with contextlib.suppress(asyncssh.Error, asyncssh.SFTPError, OSError):
        await asyncio.shield(sftp.remove(path))
