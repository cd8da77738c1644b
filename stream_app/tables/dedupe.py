"""Re-sent events: a compact dedupe record per event, kept for a stated horizon.

The rows of the tables keep the input offset they have applied up to, which recognises a
message delivered again at its *own* offset (after a crash or a rebalance). A producer that
sends an event again (a retry, a replayed export) puts it at a *new* offset; that is caught
here. Each event leaves one record in its partition of the table:

- key ``~e/<32 hex digits>``: the BLAKE2b-128 digest of ``organization_id/event_id`` (16
  bytes; event ids are unique within a tenant only, so two tenants' events with the same id
  never meet here; ``~`` never starts an organisation id, so the key never collides with a
  row);
- value ``[first offset, arrival ms]``: the input offset the event was first folded at and
  its Kafka timestamp (milliseconds since the epoch, UTC).

An event whose record names *another* offset is a re-send: skipped when it arrives within the
horizon of the first (``WEDDING_DEDUPE_HORIZON_S``, 30 days by default, measured between the
two Kafka timestamps), counted as a new event after it (its record then starts again at the
new offset). Records are deleted once the partition's newest arrival is two horizons past
them (:func:`expired`), so a re-send between one and two horizons late is still recognised
as such and counted in ``wedding_dedupe_expired_resends_total``; after two horizons it cannot
be told from a new event. Kafka timestamps, not the wall clock, decide, so a replay folds the
same way every time (past two horizons, whether a re-send is recognised also depends on when
the partition was last restored: :meth:`stream_app.agents.batch.BatchStream._sweep`).

In the changelog the records of a batch travel packed (:func:`pack`): one changelog record,
key ``~d/<lowest input offset in it, 20 digits>-<8 hex digits of BLAKE2b of its content>``,
value ``{"v": 1, "e": [[32 hex digits, first offset, arrival ms], ...]}`` per
:data:`CHUNK_EVENTS` records, instead of one changelog record per event. The content digest
in the key keeps two packed records apart whenever they differ: two writers of a partition
(one that lost it while paused, and its new owner) fold the same offsets in batches of other
bounds, and a compacted changelog keeps only the last record of a key. Locally each record
stays a row of its own (point reads), and the packed record leaves a marker, ``{"a": newest
arrival ms, "n": records}``, by which the sweep finds it to delete once every record in it
has expired: :func:`expand` gives the local rows of a changelog record, the same when a
batch is written and when a table is restored from its changelog. Records written one
changelog record each (before packing, or with ``WEDDING_DEDUPE_PACKED=0``: below the
partition's :data:`PACKED_SINCE` offset) get a changelog tombstone too when they expire
(:func:`sweep`); packed ones are deleted locally. Standby replicas (none are configured)
would apply a packed record's tombstone to its marker only and keep its records: not
supported. ``bench_million`` (1,000,000 events, one worker): a dedupe record per event was
two thirds of the changelog records (a batch changes about one row per two events); packed,
the worker's peak memory went down 27 % and its CPU per event 0-13 % (README, Benchmarks).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

log = logging.getLogger(__name__)

PREFIX = "~e/"
CHUNK_PREFIX = "~d/"
CHUNK_EVENTS = 4_096
"""Dedupe records per packed changelog record (about 55 bytes each in JSON: ~225 KB a
record, under the brokers' default ``message.max.bytes`` of 1 MB)."""

_CHUNK_KEY_START = b'"' + CHUNK_PREFIX.encode()  # a packed record's key as the table stores it

Verdict = Literal["new", "again", "duplicate", "expired"]
"""``new``: first sight; ``again``: the same message (same offset) delivered again;
``duplicate``: a re-send within the horizon (skip it); ``expired``: a re-send after the
horizon (counted as new)."""


def dedupe_key(event_id: str) -> str:
    """The table key of an event's dedupe record: ``~e/`` + hex BLAKE2b-128 of ``event_id``
    (the caller passes ``organization_id/event_id``)."""
    return PREFIX + hashlib.blake2b(event_id.encode(), digest_size=16).hexdigest()


PACKED_SINCE = "~c/packed-since"
"""The table key of a partition's ``{"since": input offset}``: the lowest input offset whose
dedupe record was written packed since packing last began on the partition (the records
below it have a changelog record each). A worker writing records one each deletes it, so the
next packed batch sets it again above them."""


def chunk_key(first_offset: int, entries: list[list[Any]]) -> str:
    """The table key of a packed changelog record: its lowest input offset and a digest of
    its content (``entries``, as in its value)."""
    digest = hashlib.blake2b(orjson.dumps(entries), digest_size=4).hexdigest()
    return f"{CHUNK_PREFIX}{first_offset:020d}-{digest}"


def pack(records: list[tuple[str, list[int]]]) -> list[tuple[str, dict[str, Any]]]:
    """The changelog rows carrying ``records`` (:meth:`Dedupe.writes`): ``(chunk key, {"v": 1,
    "e": [[hex digest, first offset, arrival ms], ...]})`` per :data:`CHUNK_EVENTS` records,
    in offset order (module docstring)."""
    out: list[tuple[str, dict[str, Any]]] = []
    start = len(PREFIX)
    ordered = sorted(records, key=lambda r: r[1][0])  # a renewal keeps its first position
    for i in range(0, len(ordered), CHUNK_EVENTS):
        part = ordered[i : i + CHUNK_EVENTS]
        entries = [[key[start:], o, a] for key, (o, a) in part]
        out.append((chunk_key(part[0][1][0], entries), {"v": 1, "e": entries}))
    return out


def changelog_rows(
    records: list[tuple[str, list[int]]],
    replaced: dict[str, int],
    mark: Any,
    packed: bool,
) -> tuple[int | None, list[tuple[str, Any]]]:
    """``(the partition's packed-since offset for the sweep (None: not packing), the changelog
    rows of a batch's dedupe records, in order)``.

    Args:
        records: :meth:`Dedupe.writes` of the batch.
        replaced: :meth:`Dedupe.replaced` of the batch.
        mark: the partition's :data:`PACKED_SINCE` row (None: absent).
        packed: whether records travel packed (``WEDDING_DEDUPE_PACKED``).

    Packed: tombstones of the renewed records that had a changelog record of their own
    (below packed-since: else it would stay in the changelog for ever), the packed-since row
    when packing begins on the partition, then the packed records. One each: the records,
    behind a tombstone of the packed-since row if there is one (so the next packed batch
    marks where packing began again, above these).
    """
    if not packed:
        clear = [(PACKED_SINCE, None)] if mark is not None and records else []
        return None, [*clear, *records]
    since = None if mark is None else int(mark["since"])
    start: list[tuple[str, Any]] = []
    if since is None and records:
        since = min(o for _, (o, _) in records)
        start = [(PACKED_SINCE, {"since": since})]
    gone = [(k, None) for k, o in replaced.items() if since is not None and o < since]
    return since, [*gone, *start, *pack(records)]


def expand(key: bytes, value: bytes | None) -> list[tuple[bytes, bytes | None]] | None:
    """The local rows (encoded key, JSON value; None deletes) a changelog record of a fold
    table stands for: for a packed record (key ``"~d/..."``) its dedupe records and its
    marker ``{"a": newest arrival ms, "n": records}`` (a tombstone deletes the marker only:
    the records go with the sweep); None for any other record (stored as it is).

    A packed record this version cannot read (another ``"v"``, e.g. written by a later
    release before a rollback, or damaged) is logged and nothing of it is stored (no rows,
    no marker: scans and sweeps never meet it): its events' re-sends are then not
    recognised, which a rollback past packing accepts (README); a worker that stopped
    restoring on it would never start again.
    """
    if not key.startswith(_CHUNK_KEY_START):
        return None
    if value is None:
        return [(key, None)]
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc.get("e"), list):
        log.error(
            "packed dedupe record %r is not {'v': 1, 'e': [...]}: nothing of it stored"
            " (re-sends of its events are not recognised)",
            key,
        )
        return []
    rows: list[tuple[bytes, bytes | None]] = []
    newest = 0
    dumps = orjson.dumps
    for digest, offset, arrival in doc["e"]:
        rows.append((b'"~e/%s"' % digest.encode(), dumps([offset, arrival])))
        if arrival > newest:
            newest = arrival
    rows.append((key, dumps({"a": newest, "n": len(doc["e"])})))
    return rows


