"""``wedding-engine``: the one command line of the product.

Subcommands: ``services`` (local Kafka + PostgreSQL), ``init`` (topics + migrations),
``worker`` (a Faust worker), ``replay`` (the hotel data set to events), ``synth`` (load a
synthetic business history into PostgreSQL), ``report`` (request a report and wait for it),
``cancel`` (cancel a queued or running report), ``token`` (issue or revoke API tokens), ``audit
verify`` (recompute the audit log's hash chains), ``keys rotate`` (encryption keys), ``demo``
(all of it, end to end).

When ``KAFKA_BOOTSTRAP`` / ``POSTGRES_DSN`` are not set, they are read from the services
started by ``wedding-engine services up`` (``$WEDDING_STATE_DIR/services.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import re
import shlex
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError

from stream_app.errors import cut, printable
from stream_app.progress import Progress
from stream_app.schemas.ids import check_id
from stream_app.schemas.reports import REPORT_TYPES

log = logging.getLogger(__name__)


_services_hint: str | None = None
"""Why a refused connection is likely, when :func:`_load_service_env` found no running
services to read the connection settings from (printed with the error by :func:`main`)."""


NO_GUESSED_BROKER: dict[str, tuple[str, str]] = {
    "send": ("send events to", "nothing was sent"),
    "replay": ("send events to", "nothing was sent"),
    "dead-letters": ("read dead letters from", "nothing was read"),
}
"""Commands that write events to a broker, or read tenants' payloads from one, → (what they
do with it, what a refusal leaves undone): without ``KAFKA_BOOTSTRAP`` and without running
services for the folder they refuse to start rather than use the default address (whatever
broker listens on 127.0.0.1:9092 would take the events, or show its dead letters as this
deployment's)."""


def _guessed_broker(command: str) -> bool:
    """True (after saying so on stderr) when ``command`` would use the default broker
    address only because no connection settings were found (:data:`NO_GUESSED_BROKER`)."""
    refused = NO_GUESSED_BROKER.get(command)
    if refused and _services_hint and not os.environ.get("KAFKA_BOOTSTRAP"):
        what, done = refused
        print(
            f"error: {_services_hint}; `{command}` does not {what} a broker it"
            f" only guessed (the default 127.0.0.1:9092): {done}",
            file=sys.stderr,
        )
        return True
    return False


_user_kafka: str | None = None
"""``KAFKA_BOOTSTRAP`` as the user set it (None: unset, taken from the services if any)."""


def _load_service_env() -> None:
    """Fill KAFKA_BOOTSTRAP and the POSTGRES_*DSN logins from running local services when unset."""
    global _services_hint, _user_kafka
    _services_hint = None
    _user_kafka = os.environ.get("KAFKA_BOOTSTRAP") or None
    if (
        os.environ.get("KAFKA_BOOTSTRAP")
        and os.environ.get("POSTGRES_DSN")
        and os.environ.get("WEDDING_REDIS_URL")
    ):
        return
    from stream_app.devservices import manager

    state = manager.default_state_dir()
    found = manager.status(state)
    if not (os.environ.get("KAFKA_BOOTSTRAP") and os.environ.get("POSTGRES_DSN")):
        if found.settings is None:
            _services_hint = (
                f"no running services found for this folder ({state}/services.json): start them"
                " with `wedding-engine services up`, or run the command from the folder that"
                " started them, or set WEDDING_STATE_DIR to that folder's .state (or"
                " POSTGRES_DSN and KAFKA_BOOTSTRAP)"
            )
        elif not found.all_running:
            _services_hint = (
                f"the services of {state} are not all running (`wedding-engine services"
                " status`); start them with `wedding-engine services up`"
            )
    if found.settings is not None and found.all_running:
        os.environ.setdefault("KAFKA_BOOTSTRAP", found.settings.kafka_bootstrap)
        os.environ.setdefault("POSTGRES_DSN", found.settings.app_dsn)
        os.environ.setdefault("POSTGRES_SYSTEM_DSN", found.settings.system_dsn)
        os.environ.setdefault("POSTGRES_OWNER_DSN", found.settings.owner_dsn)
        if found.settings.redis_url:
            os.environ.setdefault("WEDDING_REDIS_URL", found.settings.redis_url)


def _cmd_init(_: argparse.Namespace) -> int:
    from stream_app.db.migrate import migrate
    from stream_app.settings import load_settings
    from stream_app.topics import prepare_topics

    s = load_settings()

    async def run() -> None:
        created = await prepare_topics(s)
        applied = await migrate(s.postgres_owner_dsn)
        print(f"topics created: {created or 'none (all exist)'}")
        print(f"migrations applied: {applied or 'none (up to date)'}")

    asyncio.run(run())
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    if args.web_port is not None:
        os.environ["WEDDING_WEB_PORT"] = str(args.web_port)
    if args.data_dir is not None:
        os.environ["WEDDING_DATA_DIR"] = str(args.data_dir)
    from stream_app.crypto.keys import check_master_key, load_master_keys
    from stream_app.db.migrate import check_worker_database, connect_login
    from stream_app.settings import check_production_secret, load_settings
    from stream_app.topics import prepare_topics

    s = load_settings()
    check_production_secret(s)  # before anything starts
    if load_master_keys().current.development:  # raises without a key outside dev mode
        print(
            "warning: development master key (WEDDING_DEV_MODE): files are not protected",
            file=sys.stderr,
        )

    async def preflight() -> None:
        await prepare_topics(s)
        await check_worker_database(s.postgres_dsn, s.postgres_system_dsn)
        conn = await connect_login(s.postgres_system_dsn, "POSTGRES_SYSTEM_DSN")
        try:
            await check_master_key(conn, load_master_keys())
        finally:
            await conn.close()

    asyncio.run(preflight())
    if s.offset_reset == "latest":
        from stream_app.lag import start_group_at_end
        from stream_app.topics import INPUT_TOPICS

        asyncio.run(start_group_at_end(s.kafka_bootstrap, s.app_id, list(INPUT_TOPICS)))
    from stream_app import statedir
    from stream_app.worker import EngineWorker, app

    tabledir = Path(app.conf.tabledir)
    statedir.lock_state(tabledir)  # one worker per data folder, held until the process ends
    try:
        cluster = asyncio.run(statedir.kafka_cluster_id(s.kafka_bootstrap))
    except KafkaError as exc:  # the broker is away: faust waits for it; nothing to compare
        log.warning("Kafka cluster id not read (%s): the data folder is not checked", exc)
        cluster = None
    statedir.check_cluster(tabledir, cluster, data_dir=s.data_dir)  # not another broker's
    from stream_app import runtime
    from stream_app.runtime.gc_tuning import tune

    runtime.install(s)  # faust/mode/aiokafka patches: before the worker starts, never at import
    tune(s.gc_gen0_threshold)  # last: freezes the heap built above
    worker = EngineWorker(app, loglevel=args.loglevel)
    worker.execute_from_commandline()
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from stream_app.lag import wait_for_lag_zero
    from stream_app.replay.produce import replay_hotel_bookings
    from stream_app.settings import load_settings
    from stream_app.topics import WEDDING_BOOKINGS

    if Path(args.path).is_file() and _guessed_broker("replay"):  # a bad path is said first
        return 2
    s = load_settings()
    with Progress("replay", "events", interval_s=s.progress_interval_s) as progress:
        summary = asyncio.run(
            replay_hotel_bookings(
                s,
                Path(args.path),
                source=args.source,
                load_history=not args.no_history,
                progress=progress,
            )
        )
    print(
        f"produced {summary.events} events ({summary.bookings} bookings, "
        f"{summary.cancellations} cancellations) in {summary.seconds:.1f} s; "
        f"history rows new: {summary.history_rows_new}, "
        f"not storable: {summary.history_rows_skipped}"
    )
    if args.wait:
        print(f"waiting until the workers of group {s.app_id!r} have folded every event...")
        with Progress("folded", "events", interval_s=s.progress_interval_s) as progress:
            took = asyncio.run(
                wait_for_lag_zero(
                    s.kafka_bootstrap, s.app_id, WEDDING_BOOKINGS, 1800, progress=progress
                )
            )
        print(f"all events are in the tables ({took:.0f} s)")
    return 0


def _check_org_id(name: str, value: str | None) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a valid organisation id."""
    if value is not None:
        check_id(name, value)


async def _require_organization(dsn: str, organization_id: str) -> None:
    """Raise ValueError when the organisation is not registered (a report would never run)."""
    import asyncpg

    from stream_app.db.tenancy import UnknownOrganizationError, fetch_organization

    conn = await asyncpg.connect(dsn)
    try:
        await fetch_organization(conn, organization_id)
    except UnknownOrganizationError as exc:
        if exc.deleted_at is not None:
            raise ValueError(exc.hint("--org", organization_id)) from None
        similar = await _case_matches([organization_id])
        raise ValueError(
            f"--org: no organisation {organization_id!r}{similar.get(organization_id, '')};"
            f" create it first: wedding-engine org {organization_id} --zone …"
        ) from None
    finally:
        await conn.close()


async def _case_matches(organizations: list[str]) -> dict[str, str]:
    """For each of ``organizations`` PostgreSQL knows under another case only, ``"; did you
    mean 'x'?"`` (asked as the owner: the application role sees one tenant at a time; empty
    when it cannot be asked)."""
    from stream_app.settings import load_settings

    try:
        conn = await asyncpg.connect(load_settings().postgres_owner_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return {}
    try:
        rows = await conn.fetch(
            "SELECT o.id, asked FROM organizations o JOIN unnest($1::text[]) AS asked"
            " ON lower(o.id) = lower(asked) AND o.id <> asked ORDER BY o.id",
            organizations,
        )
    except (OSError, asyncpg.PostgresError):
        return {}
    finally:
        await conn.close()
    return {r["asked"]: f"; did you mean {r['id']!r}?" for r in rows}


async def _require_new_report_id(dsn: str, organization_id: str, report_id: str) -> None:
    """Raise ValueError naming ``--report-id`` when the organisation already has a report of
    that id: the router would dead-letter the request at once (a report id is an idempotency
    key of its organisation) and the command would wait its whole ``--timeout`` for a status
    that never comes. (Two callers racing for a new id: one of them still waits it out.)"""
    import asyncpg

    from stream_app.db.reports import current_status

    conn = await asyncpg.connect(dsn)
    try:
        status = await current_status(conn, organization_id, report_id)
    finally:
        await conn.close()
    if status is not None:
        raise ValueError(
            f"--report-id: {report_id!r} already names a report of {organization_id!r}"
            f" (status {status}); a report id is used once: choose another, or leave it out"
        )


def _cmd_synth(args: argparse.Namespace) -> int:
    import asyncpg

    from stream_app.db.migrate import migrate
    from stream_app.settings import load_settings
    from stream_app.synthetic.generator import SynthConfig
    from stream_app.synthetic.load import load_synthetic

    _check_org_id("--org", args.org)
    config = SynthConfig(
        business=args.business,
        weddings=args.weddings,
        seed=args.seed,
        organization_id=args.org,
        start_year=args.start_year,
        years=args.years,
    )
    s = load_settings()
    # about 20 progress updates, in chunks of 500 to 20,000 weddings (memory ∝ chunk)
    chunk = min(20_000, max(500, config.weddings // 20))
    progress = Progress("synth", "weddings", interval_s=s.progress_interval_s)

    async def run() -> None:
        await migrate(s.postgres_owner_dsn)
        conn = await asyncpg.connect(s.postgres_owner_dsn)
        try:
            with progress:
                progress(0, config.weddings)
                summary = await load_synthetic(
                    conn,
                    config,
                    replace=args.replace,
                    chunk_weddings=chunk,
                    progress=lambda done: progress(done, config.weddings),
                )
        except asyncpg.PostgresError as exc:
            raise RuntimeError(f"database: {exc}") from exc
        finally:
            await conn.close()
        org = summary.organization
        print(
            f"organisation {org.id!r} ({org.name}, {org.time_zone}, {org.currency}): "
            f"{config.business}, seed {config.seed}, weddings {config.start_year}-"
            f"{config.start_year + config.years - 1} (history ends {config.as_of})"
        )
        for table, count in summary.rows.items():
            if count:
                print(f"  {table}: {count:,} rows")
        total = sum(summary.rows.values())
        print(f"loaded {total:,} rows in {summary.seconds:.1f} s")

    asyncio.run(run())
    return 0


def _date_arg(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None


DEFAULT_CURRENCY = "EUR"
"""An organisation's currency when ``org`` is not given ``--currency``."""

