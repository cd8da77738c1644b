"""Re-sent events: the dedupe records combined with the folds as the batch loop combines them
(stream_app.agents.batch.BatchStream.process), with crashes, horizons and sweeping."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest

from stream_app.schemas.bookings import BookingEvent
from stream_app.tables import bookings
from stream_app.tables.dedupe import (
    CHUNK_EVENTS,
    PACKED_SINCE,
    Dedupe,
    Verdict,
    changelog_rows,
    chunk_expired,
    dedupe_key,
    expand,
    expired,
    pack,
    sweep,
)
from tests.tables.folds import CASES, FoldCase
from tests.tables.model import (
    apply_writes,
    crash_and_redeliver,
    data_rows,
    expected_rows,
    policy,
    random_bookings,
    screen_and_fold,
)

HORIZON_MS = 30 * 86_400_000  # the default horizon, 30 days
T0_MS = 1_780_000_000_000  # 2026-05-28, a Kafka timestamp


def with_resends(rng: random.Random, events: Sequence[Any]) -> tuple[list[Any], list[int]]:
    """The stream with about 10 % of its events sent again later (a copy inserted at a random
    later position), and the positions of the copies."""
    stream: list[tuple[Any, bool]] = [(e, False) for e in events]
    for _ in range(max(1, len(events) // 10)):
        i = rng.randrange(len(stream))
        original = stream[i][0]
        stream.insert(rng.randint(i + 1, len(stream)), (original, True))
    return [e for e, _ in stream], [p for p, (_, copy) in enumerate(stream) if copy]


def run_with_dedupe(
    rng: random.Random,
    stream: list[Any],
    fold: Callable[[Callable[[str], Any], list[tuple[int, Any]]], Any],
    crashes: bool,
) -> tuple[dict[str, Any], list[Verdict]]:
    """Fold ``stream`` (offsets 0.., arrivals a second apart) through dedupe + fold, in random
    batches, with crashes keeping a prefix of a batch's writes when ``crashes``. Returns the
    table and the verdicts of the last delivery of each offset."""
    store: dict[str, Any] = {}
    verdicts: dict[int, Verdict] = {}

    def writes_of(get: Callable[[str], Any], batch: list[tuple[int, Any]]) -> list[Any]:
        timed = [(o, T0_MS + 1000 * o, e) for o, e in batch]
        got, _, writes = screen_and_fold(store, timed, fold, HORIZON_MS, lambda r: r.writes)
        verdicts.update(zip([o for o, _ in batch], got, strict=True))
        return writes

    if crashes:
        crash_and_redeliver(rng, store, stream, writes_of)
    else:
        for first in range(0, len(stream), 7):
            batch = [(o, stream[o]) for o in range(first, min(len(stream), first + 7))]
            apply_writes(store, writes_of(store.get, batch))
    return store, [verdicts[o] for o in range(len(stream))]


def fold_bookings(get: Callable[[str], Any], batch: list[tuple[int, Any]]) -> Any:
    return bookings.fold_batch(get, batch, policy())


@pytest.mark.parametrize("crashes", [False, True])
@pytest.mark.parametrize("seed", range(30))
def test_resent_bookings_within_the_horizon_change_nothing(seed: int, crashes: bool) -> None:
    """10 % of the events sent again at later offsets: every row (all seven grains, windows
    with lateness) equals folding each original once at its own offset."""
    rng = random.Random(seed)
    stream, copies = with_resends(rng, random_bookings(rng, 80))
    store, verdicts = run_with_dedupe(rng, stream, fold_bookings, crashes)
    originals = [(o, e) for o, e in enumerate(stream) if o not in copies]
    want, _ = expected_rows(originals)
    assert {k: {"totals": v["totals"], "o": v["o"]} for k, v in data_rows(store).items()} == want
    assert [o for o, v in enumerate(verdicts) if v == "duplicate"] == copies
    assert set(verdicts) <= ({"new", "duplicate", "again"} if crashes else {"new", "duplicate"})
    records = {k for k in store if k.startswith("~e/")}
    assert records == {dedupe_key(f"{e.organization_id}/{e.event_id}") for _, e in originals}
    for o, e in originals:  # each record names the first offset of its event
        assert store[dedupe_key(f"{e.organization_id}/{e.event_id}")] == [o, T0_MS + 1000 * o]


@pytest.mark.parametrize(
    ("case", "seed"),
    [(case, seed) for case in CASES for seed in range(20)],
    ids=lambda v: v.name if isinstance(v, FoldCase) else str(v),
)
def test_resent_payments_supplier_activities_and_interactions_change_nothing(
    case: FoldCase, seed: int
) -> None:
    rng = random.Random(seed)
    stream, _ = with_resends(rng, list(case.events))
    store, _ = run_with_dedupe(rng, stream, case.fold_batch, crashes=True)
    assert case.actual(store) == case.expected()


def booking_stream() -> list[BookingEvent]:
    return random_bookings(random.Random(99), 3)


def one_batch(
    store: dict[str, Any], batch: list[tuple[int, int, BookingEvent]]
) -> tuple[list[Verdict], Any]:
    """Dedupe + the service-date fold of one batch, written."""
    verdicts, result, writes = screen_and_fold(
        store, batch, bookings.fold_batch, HORIZON_MS, lambda r: r.writes
    )
    apply_writes(store, writes)
    return verdicts, result


def month_events(store: dict[str, Any], ev: BookingEvent) -> int:
    key = bookings.table_key(
        ev.organization_id, ev.venue_id, "month", ev.service_date.isoformat()[:7]
    )
    totals = bookings.row_totals(store[key])
    return totals.bookings + totals.cancellations


def test_a_resend_at_the_horizon_is_a_duplicate_and_after_it_is_counted_again() -> None:
    a = booking_stream()[0]
    store: dict[str, Any] = {}
    assert one_batch(store, [(0, T0_MS, a)])[0] == ["new"]
    # exactly one horizon later: still the same event
    assert one_batch(store, [(1, T0_MS + HORIZON_MS, a)])[0] == ["duplicate"]
    assert month_events(store, a) == 1
    # a millisecond later: expired, counted as a new event, its record renewed
    verdicts, result = one_batch(store, [(2, T0_MS + HORIZON_MS + 1, a)])
    assert verdicts == ["expired"] and result.outcomes == ["counted"]
    assert month_events(store, a) == 2
    assert store[dedupe_key(f"{a.organization_id}/{a.event_id}")] == [2, T0_MS + HORIZON_MS + 1]
    # measured from the renewed arrival: 1.9 horizons after the first is a duplicate again
    late = T0_MS + HORIZON_MS * 19 // 10
    assert one_batch(store, [(3, late, a)])[0] == ["duplicate"]
    assert month_events(store, a) == 2
    # the renewed offset delivered again (a crash after the renewal) is "again"
    verdicts, result = one_batch(store, [(2, T0_MS + HORIZON_MS + 1, a)])
    assert verdicts == ["again"] and result.outcomes == ["redelivered"]
    assert month_events(store, a) == 2


def test_a_record_is_deletable_only_after_two_horizons() -> None:
    record = [0, T0_MS]
    assert not expired(record, T0_MS + HORIZON_MS + 1, HORIZON_MS)
    assert not expired(record, T0_MS + 2 * HORIZON_MS, HORIZON_MS)
    assert expired(record, T0_MS + 2 * HORIZON_MS + 1, HORIZON_MS)
    # between one and two horizons the record is kept: a re-send is recognised as expired
    a = booking_stream()[1]
    store: dict[str, Any] = {}
    one_batch(store, [(0, T0_MS, a)])
    key = dedupe_key(f"{a.organization_id}/{a.event_id}")
    newest = T0_MS + HORIZON_MS * 3 // 2
    assert not expired(store[key], newest, HORIZON_MS)
    assert one_batch(store, [(1, newest, a)])[0] == ["expired"]
    # past two horizons the sweep deletes it: the event can no longer be told from a new one
    b = booking_stream()[2]
    one_batch(store, [(2, T0_MS, b)])
    newest = T0_MS + 2 * HORIZON_MS + 1
    swept = [
        (k, None)
        for k, v in store.items()
        if k.startswith("~e/") and expired(v, newest, HORIZON_MS)
    ]
    assert swept == [
        (dedupe_key(f"{b.organization_id}/{b.event_id}"), None)
    ]  # a's record was renewed at 1.5 horizons
    apply_writes(store, swept)
    assert one_batch(store, [(3, newest, b)])[0] == ["new"]


def test_the_same_offsets_delivered_again_are_again_and_write_nothing() -> None:
    events = random_bookings(random.Random(5), 40)
    batch = [(o, T0_MS + o, e) for o, e in enumerate(events)]
    store: dict[str, Any] = {}
    verdicts, result, writes = screen_and_fold(
        store, batch, fold_bookings, HORIZON_MS, lambda r: r.writes
    )
    assert verdicts == ["new"] * len(events)
    first = result
    assert "late" in first.outcomes
    apply_writes(store, writes)
    before = dict(store)
    verdicts, result, writes = screen_and_fold(
        store, batch, fold_bookings, HORIZON_MS, lambda r: r.writes
    )
    assert verdicts == ["again"] * len(events)
    # an event late for a window is late for it again (the window still lacks it); every
    # other event is in all its rows already
    assert result.outcomes == ["late" if out == "late" else "redelivered" for out in first.outcomes]
    assert result.late == first.late
    assert writes == [] and result.changes == []
    assert store == before


def test_the_dedupe_key_is_a_16_byte_digest_outside_the_row_keys() -> None:
    key = dedupe_key("evt-1")
    assert key == "~e/" + hashlib.blake2b(b"evt-1", digest_size=16).hexdigest()
    assert len(key) == 3 + 32
    assert dedupe_key("evt-2") != key
    # a batch that sees an event twice reads its record once and writes it once
    reads: list[str] = []
    store: dict[str, Any] = {}

    def get(k: str) -> Any:
        reads.append(k)
        return store.get(k)

    d = Dedupe(get, HORIZON_MS)
    assert [d.check("x", 0, T0_MS), d.check("x", 5, T0_MS + 1)] == ["new", "duplicate"]
    assert reads == [dedupe_key("x")]
    assert d.writes() == [(dedupe_key("x"), [0, T0_MS])]


def test_a_forgotten_event_leaves_no_record_and_its_resend_is_new() -> None:
    store: dict[str, Any] = {}
    first = Dedupe(store.get, HORIZON_MS)
    assert first.check("org/e1", 10, T0_MS) == "new"
    assert first.check("org/e2", 11, T0_MS) == "new"
    first.forget("org/e1")
    assert first.writes() == [(dedupe_key("org/e2"), [11, T0_MS])]
    store.update(first.writes())
    later = Dedupe(store.get, HORIZON_MS)
    assert later.check("org/e1", 20, T0_MS + 1) == "new"  # not a duplicate of offset 10
    assert later.check("org/e2", 21, T0_MS + 1) == "duplicate"
    # forgetting an expired re-send's renewal keeps the stored record as it was
    old = {dedupe_key("org/e3"): [5, T0_MS - 2 * HORIZON_MS]}
    renewing = Dedupe(old.get, HORIZON_MS)
    assert renewing.check("org/e3", 30, T0_MS) == "expired"
    renewing.forget("org/e3")
    assert renewing.writes() == []


def test_packed_records_expand_to_each_record_and_a_marker() -> None:
    """A batch's records travel as one changelog record per 4,096; what they stand for in
    RocksDB (``expand``, the same when written and when restored) is each record as its own
    row and a marker with the newest arrival and the count (computed here from the rows)."""
    assert CHUNK_EVENTS == 4_096
    rows = [
        (dedupe_key(f"org/e{i}"), [100 + i, T0_MS + (i * 7919) % 100_000]) for i in range(10_000)
    ]
    packed = pack(rows)
    starts = [0, 4_096, 8_192]
    # keyed by their lowest offset and a digest of their content (computed here)
    assert [k for k, _ in packed] == [
        f"~d/{100 + s:020d}-"
        + hashlib.blake2b(
            orjson.dumps([[k[3:], o, a] for k, (o, a) in rows[s : s + 4_096]]), digest_size=4
        ).hexdigest()
        for s in starts
    ]
    local: dict[bytes, Any] = {}
    for key, value in packed:
        for k, v in expand(b'"' + key.encode() + b'"', orjson.dumps(value)) or []:
            local[k] = None if v is None else orjson.loads(v)
    expected: dict[bytes, Any] = {f'"{k}"'.encode(): v for k, v in rows}
    for (key, _), s in zip(packed, starts, strict=True):
        part = rows[s : s + 4_096]
        expected[f'"{key}"'.encode()] = {"a": max(a for _, (_, a) in part), "n": len(part)}
    assert local == expected
    # the largest record (offsets and arrivals of 13 digits) stays well under a broker's
    # default message.max.bytes (1 MB)
    big = [(dedupe_key(f"e{i}"), [10**12 + i, 10**12 + i]) for i in range(CHUNK_EVENTS)]
    ((_, value),) = pack(big)
    assert 200_000 < len(orjson.dumps(value)) < 300_000
    # a tombstone deletes the marker only; other records are stored as they are, and so is
    # a packed record this version cannot read (logged: a restore must not stop on it)
    marker_key = f'"{packed[0][0]}"'.encode()
    assert expand(marker_key, None) == [(marker_key, None)]
    assert expand(b'"org/venue/day/2026-01-01"', b'{"o":1}') is None
    assert expand(f'"{dedupe_key("x")}"'.encode(), b"[1,2]") is None
    # a packed record this version cannot read is logged and nothing of it stored (a marker
    # of another shape would stop the sweep, a value that is not JSON every scan)
    assert expand(marker_key, b"[1, 2]") == []
    assert expand(marker_key, b'{"v": 2, "e": []}') == []
    assert expand(marker_key, b"not json") == []
    assert not chunk_expired({"v": 2}, 10**15, HORIZON_MS)
    assert not chunk_expired([1, 2], 10**15, HORIZON_MS)
    # a packed record may go once every record in it is past two horizons
    marker = local[marker_key]
    assert chunk_expired(marker, marker["a"] + 2 * HORIZON_MS + 1, HORIZON_MS)
    assert not chunk_expired(marker, marker["a"] + 2 * HORIZON_MS, HORIZON_MS)
    assert pack([]) == []


def test_a_sweep_deletes_expired_records_and_packed_records_expired_whole() -> None:
    """The sweep's choice over a partition's rows in key order (as RocksDB scans them):
    expired records not written by a batch in flight, at most ``limit`` looked at, going on
    from a cursor; packed records oldest first, up to the first with a record not expired."""
    newest = T0_MS + 10 * HORIZON_MS
    old, young = newest - 2 * HORIZON_MS - 1, newest - 2 * HORIZON_MS  # expired / not yet
    records = {dedupe_key(f"e{i}"): [i, old if i % 3 else young] for i in range(10)}
    chunks = {
        f"~d/{0:020d}": {"a": old, "n": 4},
        f"~d/{4:020d}": {"a": young, "n": 4},  # one record not expired: kept, and the rest
        f"~d/{8:020d}": {"a": old, "n": 2},
    }
    rows = {**records, **chunks, "org/v/day/2026-01-01": {"o": 3}, "~f/other": {}}
    ordered = sorted(rows.items())

    def scan_from(start: str) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in ordered if k >= start]

    pending = {dedupe_key("e1")}  # renewed by a batch in flight
    expected = sorted(
        k for k, v in records.items() if v[1] == old and k not in pending
    )  # computed from the rows above
    deletes, tombstones, cursor = sweep(
        scan_from("~e/"), scan_from("~d/"), pending, newest, HORIZON_MS, 100, 0
    )
    assert [k for k, _ in deletes] == expected and all(v is None for _, v in deletes)
    assert tombstones == [(f"~d/{0:020d}", None)]
    assert cursor is None
    # records below the partition's packed-since offset have a changelog record each: their
    # deletes are changelog tombstones (records e0..e4 here), the others local
    local, tombstones, _ = sweep(
        scan_from("~e/"), scan_from("~d/"), pending, newest, HORIZON_MS, 100, 5
    )
    assert sorted(k for k, _ in local) == [k for k in expected if records[k][0] >= 5]
    assert sorted(k for k, _ in tombstones) == sorted(
        [k for k in expected if records[k][0] < 5] + [f"~d/{0:020d}"]
    )
    # not packed (WEDDING_DEDUPE_PACKED=0): every delete is a changelog tombstone
    local, tombstones, _ = sweep(
        scan_from("~e/"), scan_from("~d/"), pending, newest, HORIZON_MS, 100, None
    )
    assert local == [] and sorted(k for k, _ in tombstones) == sorted([*expected, f"~d/{0:020d}"])
    # a limit of 4: four records looked at, the next sweep goes on from the fourth's key
    first = sorted(records)[:4]
    deletes, tombstones, cursor = sweep(
        scan_from("~e/"), scan_from("~d/"), pending, newest, HORIZON_MS, 4, 0
    )
    assert [k for k, _ in deletes] == [k for k in expected if k in first]
    assert cursor == first[-1]
    rest, _, cursor = sweep(scan_from(cursor), [], pending, newest, HORIZON_MS, 100, 0)
    # (the cursor's own record is looked at again: deleting it twice is harmless)
    assert sorted({k for k, _ in deletes} | {k for k, _ in rest}) == expected
    assert cursor is None


def _new_batch(first: int, last: int) -> list[tuple[str, list[int]]]:
    """The dedupe records of a batch of new events at offsets ``first..last``."""
    d = Dedupe(lambda _k: None, HORIZON_MS)
    for o in range(first, last + 1):
        assert d.check(f"org/e{o}", o, T0_MS + o) == "new"
    return d.writes()


def _compact_and_restore(log: list[tuple[str, Any]]) -> dict[str, Any]:
    """Kafka's compaction of a changelog partition (the last record of each key), then a
    restore of an empty table from it as the worker does (packed records expanded)."""
    last = {k: i for i, (k, _) in enumerate(log)}
    table: dict[str, Any] = {}
    for i, (key, value) in enumerate(log):
        if last[key] != i:
            continue
        kb = f'"{key}"'.encode()
        rows = expand(kb, None if value is None else orjson.dumps(value))
        for rk, rv in rows if rows is not None else [(kb, orjson.dumps(value))]:
            if rv is None:
                table.pop(rk[1:-1].decode(), None)
            else:
                table[rk[1:-1].decode()] = orjson.loads(rv)
    return table


def test_two_writers_packed_records_of_the_same_offsets_both_survive_compaction() -> None:
    """A worker that lost its partition while paused sends its batch (100..149) after the new
    owner folded 100..399 as one batch: both packed records start at offset 100, and a
    compacted changelog keeps one record per key, so their keys must differ (the attacker
    round of the change: with the offset alone as key, event 200's record was lost and its
    re-send within the horizon counted again after a restore)."""
    b_chunks, a_chunks = pack(_new_batch(100, 399)), pack(_new_batch(100, 149))
    assert b_chunks[0][0] != a_chunks[0][0]
    assert b_chunks[0][0][:24] == a_chunks[0][0][:24] == f"~d/{100:020d}-"[:24]
    restored = _compact_and_restore([*b_chunks, *a_chunks])
    resend = Dedupe(restored.get, HORIZON_MS)
    for o in (100, 149, 200, 399):  # a producer's retry an hour after the first send
        assert resend.check(f"org/e{o}", 10_000 + o, T0_MS + o + 3_600_000) == "duplicate"
    # the same packed record twice (a batch folded again the same way) is one key
    assert pack(_new_batch(100, 149)) == a_chunks


def test_a_record_renewed_later_in_its_batch_is_packed_in_offset_order() -> None:
    """An event new at offset 100 and re-sent at 150 with a timestamp past the horizon (a
    replayed export keeping its timestamps) is renewed by the same batch: its packed record
    is keyed by the batch's lowest offset (101, the other event's), in offset order."""
    d = Dedupe(lambda _k: None, HORIZON_MS)
    assert d.check("org/x", 100, T0_MS) == "new"
    assert d.check("org/y", 101, T0_MS) == "new"
    assert d.check("org/x", 150, T0_MS + HORIZON_MS + 1) == "expired"
    ((key, value),) = pack(d.writes())
    assert key.startswith(f"~d/{101:020d}-")
    assert [o for _, o, _ in value["e"]] == [101, 150]


def test_the_changelog_rows_of_a_batchs_records_packed_and_one_each() -> None:
    """What a batch sends for its dedupe records: packed, the partition's packed-since row
    when packing begins there, and a tombstone for a renewed record that had a changelog
    record of its own; one each, the records behind a tombstone of the packed-since row (so
    a later packed batch marks where packing began again, above them)."""
    store: dict[str, Any] = {dedupe_key("org/old"): [3, T0_MS - 3 * HORIZON_MS]}
    d = Dedupe(store.get, HORIZON_MS)
    assert d.check("org/a", 10, T0_MS) == "new"
    assert d.check("org/old", 11, T0_MS) == "expired"  # renewed: its record was at offset 3
    assert d.check("org/b", 12, T0_MS) == "new"
    assert d.replaced() == {dedupe_key("org/old"): 3}
    records = d.writes()
    # packing begins on the partition: it is marked at the batch's lowest offset, and the
    # renewed record's own changelog record (offset 3, below the mark) gets a tombstone
    since, rows = changelog_rows(records, d.replaced(), None, True)
    assert since == 10
    assert rows == [
        (dedupe_key("org/old"), None),
        (PACKED_SINCE, {"since": 10}),
        *pack(records),
    ]
    # packing went on since offset 2: the record at 3 was packed already, no tombstone
    since, rows = changelog_rows(records, d.replaced(), {"since": 2}, True)
    assert (since, rows) == (2, pack(records))
    # one each: the records, and the mark cleared once (not again when it is gone)
    assert changelog_rows(records, d.replaced(), {"since": 2}, False) == (
        None,
        [(PACKED_SINCE, None), *records],
    )
    assert changelog_rows(records, d.replaced(), None, False) == (None, records)
    assert changelog_rows([], {}, {"since": 2}, False) == (None, [])
    assert changelog_rows([], {}, None, True) == (None, [])
    # a record renewed twice in one batch is replaced once, at its stored offset; forgetting
    # a renewal forgets its replacement
    d2 = Dedupe(store.get, HORIZON_MS)
    assert d2.check("org/old", 20, T0_MS) == "expired"
    assert d2.check("org/old", 21, T0_MS + HORIZON_MS + 1) == "expired"
    assert d2.replaced() == {dedupe_key("org/old"): 3}
    d2.forget("org/old")
    assert d2.replaced() == {} and d2.writes() == []


def test_no_record_written_one_each_stays_in_the_changelog_when_packing_is_toggled() -> None:
    """Packed (offsets 100..), one each (200..: a worker not yet restarted in the upgrade's
    second step, or packing turned off), packed again (300..): two horizons later the sweep
    leaves no dedupe record and no packed record in the (compacted) changelog, and deletes
    the packed ones locally (the second round of the attacker review: with the first mark
    kept, the records written one each at 200.. were deleted locally only, for ever in the
    changelog)."""
    changelog: dict[str, Any] = {}  # compacted: the last value of each key
    local: dict[str, Any] = {}

    def store(rows: list[tuple[str, Any]]) -> None:
        for key, value in rows:
            if value is None:
                changelog.pop(key, None)
            else:
                changelog[key] = value
            kb = f'"{key}"'.encode()
            expanded = expand(kb, None if value is None else orjson.dumps(value))
            for rk, rv in expanded if expanded is not None else [(kb, orjson.dumps(value))]:
                if rv is None or rv == b"null":
                    local.pop(rk[1:-1].decode(), None)
                else:
                    local[rk[1:-1].decode()] = orjson.loads(rv)

    def batch(first: int, packed: bool) -> int | None:
        d = Dedupe(local.get, HORIZON_MS)
        for o in range(first, first + 10):
            assert d.check(f"org/e{o}", o, T0_MS + o) == "new"
        since, rows = changelog_rows(d.writes(), d.replaced(), local.get(PACKED_SINCE), packed)
        store(rows)
        return since

    assert batch(100, True) == 100
    assert batch(200, False) is None and PACKED_SINCE not in local
    assert batch(300, True) == 300
    records = sorted((k, v) for k, v in local.items() if k.startswith("~e/"))
    markers = sorted((k, v) for k, v in local.items() if k.startswith("~d/"))
    assert len(records) == 30 and len(markers) == 2
    deletes, tombstones, _ = sweep(
        records, markers, {}, T0_MS + 3 * HORIZON_MS, HORIZON_MS, 5_000, 300
    )
    store(tombstones)
    assert [k for k in changelog if k.startswith(("~e/", "~d/"))] == []
    packed_keys = {dedupe_key(f"org/e{o}") for o in [*range(100, 110), *range(300, 310)]}
    # the records at 100.. were packed too, but below the mark: tombstoned, not left behind
    assert {k for k, _ in deletes} | {k for k, _ in tombstones if k.startswith("~e/")} == {
        k for k, _ in records
    }
    assert {k for k, _ in deletes} == {k for k in packed_keys if local.get(k, [0])[0] >= 300}
