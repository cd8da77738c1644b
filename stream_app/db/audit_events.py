"""The audit log: append-only and hash-chained per organisation (table ``audit_log``, 011).

Part of the evidence layer: it touches only ``audit_log``. Every other part writes through
:func:`record`; ``wedding-engine audit verify`` runs :func:`verify_chains`; the HTTP API
pages with :func:`list_events`.

**The chain.** Each organisation has its own chain: its rows carry ``seq`` = 1, 2, 3, …
(``UNIQUE (organization_id, seq)``), ``prev_hash`` = the ``row_hash`` of the row with
``seq - 1`` (:data:`GENESIS_HASH`, 64 zeros, for ``seq`` 1) and ``row_hash`` =
:func:`row_hash` of the row's canonical content.

**Canonical content** (:func:`canonical_content`): the UTF-8 bytes of the RFC 8785 JSON
Canonicalization Scheme (JCS) serialisation (the ``rfc8785`` package) of the object ::

    {"org": organization_id, "seq": seq, "actor": actor, "action": action,
     "target": target or null, "details": details, "outcome": outcome,
     "at": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "prev_hash": prev_hash}

``at`` is the row's timestamp in UTC with microseconds (PostgreSQL's own resolution), and
``details`` is the JSON value exactly as PostgreSQL stores it (``jsonb``), read back as text
and parsed with Python's :mod:`json`: :func:`record` normalises the caller's value through
PostgreSQL before hashing, so what is hashed is what is stored (``1.50`` and ``1.5`` are the
same number to JCS; integers beyond ±2**53 are refused, as JCS requires).

**Concurrency.** Appends of one organisation are serialised by a transaction-scoped
advisory lock (``pg_advisory_xact_lock(AUDIT_LOCK_CLASS, <32 bits of SHA-256(org)>)``),
taken in its own statement before the chain's head is read, so two workers appending at once
never read the same head: no fork. The lock is held until the caller's transaction ends, so
keep audit writes at the end of short transactions, and write one organisation per
transaction (two transactions taking two organisations' locks in opposite orders deadlock;
PostgreSQL then aborts one). ``UNIQUE (organization_id, seq)`` is the backstop: a caller in a
``REPEATABLE READ`` transaction whose snapshot predates the head gets a unique violation, never
a fork.

**Limits.** A hash chain without a secret shows an edited, deleted or reordered row, but
not the loss of the newest rows, nor a chain recomputed from the edit onward by someone who
can write the table: compare the head (``seq``, ``row_hash``) that ``audit verify`` prints
with one kept elsewhere to catch those.

Details must not carry personal data (the log cannot be erased without breaking the chain):
callers record ids, counts and settings, never names, e-mail addresses or free text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import orjson
import rfc8785

from stream_app.db.rows import from_row
from stream_app.db.tenancy import tenant_transaction

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of an organisation's first row (``seq`` 1)."""

SYSTEM_ORG = "(system)"
"""Reserved organisation id of system-wide events (not tied to one tenant). Parentheses are
outside the id rule of every organisation (``[A-Za-z0-9._:-]{1,128}``), so no tenant can be
named this and no tenant's chain or ``/orgs/{org}/audit`` page can reach these rows."""

OUTCOMES = frozenset({"ok", "refused", "failed"})
"""``ok``: the action happened; ``refused``: the caller was turned away (401/403/429);
``failed``: the action was attempted and failed (e.g. a delivery attempt)."""

AUDIT_LOCK_CLASS = 0x41554454  # "AUDT": the advisory lock class of audit chain appends
"""First key of the two-key advisory lock that serialises one organisation's appends (the
one-key lock of the migrations, :mod:`stream_app.db.migrate`, is a separate key space)."""

MAX_ACTION_CHARS = 64
MAX_ACTOR_CHARS = 256
MAX_TARGET_CHARS = 512

