"""Benchmark: N booking events (default 1,000,000) through the bookings agent into the tables.

Produces ``N`` synthetic, valid ``booking_created`` / ``booking_cancelled`` events (8
organisations × 50 venues, service dates over one year, event times in order) to
``wedding-bookings`` (4 partitions, ``WEDDING_PARTITIONS``), then, for each worker count of
``--workers`` (default ``1``; ``1,2`` runs one worker, then two), starts that many workers as a
new consumer group (own state folder and HTTP port each) on the whole topic, one run after
another, and prints a table, one line per worker count:

- start-up: from starting the processes until the workers together own every partition;
- fold: from then until the group's committed offsets reach the end of the topic (every event
  folded into the service-date totals and the event-time windows; polled every 0.1 s by
  :class:`loadtests.committed.CommitWatcher`), as seconds and events/s;
- our ratio to the ceiling: a bare aiokafka consumer reading the same topic in the same run;
- peak resident memory of each worker process (sampled every 0.5 s);
- the workers' CPU time per event folded (user + system, µs): the stream core's cost, which
  a loaded machine moves much less than the rate (compare code by this on a shared machine).

After each fold it reads every organisation's bookings over HTTP (50 venues × 8 organisations,
months of 2027) and asserts they equal the counts of the produced events. With two worker
counts it prints the ratio of their rates. ``--restart``: after the first fold, worker 0 is
killed with SIGKILL and restarted on the same state folder and port; it prints the seconds
until its partitions are assigned again and until a complete read over HTTP gives the exact
totals again.

Targets (issue 13): 1,000,000 events in under 30 s (33,000 events/s) with peak RSS under
1 GB, also with two workers; reads exact again within 10 s of a SIGKILL and restart.

Before the timed folds, one worker of another group folds for ``--warm-up`` seconds (15 by
default, untimed): a freshly started broker spends the first ~15 s of a fold compiling the
code paths of the worker's requests (:func:`warm_up`); ``--warm-up 0`` times a cold broker.

Usage: ``python -m loadtests.bench_million [--events N] [--workers 1,2] [--restart]
[--warm-up SECONDS]``. It starts its own Kafka and PostgreSQL in a fresh state folder and
stops them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import psutil
from aiokafka import AIOKafkaProducer

from loadtests.bench_replay import bare_consume
from loadtests.committed import CommitWatcher
from loadtests.common import bench_worker, stack, state_folder
from stream_app.devservices.common import ServiceError, log_tail
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from stream_app.topics import WEDDING_BOOKINGS
from stream_app.web.auth import issue_token

ORGS = [f"bench-org-{i}" for i in range(8)]
VENUES = [f"venue-{i:02d}" for i in range(50)]


def events(n: int) -> tuple[list[tuple[bytes, bytes]], Counter[str]]:
    """``n`` events (every tenth booking is later cancelled) and bookings per organisation."""
    out: list[tuple[bytes, bytes]] = []
    bookings: Counter[str] = Counter()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    i = 0
    while len(out) < n:
        org, venue = ORGS[i % len(ORGS)], VENUES[(i // len(ORGS)) % len(VENUES)]
        at = start + timedelta(seconds=i)
        doc = {
            "schema_version": 1,
            "event_id": f"m-{i}",
            "organization_id": org,
            "occurred_at": at.isoformat().replace("+00:00", "Z"),
            "event_type": "booking_created",
            "booking_id": f"b-{i}",
            "venue_id": venue,
            "service_date": (date(2027, 1, 1) + timedelta(days=i % 365)).isoformat(),
            "amount_minor": 100_000 + i % 9_000,
            "currency": "EUR",
        }
        key = f"{org}/{venue}".encode()
        out.append((key, orjson.dumps(doc)))
        bookings[org] += 1
        if i % 10 == 0 and len(out) < n:
            cancel = {**doc, "event_id": f"m-{i}-c", "event_type": "booking_cancelled"}
            out.append((key, orjson.dumps(cancel)))
        i += 1
    return out, bookings


async def produce(bootstrap: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Send ``messages`` (key, value) to ``wedding-bookings`` (idempotent producer, acks=all,
    in order per key); return the seconds it took."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,  # a retried batch is not written twice (exact counts)
        linger_ms=20,
        max_batch_size=1 << 20,
    )
    await producer.start()
    t = time.perf_counter()
    try:
        pending = []
        for key, value in messages:
            pending.append(await producer.send(WEDDING_BOOKINGS, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - t


async def sample_rss(pid: int, stop: asyncio.Event) -> int:
    """Peak RSS in bytes of process ``pid`` until ``stop`` is set."""
    proc = psutil.Process(pid)
    peak = 0
    while not stop.is_set():
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        await asyncio.sleep(0.5)
    return peak


def spawn_worker(
    s: Settings, state: Path, app_id: str, index: int, port: int | None = None
) -> WorkerProcess:
    """Start worker ``index`` of consumer group ``app_id`` with its own state folder and port.

    The folder (``state/<app_id>-<index>``) and log are derived from the arguments, so calling
    it again with the same ``port`` restarts the same worker on the same local state.
    """
    # static membership (KIP-345): the restarted worker takes its partitions back at once
    # instead of after the session timeout
    name = f"{app_id}-{index}"
    return bench_worker(s, state, name, app_id, port=port, env={"WEDDING_GROUP_INSTANCE_ID": name})


async def assigned_partitions(worker: WorkerProcess, session: aiohttp.ClientSession) -> list[int]:
    """The ``wedding-bookings`` partitions ``worker`` reports on ``/health`` ([] if it does not
    answer yet)."""
    try:
        async with session.get(f"{worker.url}/health") as resp:
            if resp.status != 200:
                return []
            parts: list[int] = (await resp.json())["bookings_partitions"]
            return parts
    except aiohttp.ClientError:
        return []


async def wait_assigned(workers: list[WorkerProcess], partitions: int, timeout_s: float) -> None:
    """Wait until ``workers`` together own all ``partitions`` partitions, each once, every
    worker at least one (polled every 0.1 s).

    Raises:
        ServiceError: a worker exited (with its log tail).
        TimeoutError: not assigned so after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            for w in workers:
                if w.process.poll() is not None:
                    raise ServiceError(f"worker exited\n{log_tail(w.log_path)}")
            owned = [await assigned_partitions(w, session) for w in workers]
            flat = [p for parts in owned for p in parts]
            if all(owned) and sorted(flat) == list(range(partitions)):
                return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{len(workers)} workers not assigned {partitions} partitions")


