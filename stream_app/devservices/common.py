"""Small helpers shared by the Kafka and PostgreSQL launchers."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from stream_app.errors import WeddingError


class ServiceError(WeddingError, RuntimeError):
    """A local service could not be fetched, started, reached or stopped.

    The message names the service and the step that failed and, where there is one, ends with
    the tail of the service's log.
    """


def log_tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a log file, or a note when it cannot be read.

    Args:
        path: the log file.
        lines: how many lines to keep.

    Returns:
        The tail, prefixed with a header naming the file, ready to append to an error message.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc.strerror})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"--- last {lines} lines of {path} ---\n{tail}"


def free_ports(count: int) -> list[int]:
    """Pick ``count`` distinct free TCP ports on 127.0.0.1.

    The ports are free when this returns; another process could take one before it is bound,
    which is unlikely enough for throw-away local services.

    Args:
        count: how many ports.

    Returns:
        The port numbers.
    """
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def port_of(address: str) -> int:
    """The port an address ends with: ``127.0.0.1:9092`` or ``redis://127.0.0.1:6379``."""
    return int(address.rpartition(":")[2])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """Return whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """Return whether process ``pid`` exists and is not a zombie.

    A child of this process that has exited is reaped here, so a service started and stopped
    by the same Python process does not linger as a zombie that looks alive.
    """
    if pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
