"""The report cache: an earlier report's files answer an equal request while its data holds.

Part of the report pipeline (used by :mod:`stream_app.reports.produce`); it reads and writes the
``reports`` and ``report_data_versions`` tables, the ``report-cache`` topic and table, and the
artifact store. Three levels, looked up in order:

1. **l1**: this worker's in-process LRU (:class:`cachetools.LRUCache`, ``L1_MAX_ENTRIES``);
2. **l2**: the ``report-cache`` Faust table (RocksDB, recoverable and movable through its
   changelog topic). An entry is written by :func:`stream_app.agents.report_cache.cache_writer`
   from the ``report-cache`` topic keyed ``organization_id/<cache key>``; the report lanes are
   keyed the same way, so a request lands on the worker that holds its key's table partition;
3. **l3**: the stored artifacts of an earlier ``completed`` generation of the same cache key,
   found in PostgreSQL (any worker, after any restart).

An entry (:class:`CacheEntry`) is the earlier report's artifact links and metadata. A hit
copies the earlier files into the new report's own folder ``<org>/<report id>/``, decrypted
and sealed again for the new report (an encrypted artifact is bound to its report id, see
:mod:`stream_app.reports.artifacts`): same plaintext SHA-256, and each report keeps working
links of its own whatever happens to the other.

**Key**: hex SHA-256 of the canonical JSON (sorted keys) of organisation, report type, date
range, data filters (dimensions sorted, values sorted and de-duplicated), configuration and
output formats (sorted). Report id, user, priority, time of request, cache strategy and
delivery are not part of it: equal requests, whatever their key order, give one key.

**Freshness**: an entry is served while it is younger than its type's time to live
(:data:`stream_app.reports.types.base.CACHE_TTL_S` of its cache class) *and* the data versions
it read still hold. The fold agents add the number of changed rows of each batch to a
per-(organisation, stream) counter in PostgreSQL (``report_data_versions``) before they
publish the batch's updates (:mod:`stream_app.agents.data_versions`), and PostgreSQL's own
triggers move the organisation's ``history`` version on any change to its history, however
made (migration 016: a payment inserted by hand, an organisation's new time zone, a venue's
new name). An entry remembers the versions of the streams its type reads
(:attr:`ReportType.reads`) and of ``history`` at the start of its generation and is stale once
one has moved. The versions are read from PostgreSQL for every request (no worker-side copy).

**Single flight**: identical requests (one cache key, same data versions) that run at the
same time on a worker share one generation (:class:`SingleFlight`); the others answer
``in_flight`` with its files. The lanes are keyed by cache key, so identical requests of one
priority meet on one worker.

**Strategies**: ``use_cache`` looks up and stores; ``refresh`` generates and stores; ``skip``
(scheduled runs) generates and neither reads nor stores.

Counts per level and outcome are the Prometheus counter ``wedding_report_cache_total``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import orjson
from cachetools import LRUCache

from stream_app.app import settings
from stream_app.crypto.keyring import KeyRing
from stream_app.db import reports as report_db
from stream_app.db.reports import HISTORY_STREAM
from stream_app.observability import REPORT_CACHE
from stream_app.reports.artifacts import (
    ArtifactIntegrityError,
    ArtifactPathError,
    ArtifactStore,
    artifact_path,
    artifact_relpath,
    download_url,
    open_artifact,
    reseal,
)
from stream_app.runtime.context import outside_any_event
from stream_app.schemas.reports import ReportRequest
from stream_app.schemas.updates import ArtifactLink, CacheLevel
from stream_app.topology import report_cache_table as cache_table
from stream_app.topology import report_cache_topic as cache_topic

L1_MAX_ENTRIES = 1024
"""Entries kept by a worker's in-process LRU (an entry is a few hundred bytes of links)."""


def canonical_request(req: ReportRequest) -> dict[str, Any]:
    """The parts of ``req`` that decide its content, in a canonical form (see module doc)."""
    return {
        "organization_id": req.organization_id,
        "report_type": req.report_type,
        "date_from": req.date_from.isoformat(),
        "date_to": req.date_to.isoformat(),
        "data_filters": {k: sorted(set(v)) for k, v in sorted(req.data_filters.items())},
        "configuration": req.configuration,
        "output_formats": sorted(req.output_formats),
    }


