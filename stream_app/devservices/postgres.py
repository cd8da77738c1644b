"""A throw-away PostgreSQL cluster from the installed server binaries (``initdb``, ``pg_ctl``).

The cluster lives in ``<state>/postgres/data``, listens on 127.0.0.1 only, trusts every local
connection and runs without fsync: fast and disposable, never for real data. PostgreSQL
refuses to run as root, so under root the binaries run through ``runuser`` as the system user
``postgres`` (or ``wedding-pg``, created when neither exists) that owns ``<state>/postgres``.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stream_app.db.roles import ROLES_SQL
from stream_app.devservices.common import ServiceError, free_ports, log_tail, pid_alive, port_open

DATABASE = "wedding"
SUPERUSER = "postgres"
START_TIMEOUT_S = 60
_FALLBACK_OS_USER = "wedding-pg"
_SOCKET_PATH_MAX = 107  # sun_path of a Unix socket, without the terminating NUL


@dataclass(frozen=True, slots=True)
class PostgresInstance:
    """A started cluster.

    Attributes:
        dsn: libpq URL of the ``wedding`` database, as the ``postgres`` superuser.
        pid: the postmaster's process id.
        log_path: the server log.
    """

    dsn: str
    pid: int
    log_path: Path

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1."""
        return int(self.dsn.rpartition(":")[2].partition("/")[0])


def _bin(name: str) -> str:
    """Path of a server binary, taken from the folder ``initdb`` really lives in."""
    initdb = shutil.which("initdb")
    if initdb is None:
        # Debian's packages keep the server binaries off PATH, one folder per major version
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            raise ServiceError(
                "postgres: no `initdb` on PATH or in /usr/lib/postgresql/*/bin; "
                "install the PostgreSQL server (apt-get install postgresql)"
            )
        initdb = str(found[-1])
    return str(Path(initdb).resolve().parent / name)


