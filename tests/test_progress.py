"""Progress of long CLI jobs: plain lines when the output is not a terminal, a bar on one.

``synth`` runs as a real ``wedding-engine`` process against the session's PostgreSQL, its
output a pipe (as in CI or ``kubectl logs``) or a pseudo-terminal; the ``--wait`` progress is
checked against a real consumer group committing on a real topic.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from stream_app.db.roles import APP_ROLE, as_role
from stream_app.lag import wait_for_lag_zero
from stream_app.progress import Progress
from stream_app.settings import Settings
from tests.conftest import TopicFactory

CLI = str(Path(sys.executable).parent / "wedding-engine")
LINE = re.compile(
    r"synth: (?P<done>[\d,]+) / 2,000 weddings \((?P<share>[\d.]+) %\)"
    r"(?:, (?P<rate>[\d,]+) weddings/s, about (?P<left>[\d,]+) s left| in [\d.]+ s"
    r"|, time left unknown)"
)


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a ``wedding-engine`` process run against the session's services."""
    env = dict(os.environ)
    env.update(
        POSTGRES_DSN=as_role(settings.postgres_dsn, APP_ROLE),
        KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        WEDDING_REDIS_URL=settings.redis_url,
        **extra,
    )
    return env


def synth_argv(org: str) -> list[str]:
    # 2,000 weddings are loaded in 4 chunks of 500 (the CLI aims at ~20 updates, at least 500)
    return [CLI, "synth", "--business", "photography", "--weddings", "2000", "--org", org]