def chunk_expired(marker: Any, newest_arrival_ms: int, horizon_ms: int) -> bool:
    """Whether a packed record (its local marker ``{"a": newest arrival ms, ...}``) may be
    deleted: every record in it is :func:`expired` (a marker of another shape: False)."""
    arrival = marker.get("a") if isinstance(marker, dict) else None
    return isinstance(arrival, int) and arrival < newest_arrival_ms - 2 * horizon_ms


def sweep(
    records: Iterable[tuple[str, Any]],
    chunks: Iterable[tuple[str, Any]],
    pending: Container[str],
    newest_arrival_ms: int,
    horizon_ms: int,
    limit: int,
    packed_since: int | None,
) -> tuple[list[tuple[str, None]], list[tuple[str, None]], str | None]:
    """What one sweep of a partition deletes: ``(deletes for RocksDB only, tombstones for the
    changelog and RocksDB, the key the next sweep goes on from (None: from the first
    record))``.

    Args:
        records: the partition's rows in key order from where the last sweep stopped (its
            records are the ``~e/`` keys at the start).
        chunks: the partition's rows in key order from ``~d/`` (its packed records' markers,
            oldest first).
        pending: keys written by batches not yet durable (left alone: a batch in flight may
            have renewed them).
        newest_arrival_ms / horizon_ms: the partition's newest arrival and the horizon, ms.
        limit: the most records, and the most packed records, looked at.
        packed_since: the partition's :data:`PACKED_SINCE` offset while records are written
            packed, else None.

    An expired record at or above ``packed_since`` is in a packed record: deleted locally
    (the packed record's tombstone deletes it from the changelog once every record in it has
    expired); any other has a changelog record of its own, which gets a tombstone. Records
    are looked at up to ``limit``; packed records from the oldest up to the first that has
    not expired whole (:func:`chunk_expired`).
    """
    local: list[tuple[str, None]] = []
    tombstones: list[tuple[str, None]] = []
    next_cursor: str | None = None
    for seen, (key, value) in enumerate(records, start=1):
        if not key.startswith(PREFIX):
            break
        if key not in pending and expired(value, newest_arrival_ms, horizon_ms):
            if packed_since is not None and int(value[0]) >= packed_since:
                local.append((key, None))
            else:
                tombstones.append((key, None))
        if seen >= limit:
            next_cursor = key
            break
    for seen, (key, marker) in enumerate(chunks, start=1):
        if (
            not key.startswith(CHUNK_PREFIX)
            or seen > limit
            or not chunk_expired(marker, newest_arrival_ms, horizon_ms)
        ):
            break
        tombstones.append((key, None))
    return local, tombstones, next_cursor


