"""Scatter-gather reads over every worker's table partitions, for organisation summaries.

Part of the read path (the organisation summaries over HTTP); reads tables, never writes. An
organisation's rows are spread over all partitions of a table (the message key is
``organization_id/<entity>``), so over all workers. The worker that receives a summary request:

1. computes its own *part* from the rows of the organisation in the changelog partitions it
   holds as active (:func:`local_part`: one synchronous copy of the encoded rows out of
   RocksDB, so no fold batch or rebalance interleaves, then their decoding and the part's
   arithmetic in a thread, off the event loop: an attacker's summary over 150,000 clients
   held the loop 2.3 s, every tenant's requests on the worker waiting);
2. asks every other worker that faust's partition assignor lists for those changelogs (the
   URLs of :meth:`assignor.table_metadata`, as :mod:`stream_app.queries.routing` does) for its
   part: the same route with :data:`PART_HEADER`, an internal token and the same query;
3. checks that the parts together cover every partition of every table **exactly once**
   (each part lists the partitions it read), else fails ``incomplete`` naming the missing or
   doubly read partitions (a rebalance under way; retry). A total is never silently partial.

What cannot be answered raises :class:`~stream_app.queries.errors.QueryUnavailableError`
(the HTTP layer answers it with a 503 naming its code).

Tenant isolation: a scan reads only keys that start with ``organization_id/`` (``/`` cannot
occur in an id), and the token of every request names that organisation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from stream_app.app import app, settings
from stream_app.queries.errors import QueryUnavailableError
from stream_app.queries.routing import remote_json
from stream_app.quotas import SlotsBusyError, TenantSlots
from stream_app.runtime.table_scan import RawRows, decode_rows, scan_prefix_raw
from stream_app.tables.summaries import coverage_problem

PART_HEADER = "X-Wedding-Summary-Part"
"""Set on a worker-to-worker request: answer with this worker's part, do not gather."""

Rows = Iterator[tuple[str, dict[str, Any]]]


def _changelog(table: Any) -> str:
    name: str = table.changelog_topic.get_topic_name()
    return name


def check_not_recovering() -> None:
    """Raise ``recovering`` while this worker restores its tables or rebalances.

    Raises:
        QueryUnavailableError: ``recovering``.
    """
    if getattr(app, "in_recovery", False) or getattr(app, "rebalancing", False):
        raise QueryUnavailableError("recovering", "this worker is restoring its tables; retry")


def held_partitions(table: Any) -> list[int]:
    """The partitions of ``table``'s changelog this worker holds as active, ascending."""
    changelog = _changelog(table)
    return sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog)


def org_raw(table: Any, organization_id: str, partitions: list[int]) -> RawRows:
    """The encoded rows of ``organization_id`` in ``partitions`` of ``table``, read straight
    from the partitions' RocksDB databases by seeking to the organisation's key prefix
    (:func:`stream_app.runtime.table_scan.scan_prefix_raw`), so the cost is the
    organisation's rows, not the table's. Synchronous; decode with :func:`org_rows`."""
    return scan_prefix_raw(table, f"{organization_id}/", partitions)


def org_rows(table: Any, organization_id: str, rows: RawRows, *, raw: bool = False) -> Rows:
    """``(key, value)`` of :func:`org_raw`'s ``rows``, decoded (pure: safe in a thread).

    Guard rows (a ``~`` segment: dedupe records) are skipped. ``value`` is the row's
    ``values`` object (guarded tables: payments, interactions, suppliers) or, with
    ``raw=True``, the whole stored row (the venue-bookings table).
    """
    prefix = f"{organization_id}/"

    def keep(key: Any) -> bool:
        return isinstance(key, str) and key.startswith(prefix) and "/~" not in key

    for key, row in decode_rows(table, rows, keep):
        if isinstance(row, dict):
            yield key, (row if raw else row.get("values", {}))


Compute = Callable[[dict[str, list[int]]], Callable[[], Any]]
"""A summary's part: given the held partitions per changelog, reads the rows it needs
(:func:`org_raw`, synchronous) and returns the rest of the work (decoding and arithmetic,
no RocksDB access), which :func:`local_part` runs in a thread."""


