"""Benchmark: the product beside its peers, on the same topic of booking events, in one run.

Produces ONE topic of ``--events`` booking events (default 200,000) exactly as
:mod:`loadtests.bench_million` does (same generator: 8 organisations × 50 venues, every tenth
booking cancelled, event times one second apart, in order), with ``--partitions`` partitions
(default 4), then folds that topic with each system of ``--systems``, one after another, each
as its own consumer group reading from the start, nothing else running meanwhile:

- ``bare``: a bare aiokafka consumer loop, no work per event (the ceiling;
  :func:`loadtests.bench_replay.bare_consume`, timed from its first batch to the last event);
- ``quix``: Quix Streams (the optional ``bench`` extra), exactly-once, a 1-day tumbling
  window per message key with count and sum of ``amount_minor``, ``.current()`` (one window
  row updated and emitted per event), in its own process (:mod:`loadtests.peer_quix`);
- ``ours``: one worker of this product (bookings agent, seven rows per event, exactly once),
  started as in ``bench_million``;
- ``faust``: an idiomatic faust-streaming agent (:mod:`loadtests.peer_faust`: a 1-day
  windowed count table and a counter table, at-least-once, faust's defaults), in its own
  process.

How each is timed (same clock, ``time.monotonic``; the end is always the first poll, every
0.1 s, that sees the group's committed offsets at the end of every partition:
:class:`loadtests.committed.CommitWatcher`):

- ``quix`` and ``faust``: from the first message processed (reported by the child process)
  to all offsets committed; their start-up (process start to first message) is printed
  apart and not in the rate. Quix Streams commits every 5 s (its default), faust every 2.8 s,
  so the committed end trails the processing; the time Quix took to process the last message
  is printed too.
- ``ours``: from the worker owning every partition (polled on ``/health`` every 0.1 s) to all
  offsets committed (faust's 2.8 s commit interval); start-up printed apart.

Checks: Quix's last window row per key and day equals an independent count and sum over the
produced events; our bookings per organisation over HTTP equal the produced counts; the faust
counter table's changelog holds the produced per-key amount sums.

It prints, per system: events/s, its ratio to the bare ceiling, and ``ours / quix``.

Usage: ``python -m loadtests.bench_peer [--events N] [--partitions P]
[--systems bare,quix,ours,faust]`` (needs ``pip install -e '.[bench]'`` for ``quix``). It
starts its own Kafka and PostgreSQL in a fresh state folder and stops them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from loadtests.bench_million import (
    events,
    fold_with_workers,
    produce,
    try_bookings_over_http,
)
from loadtests.bench_replay import bare_consume
from loadtests.committed import CommitWatcher
from loadtests.common import stack, state_folder, topic_reader
from stream_app.devservices.common import ServiceError, free_ports, log_tail
from stream_app.settings import Settings
from stream_app.topics import WEDDING_BOOKINGS

SYSTEMS = ("bare", "quix", "ours", "faust")
DAY_MS = 86_400_000


@dataclass
class Result:
    """One system's fold of the topic.

    Attributes:
        system: its name in the table.
        seconds: the timed fold (see the module docstring for each system's clock).
        events: events folded in ``seconds``.
        startup_s: start-up before the clock started, if measured.
        note: what was checked or measured besides.
    """

    system: str
    seconds: float
    events: int
    startup_s: float | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds


def expected_windows(messages: list[tuple[bytes, bytes]]) -> dict[str, list[int]]:
    """``{"<key>|<day start, epoch ms>": [events, sum of amount_minor]}`` over ``messages``,
    by event time (``occurred_at``), computed here without Quix."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for key, value in messages:
        doc = orjson.loads(value)
        ms = int(datetime.fromisoformat(doc["occurred_at"]).timestamp() * 1000)
        row = out[f"{key.decode()}|{ms - ms % DAY_MS}"]
        row[0] += 1
        row[1] += doc["amount_minor"]
    return dict(out)


def expected_amounts(messages: list[tuple[bytes, bytes]]) -> dict[str, int]:
    """Sum of ``amount_minor`` per message key over ``messages``."""
    out: dict[str, int] = defaultdict(int)
    for key, value in messages:
        out[key.decode()] += orjson.loads(value)["amount_minor"]
    return dict(out)


async def until_committed_or_exit(
    watcher: CommitWatcher, group: str, proc: asyncio.subprocess.Process, log: Path
) -> float:
    """``time.monotonic()`` when ``group`` committed the whole topic.

    Raises:
        RuntimeError: the child process ``proc`` exited first (with its log tail).
    """
    committed = asyncio.create_task(watcher.wait_all_committed(group, timeout_s=7200))
    exited = asyncio.create_task(proc.wait())
    done, _ = await asyncio.wait({committed, exited}, return_when=asyncio.FIRST_COMPLETED)
    if committed in done:
        exited.cancel()
        return committed.result()
    committed.cancel()
    raise RuntimeError(f"{group} exited with {proc.returncode}\n{log_tail(log)}")


async def stop_child(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM ``proc`` (if still running) and wait for it (SIGKILL after 120 s)."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=120)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def fold_in_child(
    watcher: CommitWatcher,
    group: str,
    log: Path,
    argv: list[str],
    env: dict[str, str] | None = None,
) -> tuple[float, float, int | None]:
    """Run ``python -m <argv>`` (its output to ``log``, environment ``env`` or this one)
    until consumer group ``group`` committed the whole topic, then stop it.

    Returns:
        ``time.monotonic()`` at the spawn, at the commit, and the child's exit code.

    Raises:
        RuntimeError: the child exited before (with its log tail).
    """
    spawned = time.monotonic()
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *argv, env=env, stdout=out, stderr=out
        )
    try:
        end = await until_committed_or_exit(watcher, group, proc, log)
    finally:
        await stop_child(proc)
    return spawned, end, proc.returncode