@dataclass
class FoldRun:
    """One fold of the topic by ``len(workers)`` workers of consumer group ``app_id``.

    Attributes:
        startup_s: from starting the processes to all partitions assigned.
        fold_s: from then to every offset committed.
        events: events committed within ``fold_s`` (the end offsets minus what was already
            committed when the partitions were assigned).
        peaks: peak RSS per worker, bytes (sampled every 0.5 s).
        cpu_s: CPU seconds (user + system) the workers used within ``fold_s``, together.
    """

    app_id: str
    workers: list[WorkerProcess]
    startup_s: float
    fold_s: float
    events: int
    peaks: list[int]
    cpu_s: float

    @property
    def rate(self) -> float:
        """Events per second over ``fold_s``."""
        return self.events / self.fold_s

    @property
    def cpu_us_per_event(self) -> float:
        """The workers' CPU microseconds per event folded: the cost of the stream core,
        which the machine's load moves much less than the rate (a shared machine slows
        the wall clock, not the work)."""
        return self.cpu_s * 1e6 / self.events

    def stop(self) -> None:
        """Stop every worker (SIGTERM)."""
        for w in self.workers:
            w.stop()


async def fold_with_workers(
    s: Settings, state: Path, watcher: CommitWatcher, count: int, app_id: str, partitions: int
) -> FoldRun:
    """Start ``count`` workers of group ``app_id`` and time their fold of the whole topic.

    The clock starts when the workers together own all ``partitions`` partitions (start-up,
    table recovery and the rebalance between workers are outside it, and timed separately) and
    stops at the first poll that sees every offset committed (:class:`CommitWatcher`). The
    workers are left running (the caller reads from them and stops them).
    """
    spawned = time.monotonic()
    workers = [spawn_worker(s, state, app_id, i) for i in range(count)]
    stop = asyncio.Event()
    samplers = [asyncio.create_task(sample_rss(w.process.pid, stop)) for w in workers]
    try:
        await wait_assigned(workers, partitions, timeout_s=180)
        t0 = time.monotonic()
        cpu0 = cpu_seconds(workers)
        before = await watcher.committed_total(app_id)
        end = await watcher.end_total()
        t1 = await watcher.wait_all_committed(app_id, timeout_s=7200)
        cpu = cpu_seconds(workers) - cpu0
        stop.set()
        peaks = [await t for t in samplers]
    except BaseException:
        stop.set()
        for w in workers:
            w.stop()
        raise
    return FoldRun(app_id, workers, t0 - spawned, t1 - t0, end - before, peaks, cpu)


