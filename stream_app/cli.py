"""``wedding-engine``: the one command line of the product.

Subcommands: ``services`` (local Kafka + PostgreSQL), ``init`` (topics + migrations),
``worker`` (a Faust worker), ``replay`` (the hotel data set to events), ``synth`` (load a
synthetic business history into PostgreSQL), ``report`` (request a report and wait for it),
``cancel`` (cancel a queued or running report), ``token`` (issue or revoke API tokens), ``demo``
(all of it, end to end).

When ``KAFKA_BOOTSTRAP`` / ``POSTGRES_DSN`` are not set, they are read from the services
started by ``wedding-engine services up`` (``$WEDDING_STATE_DIR/services.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from datetime import date, datetime
from pathlib import Path

from aiokafka.errors import KafkaConnectionError

from stream_app.schemas.reports import REPORT_TYPES


def _load_service_env() -> None:
    """Fill KAFKA_BOOTSTRAP/POSTGRES_DSN from running local services when unset."""
    if (
        os.environ.get("KAFKA_BOOTSTRAP")
        and os.environ.get("POSTGRES_DSN")
        and os.environ.get("WEDDING_REDIS_URL")
    ):
        return
    from stream_app.devservices import manager

    found = manager.status(None)
    if found.settings is not None and found.all_running:
        os.environ.setdefault("KAFKA_BOOTSTRAP", found.settings.kafka_bootstrap)
        os.environ.setdefault("POSTGRES_DSN", found.settings.postgres_dsn)
        if found.settings.redis_url:
            os.environ.setdefault("WEDDING_REDIS_URL", found.settings.redis_url)


def _cmd_init(_: argparse.Namespace) -> int:
    from stream_app.db.migrate import migrate
    from stream_app.settings import load_settings
    from stream_app.topics import ensure_topics

    s = load_settings()

    async def run() -> None:
        created = await ensure_topics(s.kafka_bootstrap, s.topic_partitions)
        applied = await migrate(s.postgres_dsn)
        print(f"topics created: {created or 'none (all exist)'}")
        print(f"migrations applied: {applied or 'none (up to date)'}")

    asyncio.run(run())
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    if args.web_port is not None:
        os.environ["WEDDING_WEB_PORT"] = str(args.web_port)
    if args.data_dir is not None:
        os.environ["WEDDING_DATA_DIR"] = str(args.data_dir)
    from stream_app.settings import check_production_secret, load_settings

    check_production_secret(load_settings())  # before anything starts
    _cmd_init(args)
    s = load_settings()
    if s.offset_reset == "latest":
        from stream_app.lag import start_group_at_end
        from stream_app.topics import INPUT_TOPICS

        asyncio.run(start_group_at_end(s.kafka_bootstrap, s.app_id, list(INPUT_TOPICS)))
    from faust import Worker

    from stream_app import statedir
    from stream_app.worker import app

    tabledir = Path(app.conf.tabledir)
    statedir.lock_state(tabledir)  # one worker per data folder, held until the process ends
    statedir.open_state(tabledir)  # after a crash: rebuilt from the changelog
    from stream_app.gc_tuning import tune

    tune(s.gc_gen0_threshold)
    worker = Worker(app, loglevel=args.loglevel)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code in (0, None) and worker.crash_reason is None:
            statedir.mark_clean(tabledir)
        raise
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from stream_app.lag import wait_for_lag_zero
    from stream_app.replay.produce import replay_hotel_bookings
    from stream_app.settings import load_settings
    from stream_app.topics import WEDDING_BOOKINGS

    s = load_settings()
    summary = asyncio.run(
        replay_hotel_bookings(
            s, Path(args.path), source=args.source, load_history=not args.no_history
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
        took = asyncio.run(wait_for_lag_zero(s.kafka_bootstrap, s.app_id, WEDDING_BOOKINGS, 1800))
        print(f"all events are in the tables ({took:.0f} s)")
    return 0


def _check_org_id(name: str, value: str | None) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a valid organisation id."""
    if value is not None and not re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", value):
        raise ValueError(
            f"{name}: {value!r} is not an id (1-128 of letters, digits, '.', '_', ':', '-')"
        )