def expired(value: Any, newest_arrival_ms: int, horizon_ms: int) -> bool:
    """Whether a record (``[offset, arrival ms]``) may be deleted: its arrival is more than
    two horizons before the partition's newest arrival."""
    return int(value[1]) < newest_arrival_ms - 2 * horizon_ms


@dataclass(slots=True)
class Dedupe:
    """The dedupe records of one partition as a batch sees and changes them.

    Args:
        get: reads a row of the partition (``None`` when absent).
        horizon_ms: the dedupe horizon in milliseconds.
    """

    get: Callable[[str], Any]
    horizon_ms: int
    _records: dict[str, list[int] | None] = field(default_factory=dict)
    _changed: dict[str, list[int]] = field(default_factory=dict)
    _replaced: dict[str, int] = field(default_factory=dict)

    def check(self, event_id: str, offset: int, arrival_ms: int) -> Verdict:
        """Classify one event of the batch (ascending offsets) and record it."""
        key = dedupe_key(event_id)
        if key in self._records:
            record = self._records[key]
        else:
            raw = self.get(key)
            record = self._records[key] = None if raw is None else [int(raw[0]), int(raw[1])]
        if record is None:
            self._records[key] = self._changed[key] = [offset, arrival_ms]
            return "new"
        if record[0] == offset:
            return "again"
        if arrival_ms - record[1] <= self.horizon_ms:
            return "duplicate"
        if key not in self._changed:  # a stored record, not one of this batch
            self._replaced[key] = record[0]
        self._records[key] = self._changed[key] = [offset, arrival_ms]
        return "expired"

    def forget(self, event_id: str) -> None:
        """Undo what :meth:`check` recorded for ``event_id`` in this batch (an event set aside
        after its check: it was not folded, so a re-send of it must not be a duplicate)."""
        key = dedupe_key(event_id)
        self._records.pop(key, None)
        self._changed.pop(key, None)
        self._replaced.pop(key, None)

    def writes(self) -> list[tuple[str, list[int]]]:
        """The records the batch created or renewed, ``(key, [offset, arrival ms])``."""
        return list(self._changed.items())

    def replaced(self) -> dict[str, int]:
        """The stored records the batch renewed (re-sends after the horizon): key → the
        input offset of the record replaced."""
        return dict(self._replaced)