def cpu_seconds(workers: list[WorkerProcess]) -> float:
    """CPU seconds (user + system) the ``workers``' processes have used so far, together."""
    total = 0.0
    for w in workers:
        times = psutil.Process(w.process.pid).cpu_times()
        total += times.user + times.system
    return total


async def try_bookings_over_http(worker: WorkerProcess, s: Settings) -> dict[str, int] | None:
    """Bookings per organisation (all of :data:`ORGS`, every venue, months of 2027) read over
    HTTP from ``worker``, or ``None`` if any read fails (not serving yet, not 200)."""
    async with aiohttp.ClientSession(worker.url) as session:

        async def one(org: str) -> int | None:
            token = issue_token(s.jwt_secret, user_id="bench", organization_id=org, ttl_seconds=600)
            total = 0
            for venue in VENUES:
                try:
                    async with session.get(
                        f"/orgs/{org}/venues/{venue}/metrics",
                        params={"grain": "month", "from": "2027-01", "to": "2027-12"},
                        headers={"Authorization": f"Bearer {token}"},
                    ) as r:
                        if r.status != 200:
                            return None
                        body = await r.json()
                except aiohttp.ClientError:
                    return None
                total += sum(p["bookings"] for p in body["periods"])
            return total

        got = await asyncio.gather(*(one(org) for org in ORGS))
    if any(g is None for g in got):
        return None
    return {org: g for org, g in zip(ORGS, got, strict=True) if g is not None}


async def restart_until_exact(
    run: FoldRun, s: Settings, state: Path, bookings: Counter[str], partitions: int
) -> tuple[float, float]:
    """SIGKILL worker 0 of ``run``, restart it on the same state folder and port, and time it.

    Returns:
        (seconds from the restart to its partitions assigned again, seconds from the restart
        to the first complete HTTP read of every organisation's bookings equal to
        ``bookings``, that read included; reads are retried every 0.2 s).

    Raises:
        TimeoutError: no exact read within 600 s.
    """
    old = run.workers[0]
    old.kill()
    t0 = time.monotonic()
    new = spawn_worker(s, state, run.app_id, 0, port=old.web_port)
    run.workers[0] = new
    await wait_assigned(run.workers, partitions, timeout_s=600)
    ready_s = time.monotonic() - t0
    deadline = t0 + 600
    last: dict[str, int] | None = None
    while time.monotonic() < deadline:
        last = await try_bookings_over_http(new, s)
        if last == dict(bookings):
            return ready_s, time.monotonic() - t0
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no exact read 600 s after the restart; last read {last}")


async def warm_up(s: Settings, state: Path, seconds: float, partitions: int) -> None:
    """Let one worker of a group of its own fold the topic for ``seconds`` (untimed), then
    stop it: a freshly started broker compiles the code paths of a worker's requests (its
    changelog writes to compacted topics, offset commits) in the first seconds it serves
    them, and a fold timed then measures the broker's JIT compiler as well (its compiler
    threads took 20-32 % of a core and its request handlers ran slower for the first ~15 s:
    per-thread CPU of the broker, 2026-12-06). A broker in service has long done that."""
    worker = spawn_worker(s, state, "bench-million-warm-up", 0)
    try:
        await wait_assigned([worker], partitions, timeout_s=180)
        await asyncio.sleep(seconds)
    finally:
        worker.stop()


async def run(
    n: int, state: Path, worker_counts: list[int], restart: bool, warm_up_s: float = 0.0
) -> None:
    """Produce ``n`` events, fold them with each worker count, print the figures (module doc)."""
    async with stack(state) as s:
        await measure(s, n, state, worker_counts, restart, warm_up_s)