async def _require_organization(dsn: str, organization_id: str) -> None:
    """Raise ValueError when the organisation is not registered (a report would never run)."""
    import asyncpg

    from stream_app.db.tenancy import UnknownOrganizationError, fetch_organization

    conn = await asyncpg.connect(dsn)
    try:
        await fetch_organization(conn, organization_id)
    except UnknownOrganizationError as exc:
        raise ValueError(f"--org: {exc}") from None
    finally:
        await conn.close()


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

    def progress(done: int) -> None:
        print(f"  {done:,} / {config.weddings:,} weddings", flush=True)

    async def run() -> None:
        await migrate(s.postgres_dsn)
        conn = await asyncpg.connect(s.postgres_dsn)
        try:
            summary = await load_synthetic(conn, config, replace=args.replace, progress=progress)
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


def _cmd_report(args: argparse.Namespace) -> int:
    from stream_app.client import request_report_and_wait
    from stream_app.settings import load_settings

    if args.timeout <= 0:
        raise ValueError(f"--timeout: must be positive, got {args.timeout}")
    _check_org_id("--org", args.org)
    asyncio.run(_require_organization(load_settings().postgres_dsn, args.org))

    status = asyncio.run(
        request_report_and_wait(
            load_settings(),
            organization_id=args.org,
            report_type=args.type,
            date_from=_date_arg("--from", args.date_from),
            date_to=_date_arg("--to", args.date_to),
            output_formats=args.formats.split(","),
            timeout_s=args.timeout,
            priority=args.priority,
            cache_strategy=args.cache,
        )
    )
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

    outcome = asyncio.run(cancel_report(load_settings(), args.org, args.report_id))
    if outcome is None:
        print(f"error: no report {args.report_id!r} in {args.org!r}", file=sys.stderr)
        return 1
    print(f"report {args.report_id}: {outcome}")
    return 0 if outcome == "cancelled" else 1


_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
"""The event schemas' identifier rule (``stream_app.schemas.base.Identifier``)."""


def _check_id(option: str, value: str) -> str:
    if not _ID.match(value):
        raise ValueError(
            f"{option}: 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-', got {value!r}"
        )
    return value


def _cmd_org(args: argparse.Namespace) -> int:
    """Create or update an organisation in PostgreSQL (its zone and default currency)."""
    import asyncpg

    from stream_app.db.tenancy import Organization, check_time_zone, upsert_organization
    from stream_app.schemas.base import check_currency
    from stream_app.settings import load_settings

    org = Organization(
        id=_check_id("ORG", args.org),
        name=args.name or args.org,
        time_zone=args.zone,
        currency=args.currency,
    )
    try:
        check_currency(org.currency)
    except ValueError as exc:
        raise ValueError(f"--currency: {str(exc).removeprefix('$.currency: ')}") from None
    try:
        check_time_zone(org.time_zone)
    except ValueError:
        raise ValueError(f"--zone: {org.time_zone!r} is not an IANA time zone") from None

    async def run() -> None:
        conn = await asyncpg.connect(load_settings().postgres_dsn)
        try:
            await upsert_organization(conn, org)
        finally:
            await conn.close()

    asyncio.run(run())
    print(f"organisation {org.id}: {org.name}, {org.time_zone}, {org.currency}")
    return 0