FaultKind = Literal["edited", "deleted", "reordered"]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One stored audit row.

    Attributes:
        id: the row's id (increases with ``seq`` within an organisation).
        organization_id: the chain it belongs to.
        seq: 1-based position in the organisation's chain.
        actor: who acted (a user id, ``cli:<os user>``, ``scheduler``, ``delivery``, a client
            address for refused requests).
        action: what happened, dotted (``report.requested``, ``schedule.deleted``, …).
        target: what it happened to (a report or schedule id), or None.
        details: JSON object of ids, counts and settings (no personal data).
        outcome: one of :data:`OUTCOMES`.
        at: when it was recorded (UTC, microseconds).
        prev_hash: ``row_hash`` of the previous row (hex SHA-256).
        row_hash: SHA-256 of this row's canonical content (hex).
    """

    id: int
    organization_id: str
    seq: int
    actor: str
    action: str
    target: str | None
    details: Any
    outcome: str
    at: datetime
    prev_hash: str
    row_hash: str


@dataclass(frozen=True, slots=True)
class ChainFault:
    """The first row of a chain that does not verify.

    Attributes:
        seq: the row's ``seq``.
        row_id: the row's ``id``.
        kind: ``edited`` (content hash mismatch), ``deleted`` (a ``seq`` gap) or
            ``reordered`` (``prev_hash`` or ``id`` order does not follow the chain).
        reason: what was found, in words.
    """

    seq: int
    row_id: int
    kind: FaultKind
    reason: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The verification of one organisation's chain.

    Attributes:
        organization_id: the chain.
        rows_checked: rows read and found intact (before the fault, when there is one).
        head_seq: ``seq`` of the last intact row (0 for an empty chain).
        head_hash: ``row_hash`` of the last intact row (:data:`GENESIS_HASH` when empty).
        fault: the first bad row, or None when the chain verifies.
    """

    organization_id: str
    rows_checked: int
    head_seq: int
    head_hash: str
    fault: ChainFault | None


def format_at(at: datetime) -> str:
    """``at`` as UTC ISO 8601 with microseconds and ``Z`` (``2026-12-05T06:55:00.123456Z``).

    Raises:
        ValueError: ``at`` is naive.
    """
    if at.tzinfo is None:
        raise ValueError("at: a naive datetime has no defined UTC instant")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_content(
    *,
    organization_id: str,
    seq: int,
    actor: str,
    action: str,
    target: str | None,
    details: Any,
    outcome: str,
    at: datetime,
    prev_hash: str,
) -> bytes:
    """The RFC 8785 (JCS) bytes a row's hash is taken of (see the module docstring).

    Raises:
        rfc8785.CanonicalizationError: ``details`` holds a value JCS cannot represent
            (an integer beyond ±2**53, a NaN or infinite float).
    """
    return rfc8785.dumps(
        {
            "org": organization_id,
            "seq": seq,
            "actor": actor,
            "action": action,
            "target": target,
            "details": details,
            "outcome": outcome,
            "at": format_at(at),
            "prev_hash": prev_hash,
        }
    )


def row_hash(content: bytes) -> str:
    """Lowercase hex SHA-256 of ``content`` (FIPS 180-4, :mod:`hashlib`)."""
    return hashlib.sha256(content).hexdigest()