SUMMARY_SLOTS = 2
"""Summary parts one worker computes at once (threads of :data:`_EXECUTOR`); an organisation
one of them. An attacker's viewer ran eight at once, each a scan of 150,000 clients, and the
eight threads took the worker from every tenant (reads 6.8-11.7 s, ``/livez`` 9 s)."""
SUMMARY_WAIT_S = 10.0
"""Longest wait for a summary slot before 503 ``busy``."""
_EXECUTOR = ThreadPoolExecutor(max_workers=SUMMARY_SLOTS, thread_name_prefix="summary")
"""The threads of summary parts (apart from the default executor that renders reports)."""
_slots: TenantSlots | None = None


def _summary_slots() -> TenantSlots:
    global _slots
    if _slots is None:
        _slots = TenantSlots(SUMMARY_SLOTS, 1)
    return _slots


async def local_part(tables: list[Any], compute: Compute, organization_id: str) -> dict[str, Any]:
    """This worker's part: ``{"partitions": {changelog: [partition, ...]}, "part": ...}``.

    ``compute`` receives the held partitions per changelog and reads their rows at once
    (nothing awaits in between, so the partitions listed are the ones read); what it
    returns runs in a thread of :data:`_EXECUTOR`. At most :data:`SUMMARY_SLOTS` parts are
    computed at once on a worker, one per organisation; a part waits
    :data:`SUMMARY_WAIT_S` for its turn.

    Raises:
        QueryUnavailableError: ``recovering`` while this worker restores its tables;
            ``busy`` when no summary slot came free in time (the organisation's own, or the
            worker's).
    """
    try:
        async with _summary_slots().slot(organization_id, SUMMARY_WAIT_S):
            check_not_recovering()
            held = {_changelog(t): held_partitions(t) for t in tables}
            finish = compute(held)
            part = await asyncio.get_running_loop().run_in_executor(_EXECUTOR, finish)
    except SlotsBusyError as exc:
        whose = "this organisation's summary" if exc.organization else "summaries"
        raise QueryUnavailableError(
            "busy", f"{whose} already computing on this worker; retry in a few seconds"
        ) from None
    return {"partitions": held, "part": part}


async def gather_parts(
    tables: list[Any],
    organization_id: str,
    path: str,
    params: Mapping[str, str],
    compute: Compute,
) -> list[Any]:
    """Every worker's part of a summary (this worker's first), checked to be complete.

    Args:
        tables: the faust tables the summary reads.
        organization_id: the tenant (the internal token names it).
        path: the URL-encoded route of the summary (asked again of each other worker, with
            :data:`PART_HEADER`).
        params: its query parameters (including any the part needs, e.g. the zone).
        compute: this worker's part from its held partitions (see :func:`local_part`).

    Returns:
        The parts (the ``part`` objects), one per worker that holds partitions.

    Raises:
        QueryUnavailableError: ``recovering`` (this worker restoring), ``owner_unavailable`` /
            ``owner_error`` (a worker did not answer after retries), ``incomplete`` (the
            parts miss a partition or read one twice).
    """
    mine = await local_part(tables, compute, organization_id)
    me = str(app.conf.canonical_url).rstrip("/")
    peers: set[str] = set()
    for t in tables:
        for url, topics in app.assignor.table_metadata(_changelog(t)).items():
            base = str(url).rstrip("/")
            if base != me and topics.get(_changelog(t)):
                peers.add(base)
    answers = await asyncio.gather(
        *(
            remote_json(base, path, dict(params), organization_id, {PART_HEADER: "1"})
            for base in sorted(peers)
        )
    )
    envelopes = [mine, *answers]
    for t in tables:
        changelog = _changelog(t)
        problem = coverage_problem(
            (e["partitions"].get(changelog, []) for e in envelopes), settings.topic_partitions
        )
        if problem is not None:
            raise QueryUnavailableError(
                "incomplete",
                f"{changelog}: {problem} (partitions are moving between workers); retry",
            )
    return [e["part"] for e in envelopes]
