"""Restoring a fold table from its changelog (:func:`stream_app.runtime.restore.
apply_changelog_batch`) and writing a batch behind (:meth:`stream_app.runtime.state.
WriteBehindTable.write_local`) store the same rows: a packed record of dedupe records becomes
a row per record and a marker, in log order. Against a real RocksDB database (rocksdict);
faust's store around it is reduced to the three attributes the two functions use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import rocksdict

from stream_app.runtime import restore
from stream_app.runtime.state import Sent, WriteBehindTable, encode_key
from stream_app.tables.dedupe import dedupe_key, expand, pack

T0 = 1_780_000_000_000
HORIZON = 30 * 86_400_000


class _Store:
    """The parts of faust's RocksDB store the two functions use, over one real database."""

    def __init__(self, path: Path, table: Any) -> None:
        self.db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
        self._key_index: dict[bytes, int] = {}
        self.offset_key = b"__faust\x00offset__"
        self.table = table
        self.persisted: dict[Any, int] = {}

    def _db_for_partition(self, _partition: int) -> Any:
        return self.db

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp] = offset


class _Table:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.data = _Store(path, self)


def _json(db: Any, key: bytes) -> Any:
    """The JSON value stored under ``key`` (raw mode: bytes)."""
    raw = db[key]
    assert isinstance(raw, bytes), key
    return orjson.loads(raw)


class _Record:
    """A changelog record as faust hands it to ``apply_changelog_batch`` (``event.message``)."""

    def __init__(self, offset: int, key: str, value: Any) -> None:
        self.message = self
        self.tp, self.offset, self.partition = "changelog-0", offset, 0
        self.key = encode_key(key)
        self.value = None if value is None else orjson.dumps(value)


def test_a_restore_expands_packed_records_in_log_order(tmp_path: Path) -> None:
    """A packed record becomes its rows and marker; a later one renewing a record wins; a
    packed record's tombstone removes its marker only; the persisted offset covers them."""
    table = _Table("restore-test", tmp_path / "db")
    restore.register(table.name, expand)
    try:
        k = dedupe_key("org/x")
        first = pack([(k, [100, T0])])[0]
        renewed = pack([(k, [900, T0 + 2 * HORIZON])])[0]
        restore.apply_changelog_batch(
            table.data,
            [_Record(10, *first), _Record(11, *renewed), _Record(12, first[0], None)],
            lambda x: x,
            lambda x: x,
        )
        db = table.data.db
        assert _json(db, encode_key(k)) == [900, T0 + 2 * HORIZON]
        assert encode_key(first[0]) not in db
        assert _json(db, encode_key(renewed[0])) == {"a": T0 + 2 * HORIZON, "n": 1}
        assert table.data.persisted == {"changelog-0": 12}
        db.close()
    finally:
        restore._ordered.pop("restore-test", None)


def test_a_batch_written_behind_stores_what_a_restore_would(tmp_path: Path) -> None:
    """``write_local`` of a batch's packed records stores exactly the rows a restore of the
    same changelog records stores; a record the sweep deletes locally and the batch renews
    stays renewed (local deletes first); a write of local rows only leaves the persisted
    offset where it was."""
    written = _Table("behind-test", tmp_path / "written")
    state = WriteBehindTable(written, expand=expand)
    try:
        k = dedupe_key("org/x")
        records = [(k, [500, T0 + 3 * HORIZON])] + [
            (dedupe_key(f"org/e{i}"), [501 + i, T0 + i]) for i in range(5_000)
        ]
        packed = pack(records)
        assert len(packed) == 2
        kb = encode_key(k)
        written.data.db[kb] = orjson.dumps([1, T0])  # an expired record the sweep deletes
        sent = Sent(
            {0: [(encode_key(key), orjson.dumps(v)) for key, v in packed]},
            [],
            local={0: [(kb, None)]},
        )
        sent.first[0], sent.last[0] = 0, 1
        assert state.write_local(sent) == 2
        assert _json(written.data.db, kb) == [500, T0 + 3 * HORIZON]
        assert written.data.db[written.data.offset_key] == b"1"
        rows_written = {
            key: value for key, value in written.data.db.items() if key != written.data.offset_key
        }
        restored = _Table("behind-test-restored", tmp_path / "restored")
        restore.register(restored.name, expand)
        restore.apply_changelog_batch(
            restored.data,
            [_Record(i, key, value) for i, (key, value) in enumerate(packed)],
            lambda x: x,
            lambda x: x,
        )
        rows_restored = {
            key: value for key, value in restored.data.db.items() if key != restored.data.offset_key
        }
        assert rows_written == rows_restored
        assert len(rows_written) == len(records) + 2  # a row per record, a marker each
        # local rows only: the persisted offset stays
        assert state.write_local(Sent({}, [], local={0: [(kb, None)]})) == 0
        assert kb not in written.data.db
        assert written.data.db[written.data.offset_key] == b"1"
        written.data.db.close()
        restored.data.db.close()
    finally:
        restore._ordered.pop("behind-test", None)
        restore._ordered.pop("behind-test-restored", None)