def _os_user() -> str | None:
    """The user to run the server as: ``None`` (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, _FALLBACK_OS_USER):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    done = subprocess.run([*command, _FALLBACK_OS_USER], capture_output=True, text=True)
    if done.returncode != 0:
        raise ServiceError(
            f"postgres: creating the system user {_FALLBACK_OS_USER} failed: {done.stderr.strip()}"
        )
    return _FALLBACK_OS_USER


def _as_user(user: str | None, command: list[str]) -> list[str]:
    return command if user is None else ["runuser", "-u", user, "--", *command]


def _run(
    step: str, user: str | None, command: list[str], log_path: Path, stdin: str | None = None
) -> None:
    done = subprocess.run(
        _as_user(user, command),
        input=stdin,
        capture_output=True,
        text=True,
        cwd=log_path.parent,
        check=False,
        start_new_session=True,  # the postmaster must not die with our terminal
    )
    if done.returncode != 0:
        raise ServiceError(
            f"postgres: {step} failed (exit {done.returncode}): {shlex.join(command)}\n"
            f"{done.stdout}{done.stderr}\n{log_tail(log_path)}"
        )


def start(state_dir: Path) -> PostgresInstance:
    """Create and start a fresh cluster in ``<state_dir>/postgres`` (wiped first).

    Args:
        state_dir: the services' state folder. Under root it must be reachable by the server's
            system user, so not below a ``0700`` folder such as pytest's ``tmp_path``.

    Returns:
        The running cluster with its ``wedding`` database and the project's roles
        (:mod:`stream_app.db.roles`) created.

    Raises:
        ServiceError: a binary is missing, the folder is not reachable by the server's user,
            or initdb, database creation or the start failed (with the server log's tail).
    """
    home = state_dir / "postgres"
    stop(state_dir)  # a cluster left running without its services.json
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    user = _os_user()
    if user is not None:
        shutil.chown(home, user, user)
        reachable = subprocess.run(_as_user(user, ["test", "-w", str(home)]), check=False)
        if reachable.returncode != 0:
            raise ServiceError(
                f"postgres: the system user {user} cannot write {home}; choose a state folder "
                "whose parents are searchable by other users (WEDDING_STATE_DIR)"
            )
    data = home / "data"
    log_path = home / "postgres.log"
    (port,) = free_ports(1)

    _run(
        "initdb", user,
        [_bin("initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER, "--encoding=UTF8",
         "--no-locale", "--no-sync", "--no-instructions"],
        log_path,
    )  # fmt: skip
    _run(
        f"creating database {DATABASE}", user,
        [_bin("postgres"), "--single", "-D", str(data), "postgres"],
        log_path, stdin=f"CREATE DATABASE {DATABASE}\n",
    )  # fmt: skip
    _pg_ctl_start(home, port, user)
    _run(
        "creating the database roles", None,
        [_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
         "-U", SUPERUSER, "-d", DATABASE, "-c", ROLES_SQL],
        log_path,
    )  # fmt: skip
    pid = _postmaster_pid(data)
    if pid is None or not port_open(port):
        raise ServiceError(
            f"postgres: pg_ctl reported a start but nothing listens on 127.0.0.1:{port}\n"
            f"{log_tail(log_path)}"
        )
    return PostgresInstance(f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}", pid, log_path)


def _pg_ctl_start(home: Path, port: int, user: str | None) -> None:
    """Start the server of ``<home>/data`` on ``port`` (``pg_ctl start``, waits until ready)."""
    socket_dir = str(home) if len(f"{home}/.s.PGSQL.{port}") <= _SOCKET_PATH_MAX else ""
    options = (
        f"-p {port} -k {shlex.quote(socket_dir)} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    _run(
        "starting the server", user,
        [_bin("pg_ctl"), "-D", str(home / "data"), "-o", options, "-l",
         str(home / "postgres.log"), "-w", "-t", str(START_TIMEOUT_S), "start"],
        home / "postgres.log",
    )  # fmt: skip


def resume(state_dir: Path, port: int) -> PostgresInstance:
    """Start the stopped cluster of ``<state_dir>/postgres`` again, its data kept, on ``port``
    (the one it had: clients keep their DSN). Used to test clients across an outage.

    Raises:
        ServiceError: there is no cluster there, or it did not start.
    """
    home = state_dir / "postgres"
    data = home / "data"
    if not (data / "PG_VERSION").is_file():
        raise ServiceError(f"postgres: no cluster in {data} to resume")
    owner = pwd.getpwuid(data.stat().st_uid).pw_name
    user = owner if os.geteuid() == 0 and owner != "root" else None
    _pg_ctl_start(home, port, user)
    pid = _postmaster_pid(data)
    if pid is None or not port_open(port):
        raise ServiceError(
            f"postgres: resumed, but nothing listens on 127.0.0.1:{port}\n"
            f"{log_tail(home / 'postgres.log')}"
        )
    return PostgresInstance(
        f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}", pid, home / "postgres.log"
    )


def restart(instance: PostgresInstance, state_dir: Path) -> PostgresInstance:
    """Restart the cluster in ``<state_dir>/postgres`` (``pg_ctl restart -m fast``): every
    connection is dropped, the data and port are kept (the soak's fault, ``loadtests/soak.py``).

    Args:
        instance: the running cluster.
        state_dir: the services' state folder it was started in.

    Returns:
        The cluster with its new postmaster pid.

    Raises:
        ServiceError: no cluster runs there, or pg_ctl failed (with the server log's tail).
    """
    data = state_dir / "postgres" / "data"
    log_path = state_dir / "postgres" / "postgres.log"
    pid = _postmaster_pid(data)
    if pid is None or not pid_alive(pid):
        raise ServiceError(f"postgres: no cluster runs in {data}")
    port = instance.port
    owner = pwd.getpwuid(data.stat().st_uid).pw_name
    user = owner if os.geteuid() == 0 and owner != "root" else None
    _run(
        "restarting the server", user,
        [_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", str(START_TIMEOUT_S),
         "-l", str(log_path), "restart"],
        log_path,
    )  # fmt: skip
    new_pid = _postmaster_pid(data)
    if new_pid is None or not port_open(port):
        raise ServiceError(f"postgres: restarted but nothing listens on 127.0.0.1:{port}")
    return PostgresInstance(instance.dsn, new_pid, log_path)


def _postmaster_pid(data: Path) -> int | None:
    try:
        first_line = (data / "postmaster.pid").read_text(encoding="utf-8").split("\n", 1)[0]
        return int(first_line)
    except (OSError, ValueError):
        return None


def is_running(instance: PostgresInstance) -> bool:
    """Return whether the postmaster is alive and accepts connections on its port."""
    return pid_alive(instance.pid) and port_open(instance.port)


def running_instance(state_dir: Path, recorded: PostgresInstance) -> PostgresInstance | None:
    """The cluster of ``<state_dir>/postgres`` as it runs now, or None when it does not.

    ``recorded`` when its postmaster is alive; else the postmaster named by the data folder's
    ``postmaster.pid`` when it is alive and the recorded port answers: a cluster restarted
    outside these tools (``pg_ctl restart``) has a new process id, and is still the same
    cluster with the same data and port.
    """
    if is_running(recorded):
        return recorded
    data = state_dir / "postgres" / "data"
    pid = _postmaster_pid(data)
    if pid is not None and _is_postmaster_of(pid, data) and port_open(recorded.port):
        return PostgresInstance(recorded.dsn, pid, recorded.log_path)
    return None


def _is_postmaster_of(pid: int, data: Path) -> bool:
    """Whether process ``pid`` is a ``postgres`` server of the data folder ``data`` (its
    command line names both): a stale ``postmaster.pid`` whose number another process got
    since is not the cluster (an attacker's round: any live pid and an open port passed)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        bool(argv)
        and Path(argv[0].decode(errors="replace")).name == "postgres"
        and str(data).encode() in argv
    )


def has_cluster(state_dir: Path) -> bool:
    """Whether ``<state_dir>/postgres`` holds a cluster (running or not)."""
    return (state_dir / "postgres" / "data" / "PG_VERSION").is_file()


def stop(state_dir: Path) -> int | None:
    """Stop the cluster in ``<state_dir>/postgres`` with ``pg_ctl stop -m fast``.

    Nothing to stop (no folder, no running postmaster) is fine.

    Returns:
        The process id of the postmaster stopped; None when none was running.

    Raises:
        ServiceError: pg_ctl failed and the postmaster is still alive.
    """
    data = state_dir / "postgres" / "data"
    pid = _postmaster_pid(data)
    if pid is None or not pid_alive(pid):
        return None
    owner = pwd.getpwuid(data.stat().st_uid).pw_name
    user = owner if os.geteuid() == 0 and owner != "root" else None
    command = [_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"]
    done = subprocess.run(
        _as_user(user, command), capture_output=True, text=True, check=False, cwd=data.parent
    )
    if done.returncode != 0 and pid_alive(pid):
        raise ServiceError(
            f"postgres: stopping the server (pid {pid}) failed: {done.stdout}{done.stderr}\n"
            f"{log_tail(data.parent / 'postgres.log')}"
        )
    return pid