def lock_key(organization_id: str) -> int:
    """Second key of the organisation's advisory lock: the first 32 bits of SHA-256(org),
    signed (PostgreSQL's ``int4``). A collision only makes two organisations wait for each
    other."""
    digest = hashlib.sha256(organization_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def _check(organization_id: str, actor: str, action: str, target: str | None, outcome: str) -> None:
    if not organization_id:
        raise ValueError("organization_id: must not be empty (system events: SYSTEM_ORG)")
    if not actor or len(actor) > MAX_ACTOR_CHARS:
        raise ValueError(f"actor: 1 to {MAX_ACTOR_CHARS} characters")
    if not action or len(action) > MAX_ACTION_CHARS:
        raise ValueError(f"action: 1 to {MAX_ACTION_CHARS} characters")
    if target is not None and len(target) > MAX_TARGET_CHARS:
        raise ValueError(f"target: at most {MAX_TARGET_CHARS} characters")
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome: {outcome!r} is not one of {sorted(OUTCOMES)}")


async def record(
    conn: asyncpg.Connection,
    organization_id: str | None,
    actor: str,
    action: str,
    target: str | None,
    details: Mapping[str, Any] | None = None,
    *,
    outcome: str = "ok",
) -> None:
    """Append one event to ``organization_id``'s chain.

    Runs in the caller's transaction when ``conn`` is in one (so the event commits or rolls
    back with the action it records), else in a transaction of its own. Three statements:
    the organisation's advisory lock; the chain head with the stored form of ``details`` and
    the database clock (``clock_timestamp()``); the insert.

    Which role writes is the caller's choice: a request's work wraps the call in
    :func:`~stream_app.db.tenancy.tenant_transaction` of the organisation; cross-tenant work
    (scheduler, delivery) writes on its own login.

    Args:
        conn: a connection; inside a tenant transaction it must be ``organization_id``'s
            (row-level security refuses another organisation's rows).
        organization_id: the chain; None (or :data:`SYSTEM_ORG`) for system-wide events.
        actor: who acted (1-256 characters).
        action: what happened, e.g. ``report.requested`` (1-64 characters).
        target: the id acted on, or None (at most 512 characters).
        details: a JSON object of ids, counts and settings; no personal data (None: ``{}``).
        outcome: one of :data:`OUTCOMES`.

    Raises:
        ValueError: an argument is out of its range, or ``details`` holds a value RFC 8785
            cannot represent.
        asyncpg.PostgresError: the database refused the write (e.g. a unique violation of
            ``(organization_id, seq)`` from a stale ``REPEATABLE READ`` snapshot).
    """
    organization_id = SYSTEM_ORG if organization_id is None else organization_id
    _check(organization_id, actor, action, target, outcome)
    try:
        details_json = orjson.dumps(dict(details or {})).decode()
    except TypeError as exc:
        raise ValueError(f"details: not JSON-serialisable: {exc}") from None
    if conn.is_in_transaction():
        await _append(conn, organization_id, actor, action, target, details_json, outcome)
    else:
        async with conn.transaction():
            await _append(conn, organization_id, actor, action, target, details_json, outcome)


async def _append(
    conn: asyncpg.Connection,
    organization_id: str,
    actor: str,
    action: str,
    target: str | None,
    details_json: str,
    outcome: str,
) -> None:
    # the lock in a statement of its own: the head is read with a snapshot taken after it
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1::int4, $2::int4)",
        AUDIT_LOCK_CLASS,
        lock_key(organization_id),
    )
    head = await conn.fetchrow(
        "SELECT $2::jsonb::text AS details, clock_timestamp() AS at, h.seq, h.row_hash"
        " FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT seq, row_hash FROM audit_log"
        "  WHERE organization_id = $1 ORDER BY seq DESC LIMIT 1) AS h ON true",
        organization_id,
        details_json,
    )
    assert head is not None
    seq = 1 if head["seq"] is None else int(head["seq"]) + 1
    prev = GENESIS_HASH if head["row_hash"] is None else str(head["row_hash"])
    at: datetime = head["at"]
    try:
        content = canonical_content(
            organization_id=organization_id,
            seq=seq,
            actor=actor,
            action=action,
            target=target,
            details=json.loads(head["details"]),
            outcome=outcome,
            at=at,
            prev_hash=prev,
        )
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"details: {exc}") from None
    await conn.execute(
        "INSERT INTO audit_log (organization_id, seq, actor, action, target, details, outcome,"
        " at, prev_hash, row_hash) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10)",
        organization_id,
        seq,
        actor,
        action,
        target,
        head["details"],
        outcome,
        at,
        prev,
        row_hash(content),
    )


_COLUMNS = (
    "id, organization_id, seq, actor, action, target, details::text AS details, outcome, at,"
    " prev_hash, row_hash"
)


def _event(row: asyncpg.Record) -> AuditEvent:
    # details: parsed with :mod:`json`, the rule of the hash (module docstring)
    return from_row(AuditEvent, row, json={"details"}, loads=json.loads)


async def list_events(
    conn: asyncpg.Connection, organization_id: str, *, after_seq: int = 0, limit: int = 100
) -> list[AuditEvent]:
    """``organization_id``'s events with ``seq > after_seq``, oldest first, at most ``limit``.

    Runs in a tenant transaction (row-level security: only this organisation's rows).
    Page on with ``after_seq`` = the last ``seq`` returned.

    Raises:
        ValueError: ``after_seq`` < 0 or ``limit`` not in 1..1000.
    """
    if after_seq < 0:
        raise ValueError("after_seq: must be >= 0")
    if not 1 <= limit <= 1000:
        raise ValueError("limit: must be between 1 and 1000")
    async with tenant_transaction(conn, organization_id):
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM audit_log WHERE organization_id = $1 AND seq > $2"
            " ORDER BY seq LIMIT $3",
            organization_id,
            after_seq,
            limit,
        )
    return [_event(r) for r in rows]