def synth_to_a_pipe(settings: Settings, org: str, interval_s: str) -> str:
    """``synth`` with its output a pipe and the given progress interval: its stdout."""
    done = subprocess.run(
        synth_argv(org),
        env=cli_env(settings, WEDDING_PROGRESS_INTERVAL_S=interval_s),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_synth_writes_plain_progress_lines_when_not_on_a_terminal(settings: Settings) -> None:
    stdout = synth_to_a_pipe(settings, "cli-progress-plain", "0")
    assert "\r" not in stdout and "█" not in stdout  # no bar in a pipe
    lines = [m for m in map(LINE.fullmatch, stdout.splitlines()) if m]
    assert [m["done"] for m in lines] == ["0", "500", "1,000", "1,500", "2,000"]
    assert [m["share"] for m in lines] == ["0.0", "25.0", "50.0", "75.0", "100.0"]
    assert lines[0].group(0) == "synth: 0 / 2,000 weddings (0.0 %), time left unknown"
    for m in lines[1:-1]:
        done_n = int(m["done"].replace(",", ""))
        rate = int(m["rate"].replace(",", ""))
        assert rate > 0
        # the time left is what remains at that rate (both figures are rounded to units)
        assert abs(int(m["left"].replace(",", "")) - (2000 - done_n) / rate) <= 1
    assert lines[-1]["rate"] is None  # the last line says how long it took
    assert re.search(r"^loaded [\d,]+ rows in [\d.]+ s$", stdout, re.M)  # then the summary


def test_plain_lines_are_at_most_one_per_interval(settings: Settings) -> None:
    stdout = synth_to_a_pipe(settings, "cli-progress-interval", "3600")
    # the first update (the start), then nothing for an hour, except the final line
    lines = [m["done"] for m in map(LINE.fullmatch, stdout.splitlines()) if m]
    assert lines == ["0", "2,000"]


@pytest.mark.parametrize("columns", [120, 0])
def test_synth_draws_a_bar_with_rate_and_time_left_on_a_terminal(
    settings: Settings, columns: int
) -> None:
    master, slave = pty.openpty()
    # a terminal of 40 rows × 120 columns, or one that reports no size (as a fresh
    # pseudo-terminal does): the bar then takes 80 columns
    if columns:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    out = b""
    with subprocess.Popen(
        synth_argv(f"cli-progress-tty-{columns}"),
        env=cli_env(settings, COLUMNS="", LINES=""),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
    ) as proc:
        os.close(slave)
        try:
            while True:
                ready, _, _ = select.select([master], [], [], 300)
                assert ready, "no output for 300 s"
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the process closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            os.close(master)
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    text = out.decode()
    assert "\r" in text  # redrawn in place
    bar = r"synth: 100%\|[^|]*\| 2000/2000 \[\d\d:\d\d<00:00, +[\d.]+ weddings/s\]"
    bars = list(re.finditer(bar, text))  # count, elapsed<left, rate
    assert [b.group(0).split("| ")[1].split()[0] for b in bars][-1:] == ["2000/2000"], text
    final = bars[-1]
    line = text[text.rfind("\r", 0, final.start()) + 1 : text.find("\r", final.end())]
    assert len(line) == (columns or 80), line  # the bar fills the terminal's width
    assert not LINE.search(text)  # no plain lines on a terminal


async def test_wait_reports_committed_progress_of_a_real_group(
    settings: Settings, make_topics: TopicFactory
) -> None:
    (topic,) = await make_topics("progress", partitions=2)
    group = f"progress-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for i in range(100):  # 50 messages on each partition
            await producer.send_and_wait(topic, b"x", partition=i % 2)
    finally:
        await producer.stop()

    seen: list[tuple[int, int]] = []
    first_poll = asyncio.Event()

    def record(done: int, total: int) -> None:
        seen.append((done, total))
        first_poll.set()

    waiting = asyncio.create_task(
        wait_for_lag_zero(settings.kafka_bootstrap, group, topic, 60, poll_s=0.1, progress=record)
    )
    await first_poll.wait()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group)
    consumer.assign([TopicPartition(topic, p) for p in (0, 1)])
    await consumer.start()
    try:
        for offset in (20, 35, 50):  # both partitions to each offset in turn
            await consumer.commit(
                {TopicPartition(topic, p): OffsetAndMetadata(offset, "") for p in (0, 1)}
            )
            await asyncio.sleep(0.5)
        await asyncio.wait_for(waiting, 30)
    finally:
        await consumer.stop()
    assert seen[0] == (0, 100)
    assert seen[-1] == (100, 100)
    assert {total for _, total in seen} == {100}
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and {40, 70} <= set(dones)

    # the same figures as the CLI prints them in plain mode
    sink = io.StringIO()  # not a terminal
    progress = Progress("folded", "events", interval_s=0, stream=sink)
    for done, total in seen:
        progress(done, total)
    progress.close()
    printed = sink.getvalue().splitlines()
    assert printed[0] == "folded: 0 / 100 events (0.0 %), time left unknown"
    assert printed[-1].startswith("folded: 100 / 100 events (100.0 %) in ")


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "line"),
    [
        (250, 1000, 5.0, "job: 250 / 1,000 rows (25.0 %), 50 rows/s, about 15 s left"),
        (250, 1000, 0.0, "job: 250 / 1,000 rows (25.0 %), time left unknown"),
        (0, 1000, 5.0, "job: 0 / 1,000 rows (0.0 %), time left unknown"),
        (1000, 1000, 12.34, "job: 1,000 / 1,000 rows (100.0 %) in 12.3 s"),
        (0, 0, 0.5, "job: 0 / 0 rows (100.0 %) in 0.5 s"),
    ],
)
def test_plain_line_figures(done: int, total: int, elapsed: float, line: str) -> None:
    # 250 rows in 5 s: 50 rows/s; 750 left at 50/s: 15 s
    assert Progress("job", "rows", terminal=False).plain_line(done, total, elapsed) == line


def test_the_rate_counts_from_the_first_update() -> None:
    # 400 done at the first update, 600 five seconds later: 40 rows/s, 400 left: 10 s
    line = Progress("job", "rows", terminal=False).plain_line(600, 1000, 5.0, first_done=400)
    assert line == "job: 600 / 1,000 rows (60.0 %), 40 rows/s, about 10 s left"