def _cmd_venue(args: argparse.Namespace) -> int:
    """Create or update a venue of an existing organisation (capacity: events per day)."""
    import asyncpg

    from stream_app.db.tenancy import Venue, upsert_venue
    from stream_app.settings import load_settings

    org = _check_id("ORG", args.org)
    venue = Venue(
        id=_check_id("VENUE", args.venue), name=args.name or args.venue, capacity=args.capacity
    )
    if venue.capacity is not None and not 0 <= venue.capacity <= 2**31 - 1:
        raise ValueError(f"--capacity: must be between 0 and {2**31 - 1}, got {venue.capacity}")

    async def run() -> None:
        conn = await asyncpg.connect(load_settings().postgres_dsn)
        try:
            await upsert_venue(conn, org, venue)
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except asyncpg.ForeignKeyViolationError:
        raise ValueError(
            f"ORG: no organisation {org!r}; create it first: wedding-engine org {org} --zone …"
        ) from None
    print(f"venue {org}/{venue.id}: {venue.name}, capacity {venue.capacity}")
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    """Issue a token (recorded in ``tokens``, audited) or revoke tokens of an organisation."""
    import asyncpg

    from stream_app import tokens
    from stream_app.settings import load_settings

    _check_id("--org", args.org)
    s = load_settings()
    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    if args.action == "revoke":
        if (args.jti is None) == (args.before is None):
            raise ValueError("revoke: give exactly one of --jti and --before")
        before = None
        if args.before is not None:
            try:
                before = datetime.fromisoformat(args.before)
            except ValueError:
                raise ValueError(f"--before: {args.before!r} is not ISO 8601") from None

        async def revoke() -> int:
            conn = await asyncpg.connect(s.postgres_dsn)
            try:
                return await tokens.revoke(
                    conn, s, organization_id=args.org, actor=actor, jti=args.jti,
                    issued_before=before,
                )  # fmt: skip
            finally:
                await conn.close()

        count = asyncio.run(revoke())
        print(
            f"revoked ({count} recorded token(s)); in force on every worker within"
            f" {s.revocation_cache_s:g} s"
        )
        return 0
    _check_id("--user", args.user)
    venues = [_check_id("--venue", v) for v in args.venue] if args.venue else None

    async def issue() -> str:
        conn = await asyncpg.connect(s.postgres_dsn)
        try:
            issued = await tokens.issue(
                conn, s, organization_id=args.org, subject=args.user, role=args.role,
                ttl_seconds=args.ttl, venues=venues, actor=actor,
            )  # fmt: skip
        finally:
            await conn.close()
        print(f"# jti {issued.jti}, expires {issued.expires_at.isoformat()}", file=sys.stderr)
        return issued.token

    print(asyncio.run(issue()))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from stream_app.demo import run_demo

    return run_demo(Path(args.path), keep_services=args.keep_services)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    p = argparse.ArgumentParser(prog="wedding-engine", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "services", help="up|down|status of the local Kafka and PostgreSQL", add_help=False
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
    c = sub.add_parser("cancel", help="cancel a queued or running report")
    c.add_argument("--org", required=True)
    c.add_argument("report_id")
    o = sub.add_parser("org", help="create or update an organisation (tenant)")
    o.add_argument("org", metavar="ORG")
    o.add_argument("--zone", required=True, help="IANA time zone, e.g. Europe/Lisbon")
    o.add_argument("--currency", default="EUR", help="default ISO 4217 currency")
    o.add_argument("--name", default=None, help="display name (default: the id)")
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
        "--ttl", type=int, default=3600, help="seconds (at most WEDDING_TOKEN_MAX_TTL_S)"
    )
    t.add_argument("--jti", default=None, help="revoke: the token id")
    t.add_argument(
        "--before", default=None, help="revoke: every token issued before this ISO 8601 time"
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
        "venue": _cmd_venue,
    }
    try:
        return handlers[args.command](args)
    except KafkaConnectionError as exc:
        print(
            f"error: {exc}. Is Kafka running? Start it with 'wedding-engine services up' "
            "(with the same WEDDING_STATE_DIR) or set KAFKA_BOOTSTRAP.",
            file=sys.stderr,
        )
        return 2
    except (OSError, ValueError, TimeoutError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