def expected_hash(event: AuditEvent) -> str:
    """The ``row_hash`` ``event``'s stored content should have.

    Raises:
        rfc8785.CanonicalizationError: the stored details hold a value JCS cannot represent
            (only possible for a row written around :func:`record`).
    """
    return row_hash(
        canonical_content(
            organization_id=event.organization_id,
            seq=event.seq,
            actor=event.actor,
            action=event.action,
            target=event.target,
            details=event.details,
            outcome=event.outcome,
            at=event.at,
            prev_hash=event.prev_hash,
        )
    )


def _fault(ev: AuditEvent, prev_seq: int, prev_hash: str, prev_id: int) -> ChainFault | None:
    """What is wrong with ``ev``, the row after one found intact (``prev_*``); None if
    nothing is."""
    if ev.seq > prev_seq + 1:
        gap = f"seq {prev_seq + 1}" + ("" if ev.seq == prev_seq + 2 else f"..{ev.seq - 1}")
        return ChainFault(ev.seq, ev.id, "deleted", f"{gap} missing before this row (deleted)")
    if ev.seq <= prev_seq:
        return ChainFault(ev.seq, ev.id, "reordered", f"seq {ev.seq} repeated after {prev_seq}")
    if ev.prev_hash != prev_hash:
        return ChainFault(
            ev.seq,
            ev.id,
            "reordered",
            f"prev_hash {ev.prev_hash[:12]}… is not the row_hash {prev_hash[:12]}… of"
            f" seq {prev_seq} (rows reordered, or removed and renumbered)",
        )
    if ev.id <= prev_id:
        return ChainFault(
            ev.seq,
            ev.id,
            "reordered",
            f"id {ev.id} is not after id {prev_id} of seq {prev_seq} (rows reordered)",
        )
    try:
        want = expected_hash(ev)
    except rfc8785.CanonicalizationError as exc:
        want = f"unhashable details: {exc}"
    if want != ev.row_hash:
        return ChainFault(
            ev.seq,
            ev.id,
            "edited",
            f"content hash {want[:12]}… differs from the stored row_hash"
            f" {ev.row_hash[:12]}… (the row was edited)",
        )
    return None


async def verify_chain(
    conn: asyncpg.Connection, organization_id: str, *, batch: int = 1000
) -> ChainReport:
    """Recompute ``organization_id``'s chain and return the first bad row, if any.

    Checked in this order for each row, by ``seq``: ``seq`` follows the previous one (a gap
    is a deleted row; a repeated ``seq`` a reordering); ``prev_hash`` equals the previous
    row's ``row_hash`` (else rows were reordered, or removed and renumbered); ``id`` grows
    with ``seq`` (ids are drawn under the chain's lock); the content hashes to ``row_hash``
    (else the row was edited).

    Args:
        conn: a connection that can read every row of the chain (the owner, or a tenant
            transaction of the organisation); must not be in a transaction.
        organization_id: the chain.
        batch: rows fetched per round trip.
    """
    checked = 0
    prev_seq, prev_hash, prev_id = 0, GENESIS_HASH, 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = conn.cursor(
            f"SELECT {_COLUMNS} FROM audit_log WHERE organization_id = $1 ORDER BY seq, id",
            organization_id,
            prefetch=batch,
        )
        async for row in cursor:
            ev = _event(row)
            fault = _fault(ev, prev_seq, prev_hash, prev_id)
            if fault is not None:
                return ChainReport(organization_id, checked, prev_seq, prev_hash, fault)
            checked += 1
            prev_seq, prev_hash, prev_id = ev.seq, ev.row_hash, ev.id
    return ChainReport(organization_id, checked, prev_seq, prev_hash, None)


async def verify_chains(
    conn: asyncpg.Connection, organization_id: str | None = None
) -> list[ChainReport]:
    """Verify one organisation's chain, or every chain in the table (by organisation id).

    ``conn`` must see every row (the owner role); see :func:`verify_chain`.
    """
    if organization_id is not None:
        orgs = [organization_id]
    else:
        orgs = [
            r["organization_id"]
            for r in await conn.fetch(
                "SELECT DISTINCT organization_id FROM audit_log ORDER BY organization_id"
            )
        ]
    return [await verify_chain(conn, org) for org in orgs]
