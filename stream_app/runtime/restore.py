"""Table restores that keep, per row, the value with the highest input offset.

faust restores a table by writing its changelog records to RocksDB in log order: the last
record of a key wins. That is right while one worker at a time writes a partition's rows, and
wrong when a worker that has lost the partition still writes (a *zombie*): a worker paused past
its session timeout (SIGSTOP, a long GC, a frozen VM), or one whose partitions were taken while
batches were in flight, sends the changelog records of the batches it had folded when it
resumes, after the new owner has written newer values of the same rows. Replayed in log order
on the next restore, the zombie's older value replaces the newer one and the events the new
owner had added are lost. The soak (``loadtests/soak.py``: SIGKILL and restart, SIGSTOP past
the session timeout) lost 1-7 % of each table's events that way.

Every row of the fold tables records the input offset it has applied up to (``"o"``; see
:func:`stream_app.tables.bookings.fold_batch`), and a row's value is a function of the events
of its input partition up to that offset, in offset order. So of two values of a row the one
with the higher ``"o"`` holds every event the other holds: :func:`install` makes faust's
RocksDB store skip, for the tables :func:`register`\\ ed, a changelog record whose ``"o"`` is
below that of the value already restored (counted in
``wedding_changelog_stale_records_total{table}``). Records without ``"o"`` (the dedupe
records) and tombstones are applied in log order as before; a packed record of dedupe
records is stored as the rows it stands for (the ``expand`` of :func:`register`). Kafka's
own answer, a transactional producer fenced by the group generation (KIP-447), is not
available through faust-streaming 0.15's at-least-once tables.

Pinned to faust-streaming 0.15's RocksDB store (``Store.apply_changelog_batch``,
``_db_for_partition``, ``set_persisted_offset``, rocksdict in raw mode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
import rocksdict
from faust.stores.rocksdb import Store

from stream_app.observability import STALE_CHANGELOG_RECORDS

_faust_apply_changelog_batch = Store.apply_changelog_batch

Expand = Callable[[bytes, bytes | None], list[tuple[bytes, bytes | None]] | None]
"""``(key, value) of a changelog record → the local rows it stands for`` (encoded key, value;
None deletes), or None when it is stored as it is (e.g. :func:`stream_app.tables.dedupe.expand`
for the packed dedupe records)."""

_ordered: dict[str, Expand | None] = {}


def register(table_name: str, expand: Expand | None = None) -> None:
    """Restore the table ``table_name`` by highest input offset per row (module docstring),
    each changelog record stored as ``expand`` says (as :class:`stream_app.runtime.state.
    WriteBehindTable` writes it)."""
    _ordered[table_name] = expand


def applied_offset(raw: bytes | None) -> int | None:
    """The ``"o"`` of a stored row value (JSON bytes), None when it has none."""
    if not raw or raw[:1] != b"{":
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    o = value.get("o") if isinstance(value, dict) else None
    return o if isinstance(o, int) else None


def apply_changelog_batch(
    store: Any,
    batch: Iterable[Any],
    to_key: Callable[[Any], Any],
    to_value: Callable[[Any], Any],
) -> None:
    """faust's ``Store.apply_changelog_batch`` (one write batch per partition, then the
    persisted offsets), skipping a record whose row already holds a later input offset."""
    if store.table.name not in _ordered:
        _faust_apply_changelog_batch(store, batch, to_key, to_value)
        return
    expand = _ordered[store.table.name]
    batches: dict[int, Any] = {}
    latest: dict[tuple[int, bytes], bytes | None] = {}
    tp_offsets: dict[Any, int] = {}
    stale = 0
    for event in batch:
        msg = event.message
        tp, offset, partition, key = msg.tp, msg.offset, msg.partition, msg.key
        tp_offsets[tp] = max(offset, tp_offsets.get(tp, offset))
        wb = batches.get(partition)
        if wb is None:
            wb = batches[partition] = rocksdict.WriteBatch(raw_mode=True)
        rows = None if expand is None else expand(key, msg.value)
        if rows is not None:  # no input offset in these (dedupe records): in log order
            for row_key, row_value in rows:
                if row_value is None:
                    wb.delete(row_key)
                else:
                    wb.put(row_key, row_value)
                latest.pop((partition, row_key), None)
            continue
        if msg.value is None:
            wb.delete(key)
            latest[(partition, key)] = None
            continue
        incoming = applied_offset(msg.value)
        if incoming is not None:
            slot = (partition, key)
            current = (
                latest[slot] if slot in latest else store._db_for_partition(partition).get(key)
            )
            held = applied_offset(current)
            if held is not None and held > incoming:
                stale += 1
                continue
            latest[slot] = msg.value
        wb.put(key, msg.value)
    for partition, wb in batches.items():
        store._db_for_partition(partition).write(wb)
    for tp, offset in tp_offsets.items():
        store.set_persisted_offset(tp, offset)
    if stale:
        STALE_CHANGELOG_RECORDS.labels(store.table.name).inc(stale)


def install() -> None:
    """Replace faust's ``Store.apply_changelog_batch`` (idempotent; tables not registered
    are restored by faust's own code)."""
    Store.apply_changelog_batch = apply_changelog_batch  # type: ignore[method-assign,assignment]
