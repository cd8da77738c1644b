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
same way every time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

PREFIX = "~e/"

Verdict = Literal["new", "again", "duplicate", "expired"]
"""``new``: first sight; ``again``: the same message (same offset) delivered again;
``duplicate``: a re-send within the horizon (skip it); ``expired``: a re-send after the
horizon (counted as new)."""


def dedupe_key(event_id: str) -> str:
    """The table key of an event's dedupe record: ``~e/`` + hex BLAKE2b-128 of ``event_id``
    (the caller passes ``organization_id/event_id``)."""
    return PREFIX + hashlib.blake2b(event_id.encode(), digest_size=16).hexdigest()


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
        self._records[key] = self._changed[key] = [offset, arrival_ms]
        return "expired"

    def forget(self, event_id: str) -> None:
        """Undo what :meth:`check` recorded for ``event_id`` in this batch (an event set aside
        after its check: it was not folded, so a re-send of it must not be a duplicate)."""
        key = dedupe_key(event_id)
        self._records.pop(key, None)
        self._changed.pop(key, None)

    def writes(self) -> list[tuple[str, list[int]]]:
        """The records the batch created or renewed, ``(key, [offset, arrival ms])``."""
        return list(self._changed.items())
