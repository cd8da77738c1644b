"""A single-node KRaft Apache Kafka broker, run from the official jars on Maven Central.

The jars are fetched once with Maven into ``<cache>/kafka-<version>/libs`` (``<cache>`` is
``WEDDING_CACHE_DIR``, else ``~/.cache/wedding-engine``). Each start formats a fresh log
directory under ``<state>/kafka`` and runs ``kafka.Kafka`` with the machine's ``java`` as a
detached process (its own session) that logs to ``<state>/kafka/kafka.log``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.resources
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from stream_app.devservices.common import (
    ServiceError,
    file_lock,
    free_ports,
    log_tail,
    pid_alive,
    port_of,
    port_open,
)

KAFKA_VERSION = "4.1.1"
"""Version of ``org.apache.kafka:kafka_2.13`` that is fetched and run."""
LOG4J_VERSION = "2.24.3"
"""The log4j2 line Kafka 4.1 depends on; ``log4j-slf4j-impl`` of it binds the broker's slf4j."""

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
JVM_OPTIONS = (
    "-Xmx512m",
    "-Xms512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
_COMPLETE_MARKER = ".complete"

_LOG4J2_PROPERTIES = """\
# Written by stream_app.devservices.kafka: everything to stdout, which goes to kafka.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass(frozen=True, slots=True)
class KafkaInstance:
    """A started broker.

    Attributes:
        bootstrap: ``127.0.0.1:PORT`` of the PLAINTEXT listener.
        pid: process id of the broker's JVM.
        log_path: the broker's log (stdout and stderr of the JVM).
    """

    bootstrap: str
    pid: int
    log_path: Path


def cache_root() -> Path:
    """Return the download cache: ``WEDDING_CACHE_DIR``, else ``~/.cache/wedding-engine``."""
    configured = os.environ.get("WEDDING_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "wedding-engine"


def ensure_libs(version: str = KAFKA_VERSION) -> Path:
    """Fetch the broker's jars from Maven Central once and return their folder.

    Concurrent callers are serialised by a lock file; a folder that holds the completion
    marker is used as it is, without running Maven.

    Args:
        version: the ``kafka_2.13`` version.

    Returns:
        ``<cache>/kafka-<version>/libs``, holding every runtime jar of the broker.

    Raises:
        ServiceError: ``java`` or ``mvn`` is missing, or Maven failed (with its output).
    """
    home = cache_root() / f"kafka-{version}"
    libs = home / "libs"
    if (libs / _COMPLETE_MARKER).is_file():
        return libs
    if shutil.which("mvn") is None:
        raise ServiceError("kafka: `mvn` is not on PATH; it is needed once to fetch the jars")
    with file_lock(home / "fetch.lock"):
        if (libs / _COMPLETE_MARKER).is_file():  # another process fetched while we waited
            return libs
        shutil.rmtree(libs, ignore_errors=True)
        pom = home / "pom.xml"
        package = importlib.resources.files("stream_app.devservices")
        pom.write_bytes(package.joinpath("kafka-pom.xml").read_bytes())
        command = [
            "mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
            f"-Dkafka.version={version}", f"-Dlog4j.version={LOG4J_VERSION}",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=home)
        if done.returncode != 0 or not (libs / f"kafka_2.13-{version}.jar").is_file():
            output = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
            raise ServiceError(
                f"kafka: fetching the jars with Maven failed (exit {done.returncode}): "
                f"{' '.join(command)}\n{output}"
            )
        (libs / _COMPLETE_MARKER).write_text(f"kafka_2.13 {version}\n", encoding="utf-8")
    return libs


def _cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 without padding (22 characters)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):  # Kafka's Uuid.randomUuid() avoids these as well
            return text


def _server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": (
            f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
        ),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "4",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _java_command(libs: Path, log4j_config: Path, main_class: str, *args: str) -> list[str]:
    return [
        "java",
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={log4j_config}",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]


def start(state_dir: Path) -> KafkaInstance:
    """Start a fresh broker whose files live in ``<state_dir>/kafka`` (wiped first).

    Args:
        state_dir: the services' state folder.

    Returns:
        The running broker, once it answers a metadata request.

    Raises:
        ServiceError: the jars could not be fetched, formatting failed, the JVM exited, or the
            broker did not answer within ``READY_TIMEOUT_S`` (with the tail of its log).
    """
    if shutil.which("java") is None:
        raise ServiceError("kafka: `java` (17 or newer) is not on PATH")
    libs = ensure_libs()
    home = state_dir / "kafka"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    port, controller_port = free_ports(2)
    config = home / "server.properties"
    config.write_text(_server_properties(home / "data", port, controller_port), encoding="utf-8")
    log4j_config = home / "log4j2.properties"
    log4j_config.write_text(_LOG4J2_PROPERTIES, encoding="utf-8")
    log_path = home / "kafka.log"

    format_command = _java_command(
        libs, log4j_config, "kafka.tools.StorageTool",
        "format", "--standalone", "-t", _cluster_id(), "-c", str(config),
    )  # fmt: skip
    formatted = subprocess.run(format_command, capture_output=True, text=True, check=False)
    if formatted.returncode != 0:
        raise ServiceError(
            f"kafka: formatting {home / 'data'} failed (exit {formatted.returncode}):\n"
            f"{formatted.stdout}{formatted.stderr}"
        )

    return _run_broker(libs, home, f"127.0.0.1:{port}", log_path)


def _run_broker(libs: Path, home: Path, bootstrap: str, log_path: Path) -> KafkaInstance:
    """Start the broker of ``home`` (its ``server.properties`` and ``log4j2.properties``),
    output appended to ``log_path``, and wait until it answers at ``bootstrap``.

    Raises:
        ServiceError: the JVM exited or the broker did not answer in time (it is stopped).
    """
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            _java_command(
                libs, home / "log4j2.properties", "kafka.Kafka", str(home / "server.properties")
            ),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=home,
            start_new_session=True,
        )
    # keep the handle while the broker runs in this process's lifetime: dropping a running
    # Popen raises a ResourceWarning, and the handle reaps the broker when it is stopped
    _CHILDREN[process.pid] = process
    instance = KafkaInstance(bootstrap, process.pid, log_path)
    try:
        _wait_ready(instance, process)
    except ServiceError:
        stop(instance.pid)
        raise
    return instance


def restart(instance: KafkaInstance, state_dir: Path) -> KafkaInstance:
    """Stop the broker (SIGTERM) and start it again on its files, config and port.

    Unlike :func:`start` nothing is wiped: the topics, their records and the consumer groups'
    offsets survive, as after a broker restart in production (the soak's fault,
    ``loadtests/soak.py``).

    Args:
        instance: the running broker (its port is kept).
        state_dir: the services' state folder it was started in.

    Returns:
        The broker's new process, once it answers a metadata request.

    Raises:
        ServiceError: the broker would not stop, or did not come back (with its log tail).
    """
    home = state_dir / "kafka"
    config = home / "server.properties"
    if not config.is_file():
        raise ServiceError(f"kafka: no broker was started in {home}")
    stop(instance.pid)
    return _run_broker(ensure_libs(), home, instance.bootstrap, instance.log_path)


def _wait_ready(instance: KafkaInstance, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(
                f"kafka: the broker exited with code {process.returncode} while starting\n"
                f"{log_tail(instance.log_path)}"
            )
        if port_open(port_of(instance.bootstrap)) and answers_metadata(instance.bootstrap):
            return
        time.sleep(0.25)
    raise ServiceError(
        f"kafka: the broker at {instance.bootstrap} (pid {instance.pid}) did not answer a "
        f"metadata request within {READY_TIMEOUT_S:.0f} s\n{log_tail(instance.log_path)}"
    )


def answers_metadata(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """Return whether the broker at ``bootstrap`` answers a metadata request listing a broker.

    Runs aiokafka's admin client on an event loop of its own in a helper thread, so it can be
    called from synchronous code and from code already inside an event loop alike.
    """
    result: list[bool] = []

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
        )
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return bool(cluster.get("brokers"))
        finally:
            await admin.close()

    def run() -> None:
        with contextlib.suppress(Exception):
            result.append(asyncio.run(asyncio.wait_for(probe(), timeout_s)))

    aiokafka_logger = logging.getLogger("aiokafka")
    previous = aiokafka_logger.level
    aiokafka_logger.setLevel(logging.CRITICAL)  # a refused probe is expected while starting
    try:
        thread = threading.Thread(target=run, name="kafka-ready-probe", daemon=True)
        thread.start()
        thread.join(timeout_s + 2.0)
    finally:
        aiokafka_logger.setLevel(previous)
    return result == [True]


def _is_broker(pid: int) -> bool:
    """Whether ``pid`` is a live broker JVM (and not another process that reused the pid)."""
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in command_line and pid_alive(pid)


def is_running(instance: KafkaInstance) -> bool:
    """Return whether the broker's process is alive and its listener accepts connections."""
    return _is_broker(instance.pid) and port_open(port_of(instance.bootstrap))


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Brokers started by this process, by pid (reaped by :func:`stop`)."""


def stop(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop the broker: SIGTERM, then SIGKILL if it is still alive after ``timeout_s``.

    Args:
        pid: the broker JVM's process id; a process that is already gone, or a pid now used
            by something other than a broker, is left alone.
        timeout_s: how long a clean shutdown may take.

    Returns:
        Whether a running broker was stopped (False: nothing to stop).

    Raises:
        ServiceError: the process survived SIGKILL.
    """
    if not _is_broker(pid) or not pid_alive(pid):
        return False
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        if not pid_alive(pid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
    if pid_alive(pid):
        raise ServiceError(f"kafka: the broker (pid {pid}) survived SIGKILL")
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(timeout=5)
    return True
