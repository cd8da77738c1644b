"""Tenant scope: every statement on tenant rows runs as the RLS-restricted role, tenant set once.

Row-level security (``db/policies.sql``) lets the ``wedding_tenant`` role see and write only
rows whose ``organization_id`` is the tenant of the current transaction, which
``wedding_enter_tenant`` (migration 007) records once per transaction: a later call naming
another organisation, ``set_config`` of any setting and ``RESET ROLE`` change nothing of it.
The query layer also names the organisation in every predicate; RLS is the second wall.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg

from stream_app import iana
from stream_app.errors import WeddingError


class UnknownOrganizationError(WeddingError, LookupError):
    """The organisation id names no organisation (or one the caller may not see).

    Attributes:
        deleted_at: when an organisation of that id was deleted (its tombstone, migration
            026), when the raiser read it; its id is not registered again.
    """

    retriable = False
    deleted_at: datetime | None = None

    def hint(self, option: str, organization_id: str) -> str:
        """What a command says: the id was deleted, or how to create it (``option`` is the
        command's name for the id, e.g. ``--org``)."""
        if self.deleted_at is not None:
            return (
                f"{option}: organisation {organization_id!r} was deleted at"
                f" {self.deleted_at.isoformat()}; its id is not registered again"
            )
        return (
            f"{option}: no organisation {organization_id!r}; create it first:"
            f" wedding-engine org {organization_id} --zone …"
        )


class TenantScopeError(WeddingError, RuntimeError):
    """A tenant scope opened by :func:`tenant_transaction` is still open on a connection whose
    transaction was ended or replaced by hand inside it (``COMMIT``/``ROLLBACK``/``BEGIN``
    sent as SQL): a programming error, refused before anything more runs on it."""

    retriable = False


@dataclass(frozen=True, slots=True)
class Organization:
    """An organisation (tenant).

    Attributes:
        id: the tenant id carried by every event and key.
        name: display name.
        time_zone: IANA zone; months, weeks and schedules are computed in it.
        currency: default ISO 4217 currency.
    """

    id: str
    name: str
    time_zone: str
    currency: str

    @property
    def zone(self) -> ZoneInfo:
        """The organisation's zone as a :class:`zoneinfo.ZoneInfo`."""
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True, slots=True)
class Venue:
    """A venue of an organisation; ``capacity`` is events per day (None when unknown)."""

    id: str
    name: str
    capacity: int | None


