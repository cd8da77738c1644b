"""Scatter-gather reads over every worker's table partitions, for organisation summaries.

Part of the read path (the organisation summaries over HTTP); reads tables, never writes. An
organisation's rows are spread over all partitions of a table (the message key is
``organization_id/<entity>``), so over all workers. The worker that receives a summary request:

1. computes its own *part* from the rows of the organisation in the changelog partitions it
   holds as active (:func:`local_part`: one synchronous scan, so no fold batch interleaves);
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
from typing import Any

from stream_app.app import app, settings
from stream_app.queries.errors import QueryUnavailableError
from stream_app.queries.routing import remote_json
from stream_app.runtime.table_scan import scan_prefix
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


def org_rows(table: Any, organization_id: str, partitions: list[int], *, raw: bool = False) -> Rows:
    """``(key, value)`` of the rows of ``organization_id`` in ``partitions`` of ``table``.

    Guard rows (a ``~`` segment: dedupe records) are skipped. ``value`` is the row's
    ``values`` object (guarded tables: payments, interactions, suppliers) or, with
    ``raw=True``, the whole stored row (the venue-bookings table).

    Reads the partitions' RocksDB databases directly, seeking to the organisation's key
    prefix (:func:`stream_app.runtime.table_scan.scan_prefix`), so the cost is the
    organisation's rows, not the table's.
    """
    prefix = f"{organization_id}/"

    def keep(key: Any) -> bool:
        return isinstance(key, str) and key.startswith(prefix) and "/~" not in key

    for key, row in scan_prefix(table, prefix, partitions, keep):
        if isinstance(row, dict):
            yield key, (row if raw else row.get("values", {}))


def local_part(tables: list[Any], compute: Callable[[dict[str, list[int]]], Any]) -> dict[str, Any]:
    """This worker's part: ``{"partitions": {changelog: [partition, ...]}, "part": ...}``.

    ``compute`` receives the held partitions per changelog and returns the part (it scans
    with :func:`org_rows`; nothing awaits in between, so the partitions listed are the ones
    read).

    Raises:
        QueryUnavailableError: ``recovering`` while this worker restores its tables.
    """
    check_not_recovering()
    held = {_changelog(t): held_partitions(t) for t in tables}
    return {"partitions": held, "part": compute(held)}


async def gather_parts(
    tables: list[Any],
    organization_id: str,
    path: str,
    params: Mapping[str, str],
    compute: Callable[[dict[str, list[int]]], Any],
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
    mine = local_part(tables, compute)
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