DEFAULT_TOKEN_TTL_S = 3600
"""``token --ttl`` when not given, seconds (capped at ``WEDDING_TOKEN_MAX_TTL_S``)."""

_REPORT_OPTIONS = {
    "output_formats": "--formats",
    "report_type": "--type",
    "date_from": "--from",
    "date_to": "--to",
    "priority": "--priority",
    "cache_strategy": "--cache",
    "report_id": "--report-id",
    "organization_id": "--org",
}
"""The ``wedding-engine report`` option of each field of the report request it sends."""


def _as_option(exc: ValueError) -> ValueError:
    """``exc`` naming the ``report`` option (``--formats: ...``) instead of the request's
    field (``$.output_formats: ...``); ``exc`` itself when it names no option's field."""
    found = re.match(r"\$\.([a-z_]+)[^:\s]*: ", str(exc))
    if found is None or found.group(1) not in _REPORT_OPTIONS:
        return exc
    return ValueError(f"{_REPORT_OPTIONS[found.group(1)]}: {str(exc)[found.end() :]}")


def cli_actor() -> str:
    """Who runs this command, for the audit log: ``cli:<OS user>`` (as a report's user id:
    characters outside ``[A-Za-z0-9._-]`` become ``_``)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (e.g. a bare container)
        user = f"uid{os.getuid()}"
    return "cli:" + re.sub(r"[^A-Za-z0-9._-]", "_", user)[:100]


def _cmd_report(args: argparse.Namespace) -> int:
    from stream_app.client import request_report_and_wait
    from stream_app.settings import load_settings

    if args.timeout <= 0:
        raise ValueError(f"--timeout: must be positive, got {args.timeout}")
    _check_org_id("--org", args.org)
    if args.report_id is not None:
        _check_id("--report-id", args.report_id)
    date_from = _date_arg("--from", args.date_from)
    date_to = _date_arg("--to", args.date_to)
    if date_to < date_from:
        raise ValueError(f"--to: {date_to} is before --from {date_from}")
    asyncio.run(_require_organization(load_settings().postgres_dsn, args.org))
    if args.report_id is not None:
        asyncio.run(_require_new_report_id(load_settings().postgres_dsn, args.org, args.report_id))

    try:
        status = asyncio.run(
            request_report_and_wait(
                load_settings(),
                organization_id=args.org,
                user_id=cli_actor(),
                report_type=args.type,
                date_from=date_from,
                date_to=date_to,
                output_formats=[f.strip() for f in args.formats.split(",")],
                timeout_s=args.timeout,
                priority=args.priority,
                cache_strategy=args.cache,
                report_id=args.report_id,
            )
        )
    except ValueError as exc:  # the request's check names its field: $.output_formats
        raise _as_option(exc) from None
    print(
        f"report {status.report_id}: {status.status}"
        + (f" ({status.error})" if status.error else "")
    )
    for a in status.artifacts:
        print(f"  {a.format}: {a.uri} ({a.size_bytes} bytes, {a.rows} rows, sha256 {a.sha256})")
    return 0 if status.status == "completed" else 1


def _cmd_cancel(args: argparse.Namespace) -> int:
    from stream_app.client import cancel_report
    from stream_app.settings import load_settings

    _check_id("--org", args.org)
    _check_id("REPORT_ID", args.report_id)
    outcome = asyncio.run(
        cancel_report(load_settings(), args.org, args.report_id, actor=cli_actor())
    )
    if outcome is None:
        print(f"error: no report {args.report_id!r} in {args.org!r}", file=sys.stderr)
        return 1
    if outcome != "cancelled":
        print(
            f"error: report {args.report_id} is {outcome}: only a queued or running report can"
            " be cancelled; nothing was changed",
            file=sys.stderr,
        )
        return 1
    print(f"report {args.report_id}: cancelled")
    return 0


def _check_id(option: str, value: str) -> str:
    """``value`` if it satisfies the id rule (:mod:`stream_app.schemas.ids`), else ValueError."""
    return check_id(option, value)


def _check_name(name: str) -> None:
    """ValueError naming ``--name`` when ``name`` cannot be a display name."""
    from stream_app.db.tenancy import check_name

    try:
        check_name(name)
    except ValueError as exc:
        raise ValueError(f"--name: {str(exc).removeprefix('name: ')}") from None


def _cmd_org(args: argparse.Namespace) -> int:
    """Create or update an organisation in PostgreSQL (its zone and default currency)."""
    import asyncpg

    from stream_app.db.tenancy import (
        Organization,
        check_time_zone,
        deleted_at,
        upsert_organization,
    )
    from stream_app.schemas.base import check_currency
    from stream_app.settings import load_settings

    org = Organization(
        id=_check_id("ORG", args.org),
        name=args.org if args.name is None else args.name,  # --name '' is refused
        time_zone=args.zone,
        currency=DEFAULT_CURRENCY if args.currency is None else args.currency,
    )
    try:
        check_currency(org.currency)
    except ValueError as exc:
        raise ValueError(f"--currency: {str(exc).removeprefix('$.currency: ')}") from None
    try:
        check_time_zone(org.time_zone)
    except ValueError as exc:
        raise ValueError(f"--zone: {str(exc).removeprefix('time_zone: ')}") from None
    _check_name(org.name)

    async def run() -> Any:
        conn = await asyncpg.connect(load_settings().postgres_owner_dsn)
        try:
            async with conn.transaction():
                before = await conn.fetchrow(
                    "SELECT name, btrim(currency) AS currency FROM organizations WHERE id = $1",
                    org.id,
                )
                gone = None if before is not None else await deleted_at(conn, org.id)
                if gone is not None:
                    raise ValueError(
                        f"ORG: {org.id!r} is the id of an organisation deleted at"
                        f" {gone.isoformat()}; the live tables (venue metrics, payments,"
                        " client and supplier rows) are keyed by organisation id and keep"
                        " its rows, so a new organisation of this id would read them:"
                        " choose another id"
                    )
                await upsert_organization(conn, org)
            return before
        finally:
            await conn.close()

    before = asyncio.run(run())
    print(f"organisation {org.id}: {org.name}, {org.time_zone}, {org.currency}")
    _warn_replaced(
        before,
        {
            "name": (org.name, args.name is not None),
            "currency": (org.currency, args.currency is not None),
        },
    )
    return 0


def _cmd_offboard(args: argparse.Namespace) -> int:
    """Show what an organisation holds; with ``--yes`` delete it (:mod:`stream_app.offboarding`)."""
    import asyncpg

    from stream_app import offboarding
    from stream_app.settings import load_settings

    org = _check_id("ORG", args.org)
    s = load_settings()
    actor = cli_actor()

    async def run() -> tuple[offboarding.Footprint, datetime | None]:
        conn = await asyncpg.connect(s.postgres_owner_dsn)
        try:
            found = await offboarding.footprint(conn, org, s.artifact_dir)
            if not args.yes:
                return found, None
            return found, await offboarding.delete_organization(conn, org, actor, found)
        finally:
            await conn.close()

    found, deleted = asyncio.run(run())
    rows = ", ".join(f"{n:,} {table}" for table, n in found.rows.items())
    print(f"organisation {org}: {rows}; {found.files:,} files ({found.file_bytes:,} bytes)")
    if deleted is None:
        print("nothing deleted: run again with --yes to delete it (this cannot be undone)")
        return 1
    files, size = offboarding.remove_files(s.artifact_dir, org)
    print(
        f"deleted at {deleted.isoformat()}: its PostgreSQL rows, {files:,} files"
        f" ({size:,} bytes); its tokens and download links are refused on every worker"
        " (within WEDDING_REVOCATION_CACHE_S) and the id is not registered again. Kept: its"
        " audit chain, its rows in the live tables (changelogs, RocksDB) and its events in"
        " the input topics until their retention"
    )
    return 0


def _warn_replaced(before: Any, now: dict[str, tuple[Any, Any]]) -> None:
    """Say on stderr which stored values an update replaced by a default because their option
    was left out (a trial user re-ran ``venue`` to rename one and lost its capacity).

    Args:
        before: the stored row before the update (None: it was created).
        now: field → (value written, whether its option was given).
    """
    if before is None:
        return
    for name, (value, given) in now.items():
        old = before[name]
        if not given and old != value:
            shown = "unknown" if value is None else value
            print(
                f"warning: --{name} was not given: {name} {old!r} replaced by the default"
                f" {shown!r} (each call sets every field; give --{name}"
                f" {shlex.quote(str(old))} to keep it)",
                file=sys.stderr,
            )


def _cmd_venue(args: argparse.Namespace) -> int:
    """Create or update a venue of an existing organisation (capacity: events per day)."""
    import asyncpg

    from stream_app.db.tenancy import Venue, upsert_venue
    from stream_app.settings import load_settings

    org = _check_id("ORG", args.org)
    venue = Venue(
        id=_check_id("VENUE", args.venue),
        name=args.venue if args.name is None else args.name,  # --name '' is refused
        capacity=args.capacity,
    )
    _check_name(venue.name)
    if venue.capacity is not None and not 0 <= venue.capacity <= 2**31 - 1:
        raise ValueError(f"--capacity: must be between 0 and {2**31 - 1}, got {venue.capacity}")

    async def run() -> Any:
        conn = await asyncpg.connect(load_settings().postgres_owner_dsn)
        try:
            async with conn.transaction():
                before = await conn.fetchrow(
                    "SELECT name, capacity FROM venues WHERE organization_id = $1 AND id = $2",
                    org,
                    venue.id,
                )
                await upsert_venue(conn, org, venue)
            return before
        finally:
            await conn.close()

    try:
        before = asyncio.run(run())
    except asyncpg.ForeignKeyViolationError:
        raise ValueError(
            f"ORG: no organisation {org!r}; create it first: wedding-engine org {org} --zone …"
        ) from None
    capacity = "unknown" if venue.capacity is None else venue.capacity
    print(f"venue {org}/{venue.id}: {venue.name}, capacity {capacity}")
    _warn_replaced(
        before,
        {
            "name": (venue.name, args.name is not None),
            "capacity": (venue.capacity, args.capacity is not None),
        },
    )
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    """Issue a token (recorded in ``tokens``, audited) or revoke tokens of an organisation."""
    import asyncpg

    from stream_app import tokens
    from stream_app.db.tenancy import fetch_venues
    from stream_app.settings import check_jwt_secret, load_settings

    _check_id("--org", args.org)
    s = load_settings()
    actor = cli_actor()
    if args.action == "revoke":
        if (args.jti is None) == (args.before is None):
            raise ValueError("revoke: give exactly one of --jti and --before")
        if args.jti is not None and not (
            0 < len(args.jti) <= 128 and args.jti.isascii() and args.jti.isprintable()
        ):
            raise ValueError("--jti: a token id is 1-128 printable ASCII characters")
        before = None
        if args.before is not None:
            try:
                before = datetime.fromisoformat(args.before)
            except ValueError:
                raise ValueError(f"--before: {args.before!r} is not ISO 8601") from None
            try:
                tokens.check_revocation_time(before)
            except ValueError as exc:
                raise ValueError(f"--before: {exc}") from None

        async def revoke() -> int:
            conn = await asyncpg.connect(s.postgres_dsn)
            try:
                return await tokens.revoke(
                    conn, s, organization_id=args.org, actor=actor, jti=args.jti,
                    issued_before=before,
                )  # fmt: skip
            except asyncpg.ForeignKeyViolationError:  # a fresh user's traceback
                raise ValueError(f"--org: no organisation {args.org!r}") from None
            finally:
                await conn.close()

        count = asyncio.run(revoke())
        print(
            f"revoked ({count} recorded token(s)); in force on every worker within"
            f" {s.revocation_cache_s:g} s"
        )
        if args.jti is not None and count == 0:  # kept: it holds for a token minted elsewhere
            # exit 1: a script checking the status believed a typo had revoked its token (a
            # new user's trial: a jti copied with its trailing comma)
            print(
                f"warning: --jti: no token of {args.org!r} recorded with jti {args.jti!r}"
                " (a typo revokes nothing you issued; `token issue` prints each jti)",
                file=sys.stderr,
            )
            return 1
        return 0
    _check_id("--user", args.user)
    venues = [_check_id("--venue", v) for v in args.venue] if args.venue else None
    check_jwt_secret(s)  # a token signed with the public secret: every worker refuses it
    # an hour, or the deployment's longest lifetime when that is shorter (the default is not
    # refused by the deployment's own setting: a trial user's finding)
    ttl = args.ttl if args.ttl is not None else min(DEFAULT_TOKEN_TTL_S, s.token_max_ttl_s)

    async def issue() -> str:
        conn = await asyncpg.connect(s.postgres_dsn)
        try:
            issued = await tokens.issue(
                conn, s, organization_id=args.org, subject=args.user, role=args.role,
                ttl_seconds=ttl, venues=venues, actor=actor,
            )  # fmt: skip
            known = {v.id for v in await fetch_venues(conn, args.org)} if venues else set()
        finally:
            await conn.close()
        print(f"# jti {issued.jti}", file=sys.stderr)  # alone: copied whole by `awk '{print $3}'`
        print(f"# expires {issued.expires_at.isoformat()}", file=sys.stderr)
        for venue in sorted(set(venues or ()) - known):
            # a typo gives a token that reads nothing (a trial user's finding): said, not
            # refused (a venue may be registered after its token)
            print(
                f"warning: --venue: {venue!r} is not a venue of {args.org!r}: the token reads"
                f" nothing of it until `wedding-engine venue {args.org} {venue}` registers it",
                file=sys.stderr,
            )
        return issued.token

    print(asyncio.run(issue()))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    """``audit verify [--org ORG]``: recompute the hash chains of the audit log.

    Prints one line per organisation: the rows checked and the head (``seq``, ``row_hash``:
    keep it elsewhere to notice a truncated or recomputed chain later) when intact, else the
    first bad row (``seq``, ``id``) and what is wrong with it. Exit 0 when every chain is
    intact, 1 when one is not. Reads with the system login (``POSTGRES_SYSTEM_DSN``), which
    sees every chain; the application login sees none outside a tenant scope.
    """
    import asyncpg

    from stream_app.db.audit_events import SYSTEM_ORG, ChainReport, verify_chains
    from stream_app.settings import load_settings

    if args.org != SYSTEM_ORG:
        _check_org_id("--org", args.org)

    async def run() -> list[ChainReport]:
        conn = await asyncpg.connect(load_settings().postgres_system_dsn)
        try:
            return await verify_chains(conn, args.org)
        except asyncpg.PostgresError as exc:
            raise RuntimeError(f"database: {exc}") from exc
        finally:
            await conn.close()

    reports = asyncio.run(run())
    if not reports:
        print("no audit rows")
    broken = 0
    for r in reports:
        f = r.fault
        if f is None:
            print(
                f"{r.organization_id}: {r.rows_checked} rows checked, chain intact"
                f" (head seq {r.head_seq}, row_hash {r.head_hash})"
            )
        else:
            broken += 1
            print(
                f"{r.organization_id}: chain BROKEN at seq {f.seq} (id {f.row_id}): {f.kind}:"
                f" {f.reason}; {r.rows_checked} rows before it are intact"
            )
    return 1 if broken else 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from stream_app.crypto.keys import load_master_keys
    from stream_app.crypto.rotation import rotate
    from stream_app.settings import load_settings

    if args.keys_command == "seal-existing":
        from stream_app.crypto.backfill import seal_existing

        s = load_settings()
        done = asyncio.run(
            seal_existing(
                s.postgres_dsn, load_master_keys(), s.artifact_dir, system_dsn=s.postgres_system_dsn
            )
        )
        print(
            f"files sealed: {done.files_sealed}, already sealed: {done.files_already},"
            f" skipped: {done.files_skipped}; schedules sealed: {done.schedules_sealed}"
        )
        return 0

    env = dict(os.environ)
    if args.previous_key_file is not None:
        env["WEDDING_MASTER_KEY_PREVIOUS_FILE"] = str(args.previous_key_file)
        env.pop("WEDDING_MASTER_KEY_PREVIOUS", None)
    masters = load_master_keys(env)
    if args.master and masters.previous is None:
        raise ValueError(
            "--master: give the previous master key (WEDDING_MASTER_KEY_PREVIOUS or"
            " --previous-key-file)"
        )
    if masters.current.development:
        print("warning: using the development master key (WEDDING_DEV_MODE)", file=sys.stderr)
    s = load_settings()
    results = asyncio.run(
        rotate(
            s.postgres_dsn,
            masters,
            organization_id=args.org,
            data=args.data or not args.master,
            master=args.master,
            system_dsn=s.postgres_system_dsn,
            actor=cli_actor(),
        )
    )
    for r in results:
        parts = []
        if r.new_version is not None:
            parts.append(f"data key version {r.new_version}")
        if args.master:
            parts.append(f"{r.rewrapped} key(s) re-wrapped under {masters.current.key_id}")
        print(f"{r.organization_id}: {', '.join(parts)}")
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    from stream_app.replay.send import SendError, keyed_events, send_events
    from stream_app.settings import load_settings
    from stream_app.topics import WEDDING_BOOKINGS

    try:
        if args.file == "-":
            events = keyed_events(args.topic, sys.stdin.buffer)
        else:
            with Path(args.file).open("rb") as fh:
                events = keyed_events(args.topic, fh)
    except SendError as exc:
        # the line's own field names are echoed: no terminal escapes, no 200 KB line
        print(f"send: {cut(printable(str(exc)), 2_000)} (nothing was sent)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"send: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if _guessed_broker("send"):  # after the file is checked: its errors come first
        return 2
    s = load_settings()
    sent = asyncio.run(send_events(s.kafka_bootstrap, args.topic, events))
    print(f"sent {sent} event(s) to {args.topic}")
    orgs = sorted({key.decode().split("/", 1)[0] for key, _ in events})
    unregistered = asyncio.run(_unregistered(s.postgres_dsn, orgs))
    unknown = [org for org, gone in unregistered if gone is None]
    for org, gone in unregistered:
        if gone is not None:  # an attacker round: the warning suggested registering it
            print(
                f"warning: organisation {org!r} was deleted at {gone.isoformat()}: its events"
                " are folded into live rows nobody can read, and its id is not registered again",
                file=sys.stderr,
            )
    similar = asyncio.run(_case_matches(unknown)) if unknown else {}
    for org in unknown:
        # the live tables take any organisation's events; a typo makes a tenant nobody can
        # read (a trial user's finding), so it is said, not refused
        print(
            f"warning: organisation {org!r} is not registered{similar.get(org, '')}: its"
            " events are in the live tables, but no token can be issued for it until"
            f" `wedding-engine org {org} --zone …` registers it",
            file=sys.stderr,
        )
    if args.topic == WEDDING_BOOKINGS:
        venues = _venues_of(events, set(orgs) - set(unknown))
        for org, venue in asyncio.run(_unregistered_venues(s.postgres_dsn, venues)):
            # reports read registered venues: a typo in venue_id made revenue vanish from the
            # monthly summary while the payments summary counted it (a new user's trial)
            print(
                f"warning: venue {venue!r} of {org!r} is not registered: its bookings are in"
                " the live tables (venue metrics, summaries) but no report shows them until"
                f" `wedding-engine venue {org} {venue}` registers it",
                file=sys.stderr,
            )
    return 0


def _venues_of(events: list[tuple[bytes, bytes]], organizations: set[str]) -> dict[str, set[str]]:
    """The venue ids booking ``events`` name, by organisation (of ``organizations`` only)."""
    import orjson

    found: dict[str, set[str]] = {}
    for _, value in events:
        event = orjson.loads(value)
        org, venue = event.get("organization_id"), event.get("venue_id")
        if org in organizations and isinstance(venue, str):
            found.setdefault(org, set()).add(venue)
    return found


async def _unregistered_venues(dsn: str, venues: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(organisation, venue)`` of ``venues`` PostgreSQL does not know, sorted (none when it
    cannot be asked: sending needs only the broker)."""
    import asyncpg

    from stream_app.db.tenancy import fetch_venues

    if not venues:
        return []
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return []
    missing: list[tuple[str, str]] = []
    try:
        for org, ids in sorted(venues.items()):
            known = {v.id for v in await fetch_venues(conn, org)}
            missing += [(org, v) for v in sorted(ids - known)]
    except (OSError, asyncpg.PostgresError):
        return []
    finally:
        await conn.close()
    return missing