def check_time_zone(name: str) -> str:
    """Return ``name`` if it is an IANA zone known to this machine, else raise ValueError."""
    try:
        iana.zone(name)  # not a folder (``Europe``), nor a host entry (``localtime``)
    except ValueError as exc:
        raise ValueError(f"time_zone: {exc}") from None
    return name


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Embeddings, overrides and isolates: they make text display in another order than it is
stored (the "Trojan Source" characters)."""

MAX_NAME_CHARS = 200
"""Longest display name of an organisation or a venue, characters."""


_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f")
"""Hangul fillers, the blank Braille pattern and the combining grapheme joiner: characters
that show as blanks or as nothing, so ``City\u3164Hotel`` would pass for ``City Hotel`` and
``vb\u034f`` for ``vb``."""

_JOINERS = frozenset("\u200c\u200d")
"""Zero-width non-joiner and joiner: invisible format characters that names need (Persian and
Indic spellings, emoji sequences), so allowed where every other format character is not."""


MAX_COMBINING_MARKS = 8
"""Most combining marks (Unicode categories Mn, Me) in a row in a display name. Real
writing stacks a few (Vietnamese two, pointed Hebrew with cantillation three or four, Tibetan
stacks of subjoined letters about five); "Zalgo" text stacks hundreds, drawn over the lines
above and below it in every report (an attacker round registered 199). Unicode's own
stream-safe bound (UAX #15) is 30."""


def check_name(name: str) -> str:
    """Return ``name`` if it can be a display name (every report format carries it: 1 to
    :data:`MAX_NAME_CHARS` characters, at least one of them visible, none a control
    character, an invisible format character (zero-width space, direction marks; the
    zero-width joiner and non-joiner are allowed), a bidirectional control, a line or
    paragraph separator, a noncharacter (U+FFFE, U+FFFF, U+FDD0-U+FDEF and the last two of
    every plane) or an unpaired surrogate),
    else raise ValueError saying why (``name: ...``).

    An attacker round registered names the formats could not hold: control characters (the
    PowerPoint file failed), 100,000 characters (Excel's cell limit failed the whole
    report), bytes that are not UTF-8 (a database traceback); a trial user registered names
    that look empty or like another (spaces only, a zero-width space, a right-to-left mark).
    """
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise ValueError(f"name: must be 1-{MAX_NAME_CHARS} characters, got {len(name):,}")
    marks = 0  # combining marks in a row
    for position, char in enumerate(name, 1):
        category = unicodedata.category(char)
        marks = marks + 1 if category in ("Mn", "Me") else 0
        if marks > MAX_COMBINING_MARKS:
            raise ValueError(
                f"name: more than {MAX_COMBINING_MARKS} combining marks in a row at character"
                f" {position} (text stacked over its neighbours' lines)"
            )
        if category == "Cc":
            raise ValueError(f"name: control character {char!r} at character {position}")
        if category == "Cs":
            if 0xDC80 <= ord(char) <= 0xDCFF:  # a byte the command line could not decode
                raise ValueError(
                    f"name: byte 0x{ord(char) - 0xDC00:02X} at character {position} is not"
                    " UTF-8 (is the terminal's encoding UTF-8?)"
                )
            raise ValueError(f"name: not valid UTF-8 (an unpaired surrogate at {position})")
        if char in _BIDI_CONTROLS:  # text shown in another order than stored
            raise ValueError(f"name: bidirectional control U+{ord(char):04X} at {position}")
        if category == "Cf" and char not in _JOINERS:
            raise ValueError(
                f"name: invisible format character U+{ord(char):04X} at {position}"
                f" ({unicodedata.name(char, 'unnamed').lower()})"
            )
        if category in ("Zl", "Zp"):
            raise ValueError(f"name: line or paragraph separator U+{ord(char):04X} at {position}")
        if 0xFDD0 <= ord(char) <= 0xFDEF or ord(char) & 0xFFFE == 0xFFFE:
            raise ValueError(
                f"name: noncharacter U+{ord(char):04X} at {position} (not text: XML, and so the"
                " PowerPoint and Excel files, cannot hold it)"
            )
        if char in _FILLERS:
            raise ValueError(f"name: blank filler character U+{ord(char):04X} at {position}")
    if not any(unicodedata.category(c)[0] in "LNPS" for c in name):
        # only spaces, joiners, variation selectors or combining marks: nothing shows
        raise ValueError("name: must hold a visible character (a letter, digit or symbol)")
    return name


STATEMENT_TIMEOUT = "120s"
"""Longest run time of one tenant-scoped statement."""

TEMP_FILE_LIMIT = "1GB"
"""Most temporary file space one tenant-scoped statement may use."""


@asynccontextmanager
async def tenant_transaction(
    conn: asyncpg.Connection, organization_id: str
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction in which ``conn`` sees and writes only ``organization_id``'s rows.

    The tenant is fixed for the whole transaction (``wedding_enter_tenant``), then the role is
    set to ``wedding_tenant``, always at the top level of the transaction (migration 014: a
    tenant entered inside a savepoint could be rolled back and switched). Inside an open
    transaction without a tenant it enters at that level; nested inside the same
    organisation's scope it is a savepoint; inside another organisation's scope PostgreSQL
    refuses it (SQLSTATE 42501). Every
    statement in it is bounded: at most :data:`STATEMENT_TIMEOUT` of run time and
    :data:`TEMP_FILE_LIMIT` of temporary files (a request over a huge range fails with the
    database's reason instead of filling the disk).

    Raises:
        asyncpg.InsufficientPrivilegeError: the transaction already belongs to another tenant.
        TenantScopeError: a scope this function opened on ``conn`` is still open but its
            transaction is not (ended or replaced by hand inside the block).
    """
    recorded = _open_scopes.get(id(conn))
    if conn.is_in_transaction():
        entered = await conn.fetchval("SELECT wedding_current_tenant()")
        if recorded is not None and entered != recorded:
            raise TenantScopeError(
                f"the tenant scope of {recorded!r} on this connection lost its transaction"
                f" (the transaction's tenant is {entered!r}): transaction control by hand"
                " inside a tenant scope"
            )
        if entered is None:  # an open transaction without a tenant: enter it at that level
            await _enter(conn, organization_id)
            entered = organization_id
        if entered == organization_id:  # nested in the same tenant's scope: a savepoint
            async with conn.transaction():
                yield conn
            return
        # inside another tenant's scope: a savepoint, where entering is refused (42501)
        async with conn.transaction():
            await _enter(conn, organization_id)
            yield conn
        return
    if recorded is not None:
        raise TenantScopeError(
            f"the tenant scope of {recorded!r} on this connection lost its transaction"
            " (none is open): transaction control by hand inside a tenant scope"
        )
    async with conn.transaction():
        await _enter(conn, organization_id)
        _open_scopes[id(conn)] = organization_id
        try:
            yield conn
        finally:
            del _open_scopes[id(conn)]


_open_scopes: dict[int, str] = {}
"""``id(conn)`` → the organisation of the top-level tenant transaction :func:`tenant_transaction`
opened on ``conn`` and has not yet ended (an entry lives exactly as long as its block, while the
block holds ``conn``): :func:`tenant_read` reads in it without a round trip."""


@asynccontextmanager
async def tenant_read(
    conn: asyncpg.Connection, organization_id: str
) -> AsyncIterator[asyncpg.Connection]:
    """A scope for *reading* ``organization_id``'s rows: inside a tenant transaction of the
    same organisation that :func:`tenant_transaction` opened on ``conn``, the block's
    statements run in it as they are (no savepoint, no round trip: one transaction with the
    caller's other reads, READ COMMITTED as every tenant transaction: each statement sees
    what was committed when it began); anywhere else in a :func:`tenant_transaction` of
    their own, which also refuses a scope of another organisation.

    Why: a report status read was three tenant transactions (the report, its venue scope,
    its delivery) of four or five round trips each; in one transaction it is six round trips
    instead of nine (``loadtests.bench_http_scale``, README).

    Only for reads: a statement that fails aborts the caller's transaction with it. The
    record of open scopes trusts that nothing inside a scope ends its transaction by hand
    (``tests/db/test_tenancy.py`` checks that no SQL of the package does; one that did is met
    with :class:`TenantScopeError` at the next :func:`tenant_transaction` on the connection).

    Raises:
        asyncpg.InsufficientPrivilegeError: ``conn``'s transaction belongs to another tenant.
    """
    if _open_scopes.get(id(conn)) == organization_id and conn.is_in_transaction():
        yield conn
        return
    async with tenant_transaction(conn, organization_id):
        yield conn


_PLAIN_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""Organisation ids that are safe as a plain SQL literal (no quote, backslash or NUL): the
events' id rule (:mod:`stream_app.schemas.ids`), which every id reaching here obeys."""


async def _enter(conn: asyncpg.Connection, organization_id: str) -> None:
    """Bound the transaction's statements and fix its tenant (``set_config(..., true)`` is
    ``SET LOCAL``), then take the tenant role (after: only the application role may call
    ``wedding_enter_tenant``).

    One round trip: both statements in one simple-protocol query, the organisation id as a
    literal when it is a plain id (:data:`_PLAIN_ID`; anything else, which no valid id is,
    goes as a bound parameter in two round trips). Round trips per tenant transaction
    (``BEGIN``, entering, the statements, ``COMMIT``) 5 → 4 with one statement; four
    separate statements took 650-672 µs, two 494-524 µs (3,000 in a row, local PostgreSQL).
    """
    if _PLAIN_ID.fullmatch(organization_id):
        await conn.execute(
            f"SELECT set_config('statement_timeout', '{STATEMENT_TIMEOUT}', true),"
            f" set_config('temp_file_limit', '{TEMP_FILE_LIMIT}', true),"
            f" wedding_enter_tenant('{organization_id}'); SET LOCAL ROLE wedding_tenant"
        )
        return
    await conn.execute(
        "SELECT set_config('statement_timeout', $1, true),"
        " set_config('temp_file_limit', $2, true), wedding_enter_tenant($3)",
        STATEMENT_TIMEOUT,
        TEMP_FILE_LIMIT,
        organization_id,
    )
    await conn.execute("SET LOCAL ROLE wedding_tenant")


async def upsert_organization(conn: asyncpg.Connection, org: Organization) -> None:
    """Create or update an organisation (admin path, not tenant-scoped).

    Raises:
        ValueError: ``time_zone`` is not an IANA zone; ``name`` refused by
            :func:`check_name`.
    """
    check_time_zone(org.time_zone)
    check_name(org.name)
    await conn.execute(
        "INSERT INTO organizations (id, name, time_zone, currency) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,"
        " time_zone = EXCLUDED.time_zone, currency = EXCLUDED.currency",
        org.id,
        org.name,
        org.time_zone,
        org.currency,
    )


async def deleted_at(conn: asyncpg.Connection, organization_id: str) -> datetime | None:
    """When an organisation of this id was last deleted (its tombstone in
    ``deleted_organizations``, migration 026), or None. The owner's connection, or inside
    the organisation's tenant transaction (row-level security)."""
    found: datetime | None = await conn.fetchval(
        "SELECT deleted_at FROM deleted_organizations WHERE organization_id = $1",
        organization_id,
    )
    return found


async def upsert_venue(conn: asyncpg.Connection, organization_id: str, venue: Venue) -> None:
    """Create or update a venue of ``organization_id``.

    Raises:
        ValueError: ``name`` refused by :func:`check_name`.
    """
    check_name(venue.name)
    await conn.execute(
        "INSERT INTO venues (organization_id, id, name, capacity) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (organization_id, id) DO UPDATE SET name = EXCLUDED.name,"
        " capacity = EXCLUDED.capacity",
        organization_id,
        venue.id,
        venue.name,
        venue.capacity,
    )


async def fetch_organization(conn: asyncpg.Connection, organization_id: str) -> Organization:
    """Read one organisation within a tenant transaction.

    Raises:
        UnknownOrganizationError: no such organisation (with its deletion time when one of
            that id was deleted).
    """
    async with tenant_transaction(conn, organization_id):
        row = await conn.fetchrow(
            "SELECT id, name, time_zone, currency FROM organizations WHERE id = $1",
            organization_id,
        )
        gone = None if row is not None else await deleted_at(conn, organization_id)
    if row is None:
        error = UnknownOrganizationError(f"organization_id: {organization_id!r} does not exist")
        error.deleted_at = gone
        raise error
    return Organization(row["id"], row["name"], row["time_zone"], row["currency"].strip())


async def fetch_venues(conn: asyncpg.Connection, organization_id: str) -> list[Venue]:
    """The venues of ``organization_id``, by id (tenant transaction)."""
    async with tenant_transaction(conn, organization_id):
        rows = await conn.fetch(
            "SELECT id, name, capacity FROM venues WHERE organization_id = $1 ORDER BY id",
            organization_id,
        )
    return [Venue(r["id"], r["name"], r["capacity"]) for r in rows]