async def measure(
    s: Settings,
    n: int,
    state: Path,
    worker_counts: list[int],
    restart: bool,
    warm_up_s: float = 0.0,
) -> None:
    """Produce ``n`` events to the services of ``s``, fold them with each worker count and
    print the figures (module docstring); first warm the broker for ``warm_up_s`` seconds
    (:func:`warm_up`; 0: the folds meet a cold broker)."""
    partitions = s.topic_partitions
    messages, bookings = events(n)
    produce_s = await produce(s.kafka_bootstrap, messages)
    print(f"produce: {len(messages):,} events in {produce_s:.1f} s ({partitions} partitions)")
    if warm_up_s > 0:
        await warm_up(s, state, warm_up_s, partitions)
        print(
            f"warm-up: one worker of another group folded for {warm_up_s:g} s, untimed, so "
            "the broker's JIT has compiled its paths (--warm-up 0: a cold broker)"
        )
    runs: list[FoldRun] = []
    restarted: tuple[float, float] | None = None
    try:
        async with CommitWatcher(s.kafka_bootstrap, WEDDING_BOOKINGS) as watcher:
            for count in worker_counts:
                fold = await fold_with_workers(
                    s, state, watcher, count, f"bench-million-w{count}", partitions
                )
                runs.append(fold)
                got = await try_bookings_over_http(fold.workers[0], s)
                assert got == dict(bookings), (got, dict(bookings))
                if restart and restarted is None:
                    restarted = await restart_until_exact(fold, s, state, bookings, partitions)
                fold.stop()  # before the next fold: nothing else runs while one is timed
        bare_s = await bare_consume(s.kafka_bootstrap, WEDDING_BOOKINGS, len(messages))
        bare = len(messages) / bare_s
        print(
            f"{'workers':>7}  {'start-up s':>10}  {'fold s':>7}  {'events/s':>9}  "
            f"{'of bare':>7}  {'CPU µs/event':>12}  peak RSS per worker"
        )
        for fold in runs:
            rss = ", ".join(f"{p / 2**20:,.0f} MiB" for p in fold.peaks)
            print(
                f"{len(fold.workers):>7}  {fold.startup_s:>10.1f}  {fold.fold_s:>7.1f}  "
                f"{fold.rate:>9,.0f}  {fold.rate / bare:>7.2%}  "
                f"{fold.cpu_us_per_event:>12.1f}  {rss}"
            )
        print(
            f"ceiling: bare aiokafka {bare:,.0f} events/s (same topic, same run); "
            "target: 1,000,000 in < 30 s = 33,000 events/s, peak RSS < 1,024 MiB"
        )
        if len(runs) == 2:
            print(f"two workers / one worker: {runs[1].rate / runs[0].rate:.2f}x")
        print(
            f"check: bookings of all {len(ORGS)} organisations over HTTP equal the produced "
            "counts after every fold"
        )
        if restarted is not None:
            ready_s, exact_s = restarted
            print(
                f"restart ({len(runs[0].workers)} worker(s)): worker 0 SIGKILLed after the fold of "
                f"{len(messages):,} events, restarted on its state folder: partitions assigned "
                f"after {ready_s:.1f} s, exact bookings of all {len(ORGS)} organisations over "
                f"HTTP after {exact_s:.1f} s (target < 10 s; static membership: it rejoins "
                "as the same member, WEDDING_GROUP_INSTANCE_ID, and keeps its local tables)"
            )
    finally:
        for fold in runs:
            fold.stop()


def parse_counts(text: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]``: worker counts, each 1 or more.

    Raises:
        argparse.ArgumentTypeError: not a comma-separated list of positive integers.
    """
    try:
        counts = [int(c) for c in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be >= 1: {text!r}")
    return counts


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--workers",
        type=parse_counts,
        default=[1],
        help="worker counts to fold with, one after another (e.g. 1,2)",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="after the first fold, SIGKILL worker 0, restart it and time exact reads",
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="first let an untimed worker of another group fold for this long, so the fresh"
        " broker has compiled its code paths (0: time the folds on a cold broker)",
    )
    args = parser.parse_args()
    if args.warm_up < 0:
        parser.error(f"--warm-up: must be >= 0 seconds, got {args.warm_up:g}")
    with state_folder("wedding-bench") as state:
        asyncio.run(run(args.events, state, args.workers, args.restart, args.warm_up))


if __name__ == "__main__":
    main()