async def run_quix(
    bootstrap: str, watcher: CommitWatcher, state: Path, messages: list[tuple[bytes, bytes]]
) -> Result:
    """Fold the topic with Quix Streams in a child process (:mod:`loadtests.peer_quix`)."""
    group = "bench-peer-quix"
    log = state / "quix.log"
    result_file = state / "quix-result.json"
    argv = [
        "loadtests.peer_quix", "--bootstrap", bootstrap, "--topic", WEDDING_BOOKINGS,
        "--group", group, "--state-dir", str(state / "quix-state"),
        "--events", str(len(messages)), "--result", str(result_file),
    ]  # fmt: skip
    spawned, end, returncode = await fold_in_child(watcher, group, log, argv)
    if returncode != 0 or not result_file.exists():
        raise RuntimeError(f"quix exited with {returncode}\n{log_tail(log)}")
    got: dict[str, Any] = json.loads(result_file.read_bytes())
    first: float = got["first_processed"]
    windows: dict[str, list[int]] = got["windows"]
    want = expected_windows(messages)
    wrong = sum(1 for k in want.keys() | windows.keys() if windows.get(k) != want.get(k))
    if wrong:
        raise AssertionError(f"quix: {wrong} of {len(want)} window rows differ from the count")
    processed = got["last_processed"]
    all_processed = f"all processed after {processed - first:.1f} s; " if processed else ""
    return Result(
        "Quix Streams, exactly-once, 1-day tumbling window, .current()",
        end - first,
        len(messages),
        first - spawned,
        f"{all_processed}{len(want)} window rows = independent count and sum",
    )


async def run_faust(
    bootstrap: str, watcher: CommitWatcher, state: Path, messages: list[tuple[bytes, bytes]]
) -> Result:
    """Fold the topic with an idiomatic faust agent in a child process
    (:mod:`loadtests.peer_faust`) and check its counter table's changelog."""
    app_id = "bench-peer-faust"
    log = state / "faust.log"
    first_file = state / "faust-first"
    partitions = len(watcher.partitions())
    env = {
        **os.environ,
        "PEER_BOOTSTRAP": bootstrap,
        "PEER_APP_ID": app_id,
        "PEER_DATADIR": str(state / "faust-data"),
        "PEER_WEB_PORT": str(free_ports(1)[0]),
        "PEER_FIRST_FILE": str(first_file),
        "PEER_PARTITIONS": str(partitions),
        "PEER_TOPIC": WEDDING_BOOKINGS,
    }
    argv = ["loadtests.peer_faust", "worker", "--loglevel", "warn"]
    spawned, end, _ = await fold_in_child(watcher, app_id, log, argv, env)
    first = float(first_file.read_text())
    got = await last_values(bootstrap, f"{app_id}-peer-amounts-changelog")
    want = expected_amounts(messages)
    wrong = sorted(k for k in want.keys() | got.keys() if got.get(k) != want.get(k))
    if wrong:
        k = wrong[0]
        raise AssertionError(
            f"faust: {len(wrong)} of {len(want)} keys' amounts differ, e.g. {k!r}: "
            f"changelog {got.get(k)}, produced {want.get(k)}"
        )
    return Result(
        "faust-streaming agent, 1-day window table + counter (at-least-once)",
        end - first,
        len(messages),
        first - spawned,
        f"counter table of {len(want)} keys = independent sums",
    )


async def last_values(bootstrap: str, topic: str) -> dict[str, int]:
    """The last value per key of ``topic`` (faust's changelog: JSON key and value), read from
    the start to its end."""
    async with topic_reader(bootstrap, topic) as consumer:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        out: dict[str, int] = {}

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                for rec in records:
                    if rec.key is not None and rec.value is not None:
                        out[str(orjson.loads(rec.key))] = int(orjson.loads(rec.value))
        return out