async def _unregistered(dsn: str, organizations: list[str]) -> list[tuple[str, datetime | None]]:
    """Those of ``organizations`` PostgreSQL does not know, each with the time an
    organisation of its id was deleted (None: never registered); none when PostgreSQL cannot
    be asked (sending needs only the broker)."""
    import asyncpg

    from stream_app.db.tenancy import UnknownOrganizationError, fetch_organization

    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return []
    unknown = []
    try:
        for org in organizations:
            try:
                await fetch_organization(conn, org)
            except UnknownOrganizationError as exc:
                unknown.append((org, exc.deleted_at))
    except (OSError, asyncpg.PostgresError):  # e.g. a database not set up: nothing to say
        return []
    finally:
        await conn.close()
    return unknown


def _at_least_one(value: str) -> int:
    """An option's integer value, at least 1 (argparse names the option in its error)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _cmd_dead_letters(args: argparse.Namespace) -> int:
    from stream_app.deadletters import describe, read_dead_letters
    from stream_app.settings import load_settings

    _check_org_id("--organization", args.organization)
    if _guessed_broker("dead-letters"):
        return 2
    s = load_settings()
    letters = asyncio.run(
        read_dead_letters(s.kafka_bootstrap, limit=args.limit, organization=args.organization)
    )
    for letter in letters:
        print("\n".join(describe(letter)))
    print(f"{len(letters)} dead-letter record(s) shown")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from stream_app.demo import run_demo

    os.environ.setdefault("WEDDING_DEV_MODE", "1")  # the demo runs on development keys

    return run_demo(Path(args.path), keep_services=args.keep_services)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    from stream_app.topics import INPUT_TOPICS

    p = argparse.ArgumentParser(prog="wedding-engine", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "services", help="up|down|status of the local Kafka, PostgreSQL and Redis", add_help=False
    )
    sub.add_parser("init", help="create topics and apply database migrations")
    w = sub.add_parser("worker", help="run a Faust worker (agents, tables, HTTP)")
    w.add_argument("--web-port", type=int, default=None)
    w.add_argument("--data-dir", type=Path, default=None)
    w.add_argument("--loglevel", default="warning")
    r = sub.add_parser("replay", help="produce the hotel booking data set as booking events")
    r.add_argument("path", help="hotel_bookings.csv or .csv.gz")
    r.add_argument("--source", default=None, help="name event ids derive from (default: file name)")
    r.add_argument("--no-history", action="store_true", help="do not load PostgreSQL history")
    r.add_argument(
        "--wait",
        action="store_true",
        help="then wait until the worker group has folded every event into the tables",
    )
    sy = sub.add_parser("synth", help="load a synthetic business history into PostgreSQL")
    sy.add_argument("--business", required=True, choices=["photography", "catering", "planner"])
    sy.add_argument("--weddings", type=int, required=True, help="1,000 to 1,000,000")
    sy.add_argument("--seed", type=int, default=1, help="same seed, same rows")
    sy.add_argument("--org", default=None, help="organisation id (default synth-<business>)")
    sy.add_argument("--start-year", type=int, default=2023, help="first year of weddings")
    sy.add_argument("--years", type=int, default=3, help="consecutive years (2 to 10)")
    sy.add_argument("--replace", action="store_true", help="delete the organisation first")
    rep = sub.add_parser("report", help="request a report and wait for its final status")
    rep.add_argument("--org", required=True)
    rep.add_argument(
        "--type",
        default="monthly_booking_summary",
        choices=sorted(REPORT_TYPES),
        help="report type",
    )
    rep.add_argument("--from", dest="date_from", required=True, help="YYYY-MM-DD (local)")
    rep.add_argument("--to", dest="date_to", required=True, help="YYYY-MM-DD (local, inclusive)")
    rep.add_argument(
        "--formats", default="csv,json", help="comma-separated: csv,json,excel,pdf,powerpoint"
    )
    rep.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait (default %(default)s)"
    )
    rep.add_argument("--priority", default="normal", choices=["low", "normal", "high", "critical"])
    rep.add_argument("--cache", default="use_cache", choices=["use_cache", "refresh", "skip"])
    rep.add_argument("--report-id", default=None, help="the report's id (default a new UUID)")
    c = sub.add_parser("cancel", help="cancel a queued or running report")
    c.add_argument("--org", required=True)
    c.add_argument("report_id")
    o = sub.add_parser("org", help="create or update an organisation (tenant)")
    o.add_argument("org", metavar="ORG")
    o.add_argument("--zone", required=True, help="IANA time zone, e.g. Europe/Lisbon")
    o.add_argument(
        "--currency", default=None, help=f"default ISO 4217 currency ({DEFAULT_CURRENCY})"
    )
    o.add_argument("--name", default=None, help="display name (default: the id)")
    ob = sub.add_parser(
        "offboard",
        help="show what an organisation holds; with --yes delete it (rows, files, tokens, links)",
    )
    ob.add_argument("org", metavar="ORG")
    ob.add_argument("--yes", action="store_true", help="delete it (default: only show)")
    v = sub.add_parser("venue", help="create or update a venue of an organisation")
    v.add_argument("org", metavar="ORG")
    v.add_argument("venue", metavar="VENUE")
    v.add_argument("--capacity", type=int, default=None, help="events per day (default unknown)")
    v.add_argument("--name", default=None, help="display name (default: the id)")
    t = sub.add_parser(
        "token", help="issue an API token (recorded, audited) or revoke an organisation's tokens"
    )
    t.add_argument("action", nargs="?", default="issue", choices=["issue", "revoke"])
    t.add_argument("--org", required=True)
    t.add_argument("--user", default="dev", help="the token's subject")
    t.add_argument("--role", default="viewer", choices=["viewer", "analyst", "admin"])
    t.add_argument("--venue", action="append", help="limit the token to this venue (repeatable)")
    t.add_argument(
        "--ttl",
        type=int,
        default=None,
        help="seconds (default: an hour, or WEDDING_TOKEN_MAX_TTL_S when shorter; at most it)",
    )
    t.add_argument("--jti", default=None, help="revoke: the token id")
    t.add_argument(
        "--before", default=None, help="revoke: every token issued before this ISO 8601 time"
    )
    au = sub.add_parser("audit", help="the hash-chained audit log")
    au_sub = au.add_subparsers(dest="audit_command", required=True)
    av = au_sub.add_parser(
        "verify", help="recompute every chain; exit 1 naming the first bad row of a chain"
    )
    av.add_argument("--org", default=None, help="only this organisation's chain")
    k = sub.add_parser("keys", help="encryption keys: rotate data keys or the master key")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kr = ksub.add_parser("rotate", help="new data-key versions and/or re-wrap under a new master")
    kr.add_argument("--org", default=None, help="one organisation (default: all)")
    kr.add_argument("--data", action="store_true", help="new data-key version (the default)")
    kr.add_argument(
        "--master",
        action="store_true",
        help="re-wrap every data key under WEDDING_MASTER_KEY (previous key needed)",
    )
    kr.add_argument(
        "--previous-key-file",
        type=Path,
        default=None,
        help="file with the previous master key (base64; else WEDDING_MASTER_KEY_PREVIOUS)",
    )
    ksub.add_parser(
        "seal-existing",
        help="encrypt artifact files and delivery secrets stored before encryption at rest",
    )
    se = sub.add_parser(
        "send",
        help="produce events (JSON, one per line) to an input topic, validated first",
        description="Produce events to an input topic: one JSON object per line (JSON Lines),"
        " every line validated against the topic's schema before anything is sent; a bad"
        " line is refused with its line number, the field and the reason, and nothing is"
        " sent. Each event is keyed as its agent expects (organization_id/<entity>). Events"
        " of an organisation belong on the topic of their kind: a booking event on"
        " wedding-bookings, a payment on payment-events.",
    )
    se.add_argument("topic", choices=INPUT_TOPICS)
    se.add_argument("file", nargs="?", default="-", help="JSON Lines file (default: stdin)")
    dl = sub.add_parser(
        "dead-letters", help="the newest dead-letter records with their field and reason"
    )
    dl.add_argument(
        "--limit", type=_at_least_one, default=20, help="records shown (the newest; >= 1)"
    )
    dl.add_argument(
        "--organization",
        "--organisation",
        "--org",
        dest="organization",
        default=None,
        help="only this organisation's (named by the key or the value; values withheld where"
        " the two disagree)",
    )
    d = sub.add_parser("demo", help="services up, worker, replay, report, services down")
    d.add_argument("path", nargs="?", default="../shared/data/hotel_bookings.csv.gz")
    d.add_argument("--keep-services", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wedding-engine`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["services"]:
        from stream_app.devservices.cli import main as services_main

        return services_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command != "demo":
        _load_service_env()
    handlers = {
        "init": _cmd_init,
        "worker": _cmd_worker,
        "replay": _cmd_replay,
        "synth": _cmd_synth,
        "report": _cmd_report,
        "cancel": _cmd_cancel,
        "token": _cmd_token,
        "demo": _cmd_demo,
        "org": _cmd_org,
        "offboard": _cmd_offboard,
        "venue": _cmd_venue,
        "audit": _cmd_audit,
        "keys": _cmd_keys,
        "dead-letters": _cmd_dead_letters,
        "send": _cmd_send,
    }
    try:
        return handlers[args.command](args)
    except BrokenPipeError:
        # the reader of stdout left (`wedding-engine report … | head -1`): nothing to say to
        # it; stdout is pointed at /dev/null so that the interpreter's own flush at exit
        # does not fail again (the Python documentation's recipe, "Note on SIGPIPE")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KafkaConnectionError as exc:
        if _user_kafka:  # set by the user: that address is what is wrong, not the services
            print(
                f"error: cannot reach Kafka at {_user_kafka} (KAFKA_BOOTSTRAP): {exc}",
                file=sys.stderr,
            )
            return 2
        if _services_hint is not None:
            print(f"error: {_services_hint} ({exc})", file=sys.stderr)
            return 2
        print(
            f"error: {exc}. Is Kafka running? Start it with 'wedding-engine services up' "
            "(with the same WEDDING_STATE_DIR) or set KAFKA_BOOTSTRAP.",
            file=sys.stderr,
        )
        return 2
    except asyncpg.UndefinedTableError as exc:  # a database nobody ran the migrations on
        print(
            f"error: {exc}: the database is not set up; run `wedding-engine init` (topics and"
            " migrations) first",
            file=sys.stderr,
        )
        return 2
    except ConnectionError as exc:  # refused: say where the settings were looked for
        hint = f"{_services_hint} ({exc})" if _services_hint is not None else str(exc)
        print(f"error: {hint}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TimeoutError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