def cache_key(req: ReportRequest) -> str:
    """Hex SHA-256 of the canonical JSON of ``req`` (object keys sorted at every depth)."""
    raw = orjson.dumps(canonical_request(req), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()


def message_key(organization_id: str, key: str) -> bytes:
    """Kafka key of the report lanes and of ``report-cache``: ``organization_id/<key>``."""
    return f"{organization_id}/{key}".encode()


class CacheEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A cached report: where its files are and what it read.

    Attributes:
        key: the cache key.
        organization_id: the tenant.
        report_id: the report that generated the files.
        report_type: its type.
        artifacts: the files (paths relative to the artifact store).
        generated_at: when the files were generated (UTC).
        expires_at: ``generated_at`` + the type's time to live (UTC).
        data_versions: ``{stream: version}`` read at the start of the generation.
        metadata: the generated report's metadata.
    """

    key: str
    organization_id: str
    report_id: str
    report_type: str
    artifacts: list[ArtifactLink]
    generated_at: datetime
    expires_at: datetime
    data_versions: dict[str, int]
    metadata: dict[str, Any] = {}

    def is_fresh(self, versions: dict[str, int], now: datetime) -> bool:
        """True while unexpired and none of the versions it read has moved."""
        return now < self.expires_at and all(
            self.data_versions.get(s) == v for s, v in versions.items()
        )

    def source_path(self, root: Path, fmt: str) -> Path:
        """The entry's ``fmt`` file, derived from its (organisation, report id, type), never
        from the entry's stored ``path`` (entries travel through Kafka).

        Raises:
            ArtifactPathError: the entry's ids or format do not name a file of the store.
        """
        return artifact_path(root, self.organization_id, self.report_id, self.report_type, fmt)

    def files_exist(self, root: Path) -> bool:
        """True when every file of the entry is still in the store at ``root``."""
        try:
            return all(self.source_path(root, a.format).is_file() for a in self.artifacts)
        except ArtifactPathError:
            return False


_l1: LRUCache[str, CacheEntry] = LRUCache(maxsize=L1_MAX_ENTRIES)


async def current_versions(
    conn: asyncpg.Connection, organization_id: str, reads: frozenset[str]
) -> dict[str, int]:
    """The data versions a report of ``organization_id`` depends on: those of the streams its
    type reads, and always :data:`~stream_app.db.reports.HISTORY_STREAM` (any change to the
    organisation's PostgreSQL history, its own row and its venues' rows included).

    Read from PostgreSQL on every call (no worker keeps a copy), so a change committed
    before a request's lookup is seen by it.

    Returns:
        ``{stream: version}`` (0 for a stream never bumped).
    """
    return await report_db.data_versions(conn, organization_id, reads | {HISTORY_STREAM})


def _count(level: str, outcome: str) -> None:
    REPORT_CACHE.labels(level, outcome).inc()


async def lookup(
    conn: asyncpg.Connection,
    req: ReportRequest,
    key: str,
    versions: dict[str, int],
    ttl_s: float,
) -> tuple[CacheEntry, CacheLevel] | None:
    """Find a fresh entry of ``key``: l1, then l2, then l3; None on a miss at every level.

    Each level counts one hit or miss. A hit is copied into the faster levels.
    """
    now = datetime.now(UTC)
    root = settings.artifact_dir
    entry = fresh_in_l1(key, versions)
    if entry is not None:
        _count("l1", "hit")
        return entry, "l1"
    _l1.pop(key, None)
    _count("l1", "miss")
    with outside_any_event():
        raw = cache_table.get(message_key(req.organization_id, key).decode())
    if raw is not None:
        entry = msgspec.convert(raw, CacheEntry, strict=False)
        if (
            entry.organization_id == req.organization_id
            and entry.is_fresh(versions, now)
            and entry.files_exist(root)
        ):
            _count("l2", "hit")
            _l1[key] = entry
            return entry, "l2"
    _count("l2", "miss")
    rec = await report_db.latest_completed_for_key(conn, req.organization_id, key, ttl_s)
    if rec is not None and rec.generated_at is not None:
        entry = CacheEntry(
            key=key,
            organization_id=rec.organization_id,
            report_id=rec.id,
            report_type=rec.report_type,
            artifacts=[msgspec.convert(a, ArtifactLink) for a in rec.artifacts],
            generated_at=rec.generated_at,
            expires_at=rec.generated_at + timedelta(seconds=ttl_s),
            data_versions=rec.data_versions or {},
            metadata=rec.metadata or {},
        )
        if entry.is_fresh(versions, now) and entry.files_exist(root):
            _count("l3", "hit")
            await store(entry)
            return entry, "l3"
    _count("l3", "miss")
    return None


def remember(entry: CacheEntry) -> None:
    """Keep ``entry`` in l1 at once.

    The leader of a single flight calls this before it releases the flight, so an identical
    request arriving between the release and :func:`store` finds the entry instead of
    generating again.
    """
    _l1[entry.key] = entry


def fresh_in_l1(key: str, versions: dict[str, int]) -> CacheEntry | None:
    """The l1 entry of ``key`` if it is fresh for ``versions`` and its files exist; no counting.

    The leader of a single flight looks here first: an identical request may have finished
    between this request's :func:`lookup` and its joining the flight.
    """
    entry = _l1.get(key)
    now = datetime.now(UTC)
    if entry is None or not entry.is_fresh(versions, now):
        return None
    return entry if entry.files_exist(settings.artifact_dir) else None


def forget(entry: CacheEntry) -> None:
    """Drop ``entry`` from l1 if it is still the one held for its key (its report was cancelled)."""
    if _l1.get(entry.key) is entry:
        del _l1[entry.key]


async def store(entry: CacheEntry) -> None:
    """Keep ``entry`` in l1 and publish it to the ``report-cache`` table (l2)."""
    remember(entry)
    fut = await cache_topic.send(
        key=message_key(entry.organization_id, entry.key),
        value=orjson.dumps(msgspec.to_builtins(entry)),
    )
    await fut


async def purge_organization(organization_id: str, keys: list[str]) -> int:
    """Drop the cache entries ``keys`` of ``organization_id`` from every level: l1 on this
    worker, l2 by a null message on ``report-cache`` per key (the owning worker deletes the
    row and its changelog gets a tombstone). Level 3 is PostgreSQL (the caller clears the
    rows' ``cache_key``); an l1 entry on another worker is never served once its files are
    gone (:meth:`CacheEntry.files_exist`). Returns the number of keys purged.
    """
    for key in keys:
        _l1.pop(key, None)
    futures = [
        await cache_topic.send(key=message_key(organization_id, key), value=None) for key in keys
    ]
    for fut in futures:
        await fut
    return len(keys)


async def materialize(
    entry: CacheEntry, organization_id: str, report_id: str, keys: KeyRing
) -> list[ArtifactLink]:
    """Copy ``entry``'s files into the folder of ``report_id``; the new links.

    Each file is decrypted and sealed again for its new identity (an encrypted artifact is
    bound to its report id, so a plain hard link would not open), under the organisation's
    current data key; the plaintext checksums stay those of the entry.

    Both paths are derived (:mod:`stream_app.reports.artifacts`), never read from the entry,
    and only an entry of the same organisation is used.

    Raises:
        OSError: a file vanished or the store cannot be written.
        ArtifactIntegrityError: a cached file fails authentication.
        ArtifactPathError: the entry is another organisation's, or an id or format is bad.
    """
    if entry.organization_id != organization_id:
        raise ArtifactPathError(
            f"cache entry of {entry.organization_id!r} cannot answer {organization_id!r}"
        )
    root = settings.artifact_dir
    store = ArtifactStore(root, settings.artifact_store_max_bytes, settings.artifact_org_max_bytes)
    key = await keys.current(organization_id)
    out: list[ArtifactLink] = []
    for a in entry.artifacts:
        src = artifact_relpath(organization_id, entry.report_id, entry.report_type, a.format)
        reader = await open_artifact(root, organization_id, src, keys)
        link = await asyncio.to_thread(reseal, reader, store, report_id, a.format, key)
        if (link.sha256, link.size_bytes) != (a.sha256, a.size_bytes):
            raise ArtifactIntegrityError(f"{src!r} does not match its cached checksum")
        out.append(
            msgspec.structs.replace(
                link,
                rows=a.rows,
                uri=download_url(organization_id, report_id, a.format),
                path=artifact_relpath(organization_id, report_id, entry.report_type, a.format),
            )
        )
    return out


@dataclass
class SingleFlight:
    """At most one generation per cache key at a time on this worker.

    :meth:`run` of a key already running waits for the running call's result instead.
    """

    _running: dict[str, asyncio.Future[CacheEntry]] = field(default_factory=dict)

    async def run(
        self, key: str, generate: Callable[[], Awaitable[CacheEntry]]
    ) -> tuple[CacheEntry, bool]:
        """``(entry, leader)``: the result of the one running ``generate`` for ``key``.

        ``leader`` is True for the caller that generated. A follower whose leader failed or
        was cancelled generates itself (its own request may succeed).
        """
        running = self._running.get(key)
        if running is not None:
            try:
                return await asyncio.shield(running), False
            except (Exception, asyncio.CancelledError):
                if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise
        fut: asyncio.Future[CacheEntry] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._running[key] = fut
        try:
            entry = await generate()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
            raise
        finally:
            if self._running.get(key) is fut:
                del self._running[key]
        fut.set_result(entry)
        return entry, True


single_flight = SingleFlight()