async def run_ours(
    s: Settings, state: Path, watcher: CommitWatcher, bookings: Counter[str]
) -> Result:
    """Fold the topic with one worker of the product; check its bookings over HTTP against
    ``bookings`` (produced bookings per organisation)."""
    fold = await fold_with_workers(
        s, state, watcher, 1, "bench-peer-ours", len(watcher.partitions())
    )
    try:
        got = await try_bookings_over_http(fold.workers[0], s)
    finally:
        fold.stop()
    if got != dict(bookings):
        raise AssertionError(f"ours: bookings over HTTP {got} != produced {dict(bookings)}")
    return Result(
        "this product, one worker (7 rows per event, exactly once)",
        fold.fold_s,
        fold.events,
        fold.startup_s,
        f"peak RSS {fold.peaks[0] / 2**20:,.0f} MiB; bookings over HTTP = produced counts",
    )


def print_table(results: list[Result]) -> None:
    """The results, ratios to ``bare`` and ``ours / quix`` where both ran."""
    bare = next((r for r in results if r.system.startswith("bare")), None)
    print(f"{'system':<68} {'events/s':>9} {'of bare':>8} {'start-up':>9}")
    for r in results:
        ratio = f"{r.rate / bare.rate:.2%}" if bare else "-"
        startup = f"{r.startup_s:.1f} s" if r.startup_s is not None else "-"
        print(f"{r.system:<68} {r.rate:>9,.0f} {ratio:>8} {startup:>9}")
    for r in results:
        if r.note:
            print(f"  {r.system.split(',')[0]}: {r.seconds:.1f} s; {r.note}")
    ours = next((r for r in results if r.system.startswith("this product")), None)
    quix = next((r for r in results if r.system.startswith("Quix")), None)
    if ours and quix:
        print(f"ours / Quix Streams: {ours.rate / quix.rate:.2f}x (target >= 2x)")


async def fold_with(
    system: str,
    s: Settings,
    state: Path,
    watcher: CommitWatcher,
    messages: list[tuple[bytes, bytes]],
    bookings: Counter[str],
) -> Result:
    """Fold the topic with ``system`` (one of :data:`SYSTEMS`) and return its result."""
    if system == "bare":
        secs = await bare_consume(s.kafka_bootstrap, WEDDING_BOOKINGS, len(messages))
        return Result("bare aiokafka consume loop (ceiling)", secs, len(messages))
    if system == "quix":
        return await run_quix(s.kafka_bootstrap, watcher, state, messages)
    if system == "ours":
        return await run_ours(s, state, watcher, bookings)
    if system == "faust":
        return await run_faust(s.kafka_bootstrap, watcher, state, messages)
    raise ValueError(f"unknown system {system!r}")


async def end_offsets_total(bootstrap: str) -> int:
    """Messages in ``wedding-bookings`` (sum of its end offsets)."""
    async with CommitWatcher(bootstrap, WEDDING_BOOKINGS) as watcher:
        return await watcher.end_total()


async def run(n: int, partitions: int, systems: list[str], state: Path) -> None:
    """Produce the topic, fold it with each of ``systems`` in turn, print the table."""
    os.environ["WEDDING_PARTITIONS"] = str(partitions)  # our worker's topics (it inherits env)
    async with stack(state, partitions=partitions) as s:
        messages, bookings = events(n)
        produce_s = await produce(s.kafka_bootstrap, messages)
        print(
            f"produce: {len(messages):,} events in {produce_s:.1f} s to {WEDDING_BOOKINGS} "
            f"({partitions} partitions)"
        )
        if await end_offsets_total(s.kafka_bootstrap) != len(messages):
            raise AssertionError(f"{WEDDING_BOOKINGS} does not hold exactly the produced events")
        results: list[Result] = []
        failed: list[str] = []
        async with CommitWatcher(s.kafka_bootstrap, WEDDING_BOOKINGS) as watcher:
            for system in systems:
                try:
                    results.append(await fold_with(system, s, state, watcher, messages, bookings))
                except (
                    AssertionError,
                    RuntimeError,
                    TimeoutError,
                    OSError,
                    ServiceError,
                    KafkaError,
                ) as e:
                    # the other systems still run: one failure does not lose their figures
                    failed.append(system)
                    print(f"FAILED: {system}: {e}", flush=True)
                    continue
                print(f"done: {results[-1].system}: {results[-1].rate:,.0f} events/s", flush=True)
        print_table(results)
        if failed:
            raise SystemExit(f"failed: {', '.join(failed)}")


def parse_systems(text: str) -> list[str]:
    """``"bare,quix"`` -> ``["bare", "quix"]``.

    Raises:
        argparse.ArgumentTypeError: a name not in :data:`SYSTEMS`.
    """
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in SYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"systems must be among {', '.join(SYSTEMS)}: {text!r}")
    return names


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--systems", type=parse_systems, default=list(SYSTEMS))
    args = parser.parse_args()
    with state_folder("wedding-peer") as state:
        asyncio.run(run(args.events, args.partitions, args.systems, state))


if __name__ == "__main__":
    main()
