"""Runtime configuration: one frozen :class:`Settings`, read from the environment once, by
:func:`load_settings`.

Every setting has a written default (``Settings()`` is the defaults, nothing read); the ones
that carry risk say so next to the default. Each field names its variable and parser in its
metadata (:func:`env`), so the variables are listed in one place and read in one place.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

Parser = Callable[[str, str], Any]
"""``(variable name, raw value) -> setting``; raises ``ValueError`` naming the variable."""


def _text(name: str, raw: str) -> str:
    return raw


def env(variable: str, parse: Parser = _text) -> dict[str, Any]:
    """A field's metadata: the variable that sets it and the parser of its value."""
    return {"env": variable, "parse": parse}


T = TypeVar("T")


def from_env(default: T, variable: str, parse: Parser = _text) -> T:
    """A settings field worth ``default`` unless ``variable`` is set (read by ``parse``):
    ``field(default=default, metadata=env(variable, parse))``."""
    return field(default=default, metadata=env(variable, parse))


def parse_int(name: str, raw: str, low: int, high: int) -> int:
    """``raw``, the value of variable ``name``, as an integer within ``[low, high]``.

    Raises:
        ValueError: not an integer, or out of range; the message names the variable.
    """
    raw = raw.strip()
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name}: must be between {low} and {high}, got {value}")
    return value


def parse_float(name: str, raw: str, low: float, high: float) -> float:
    """``raw``, the value of variable ``name``, as a finite number within ``[low, high]``.

    Raises:
        ValueError: not a number, not finite, or out of range; the message names the variable.
    """
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: expected a number, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name}: must be a number between {low:g} and {high:g}, got {raw!r}")
    return value


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_flag(name: str, raw: str) -> bool:
    """``raw``, the value of variable ``name``, as a switch: ``1``/``true``/``yes``/``on`` or
    ``0``/``false``/``no``/``off`` (any case).

    Raises:
        ValueError: anything else; the message names the variable.
    """
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}: must be 1/true/yes/on or 0/false/no/off, got {raw!r}")


def int_in(low: int, high: int) -> Parser:
    """The parser of an integer within ``[low, high]`` (:func:`parse_int`)."""
    return lambda name, raw: parse_int(name, raw, low, high)


def float_in(low: float, high: float) -> Parser:
    """The parser of a finite number within ``[low, high]`` (:func:`parse_float`)."""
    return lambda name, raw: parse_float(name, raw, low, high)


def one_of(*allowed: str) -> Parser:
    """The parser of a value that must be one of ``allowed`` (the message names them)."""

    def parse(name: str, raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"{name}: must be one of {', '.join(allowed)}, got {raw!r}")
        return raw

    return parse


def _path(name: str, raw: str) -> Path:
    return Path(raw)


def _names(name: str, raw: str) -> frozenset[str]:
    """A comma-separated list of names (empty items dropped)."""
    return frozenset(filter(None, (o.strip() for o in raw.split(","))))


def slow_query_s_from_env() -> float:
    """``WEDDING_SLOW_QUERY_S``: seconds from which a tenant query counts as slow (default 5,
    0 to 86,400; 0 logs every query with its plan, an EXPLAIN per query: for tests only).

    Raises:
        ValueError: not a number in range; the message names the variable.
    """
    return parse_float(
        "WEDDING_SLOW_QUERY_S", os.environ.get("WEDDING_SLOW_QUERY_S", "5"), 0, 86_400
    )


def dsn_as_role(dsn: str, role: str) -> str:
    """``dsn`` with its user replaced by ``role`` (no password; host, port, database kept).

    The local services' cluster trusts local connections, so their DSNs differ only by user;
    a deployment sets each login's DSN (with its password) explicitly.
    """
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


_DEFAULT_DSN = "postgresql://wedding_app@127.0.0.1:5432/wedding"

MIN_SECRET_BYTES = 32
"""Shortest HS256 secret accepted (RFC 7518 §3.2: a key of at least the hash's 256 bits)."""


def parse_secret(name: str, value: str) -> str:
    """``value``, the secret of variable ``name``, checked to be at least 32 bytes.

    Raises:
        ValueError: shorter; the message names the variable.
    """
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{name}: must be at least {MIN_SECRET_BYTES} bytes, got {len(value.encode())}"
        )
    return value


DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789"
DEV_LINK_SECRET = "dev-only-link-secret-change-me-0123456789"
"""The development default of ``WEDDING_JWT_SECRET``: public (it is in this file), so anyone
can mint tokens with it. A worker refuses it unless ``WEDDING_DEV_MODE=1``
(:func:`check_production_secret`)."""


def check_jwt_secret(settings: Settings) -> None:
    """Refuse to sign or verify tokens with the public development secret outside development
    mode (``wedding-engine worker`` and ``wedding-engine token``).

    Raises:
        ValueError: ``jwt_secret`` is :data:`DEV_JWT_SECRET` and ``dev_mode`` is off; the
            message names ``WEDDING_JWT_SECRET`` and ``WEDDING_DEV_MODE``.
    """
    if not settings.dev_mode and settings.jwt_secret == DEV_JWT_SECRET:
        raise ValueError(
            "WEDDING_JWT_SECRET: the development secret is public (anyone could mint tokens);"
            " set a secret of at least 32 random bytes, or WEDDING_DEV_MODE=1 for local"
            " development only"
        )


def check_production_secret(settings: Settings) -> None:
    """Refuse to serve with a public development secret outside development mode.

    Raises:
        ValueError: ``jwt_secret`` is :data:`DEV_JWT_SECRET` or ``link_secret`` is
            :data:`DEV_LINK_SECRET` and ``dev_mode`` is off; the message names the variable
            and ``WEDDING_DEV_MODE``.
    """
    check_jwt_secret(settings)
    if settings.dev_mode:
        return
    if settings.link_secret == DEV_LINK_SECRET:
        raise ValueError(
            "WEDDING_LINK_SECRET: the development secret is public (anyone could sign download"
            " links); set a secret of at least 32 random bytes, other than WEDDING_JWT_SECRET,"
            " or WEDDING_DEV_MODE=1 for local development only"
        )


def parse_rate(name: str, raw: str) -> str:
    """``raw``, the value of variable ``name``, as a ``limits`` rate string
    (``N/second|minute|hour|day``, https://limits.readthedocs.io, "Rate limit string
    notation") allowing at least one request; returned stripped.

    Raises:
        ValueError: not a rate, several rates (``3/minute,100/second``: one window per limit),
            or a rate of 0 (which would refuse everything); the message names the variable.
    """
    from limits import parse_many

    value = raw.strip()
    try:
        items = parse_many(value)
    except ValueError:
        raise ValueError(f"{name}: {raw!r} is not a rate like 600/minute") from None
    if len(items) != 1:  # limits' parse() would keep the first and drop the rest unsaid
        raise ValueError(f"{name}: {raw!r} is {len(items)} rates; give one, like 600/minute")
    (item,) = items
    if item.amount < 1:
        raise ValueError(f"{name}: {raw!r} allows no request; at least 1 per period")
    return value


_REDIS_SCHEMES = ("redis://", "rediss://")


def parse_redis_url(name: str, raw: str) -> str:
    """``raw``, the value of variable ``name``: empty (each worker counts alone) or a Redis URL,
    ``redis://host:port[/db]`` or ``rediss://`` (TLS), which both ``redis.asyncio`` and
    ``limits``' asynchronous Redis storage read.

    Raises:
        ValueError: another scheme; the message names the variable.
    """
    value = raw.strip()
    if value and not value.startswith(_REDIS_SCHEMES):
        raise ValueError(
            f"{name}: {raw!r} is not a Redis URL (redis://host:port or rediss://host:port)"
        )
    return value


def parse_limits(
    name: str, raw: str, classes: tuple[str, ...], defaults: dict[str, str] | None = None
) -> dict[str, str]:
    """``"reads=600/minute,reports=30/minute"`` → ``{"reads": "600/minute", ...}``.

    Every class of ``classes`` must be given or have a value in ``defaults``; each value is a
    ``limits`` rate string
    (``N/second|minute|hour|day``, see https://limits.readthedocs.io, "Rate limit string
    notation").

    Raises:
        ValueError: an unknown or missing class, a value ``limits`` cannot parse or a rate of
            0 (:func:`parse_rate`); the message names the variable.
    """
    out: dict[str, str] = dict(defaults or {})
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in classes:
            raise ValueError(f"{name}: unknown class {key!r}; expected {', '.join(classes)}")
        out[key] = parse_rate(f"{name}: {key}", value)
    missing = [c for c in classes if c not in out]
    if missing:
        raise ValueError(f"{name}: missing {', '.join(missing)}")
    return out


RATE_CLASSES: tuple[str, ...] = (
    "reads",
    "reports",
    "aggregations",
    "downloads",
    "admin",
    "cancels",
)
_TOKEN_LIMITS = (
    "reads=600/minute,reports=30/minute,aggregations=60/minute,downloads=120/minute,"
    "admin=120/minute,cancels=120/minute"
)
_ORG_LIMITS = (
    "reads=2400/minute,reports=120/minute,aggregations=240/minute,downloads=480/minute,"
    "admin=480/minute,cancels=480/minute"
)
"""Route classes of the rate limits (:mod:`stream_app.web.ratelimit`)."""


def limits_of(name: str, raw: str, defaults: str) -> dict[str, str]:
    """Rate limits per route class (:data:`RATE_CLASSES`): ``raw`` over ``defaults``
    (:func:`parse_limits`)."""
    return parse_limits(name, raw, RATE_CLASSES, parse_limits("default", defaults, RATE_CLASSES))


DEFAULT_LANES = "critical=4,high=3,normal=3,low=2"
"""Reports generated at once per priority lane on a worker, by default."""


def _lanes(name: str, spec: str) -> dict[str, int]:
    """``"critical=4,low=1"`` → ``{"critical": 4, "high": 1, "normal": 1, "low": 1}``.

    Raises:
        ValueError: naming the variable and the entry: an unknown lane, a lane given twice,
            or a concurrency that is not an integer of at least 1.
    """
    out = {"critical": 1, "high": 1, "normal": 1, "low": 1}
    seen: set[str] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        lane, _, value = (x.strip() for x in part.partition("="))
        if lane not in out:
            raise ValueError(
                f"{name}: unknown lane {lane!r} in {part!r} (lanes: critical, high, normal, low)"
            )
        if lane in seen:
            raise ValueError(f"{name}: lane {lane!r} is given twice")
        seen.add(lane)
        if not value.isdigit() or int(value) < 1:
            raise ValueError(
                f"{name}: {part!r}: the concurrency must be an integer of at least 1"
                " (a lane without a slot would never run its reports)"
            )
        out[lane] = int(value)
    return out


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(name: str, raw: str) -> tuple[IPNetwork, ...]:
    """``"127.0.0.0/8, ::1/128"``, the value of variable ``name``, as networks (empty: none).

    Raises:
        ValueError: an entry is not a network; the message names the variable.
    """
    out: list[IPNetwork] = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        try:
            out.append(ipaddress.ip_network(part, strict=True))
        except ValueError as exc:
            raise ValueError(f"{name}: {part!r} is not a network ({exc})") from None
    return tuple(out)


SMTP_TLS_MODES = ("", "implicit", "starttls", "none")


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """The delivery section of :class:`Settings` (email, webhook, SFTP and API deliveries of
    schedules and of report requests; see :mod:`stream_app.delivery.dispatch`).

    Attributes:
        smtp_host / smtp_port / smtp_sender: the outgoing mail server and the ``From`` address
            (``WEDDING_SMTP_HOST`` ``127.0.0.1``, ``WEDDING_SMTP_PORT`` 25,
            ``WEDDING_SMTP_SENDER`` ``reports@localhost``).
        smtp_username / smtp_password: SMTP AUTH (``WEDDING_SMTP_USERNAME``,
            ``WEDDING_SMTP_PASSWORD``; empty: none).
        smtp_tls: ``implicit``, ``starttls``, ``none`` or empty = STARTTLS when the server
            offers it (``WEDDING_SMTP_TLS``).
        public_base_url: the URL download links start with (``WEDDING_PUBLIC_BASE_URL``;
            empty: ``http://<web host>:<web port>``).
        max_attachment_bytes: email attachments' total size; larger files go as links
            (``WEDDING_EMAIL_MAX_ATTACHMENT_BYTES``, 10 MiB).
        sftp_connect_timeout_s: SFTP connect + login timeout (``WEDDING_SFTP_CONNECT_TIMEOUT_S``,
            20 s).
        allow_private_networks: networks deliveries may reach although not public
            (``WEDDING_DELIVERY_ALLOW_PRIVATE_NETWORKS``; empty: public addresses only).
        slots / poll_s / lease_s: attempts at once per worker, how often due deliveries are
            looked for, how long a claimed delivery is reserved (``WEDDING_DELIVERY_SLOTS`` 4,
            ``WEDDING_DELIVERY_POLL_S`` 1, ``WEDDING_DELIVERY_LEASE_S`` 900).
    """

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_sender: str = "reports@localhost"
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_tls: str = ""
    public_base_url: str = ""
    max_attachment_bytes: int = 10 * 1024 * 1024
    sftp_connect_timeout_s: float = 20.0
    allow_private_networks: tuple[IPNetwork, ...] = ()
    slots: int = 4
    poll_s: float = 1.0
    lease_s: float = 900.0


def load_delivery_settings(env: Mapping[str, str] | None = None) -> DeliverySettings:
    """The :class:`DeliverySettings` of ``env`` (default the environment, read at the call;
    :func:`load_settings` passes the mapping it reads).

    Raises:
        ValueError: a value does not parse or is out of range; the message names the variable.
    """
    env = os.environ if env is None else env
    d = DeliverySettings()

    def get(name: str, default: object) -> str:
        return env.get(name, str(default))

    tls = get("WEDDING_SMTP_TLS", "").lower()
    if tls not in SMTP_TLS_MODES:
        raise ValueError(f"WEDDING_SMTP_TLS: {tls!r} is not implicit, starttls or none")
    return DeliverySettings(
        smtp_host=get("WEDDING_SMTP_HOST", d.smtp_host),
        smtp_port=parse_int("WEDDING_SMTP_PORT", get("WEDDING_SMTP_PORT", d.smtp_port), 1, 65535),
        smtp_sender=get("WEDDING_SMTP_SENDER", d.smtp_sender),
        smtp_username=get("WEDDING_SMTP_USERNAME", ""),
        smtp_password=get("WEDDING_SMTP_PASSWORD", ""),
        smtp_tls=tls,
        public_base_url=get("WEDDING_PUBLIC_BASE_URL", ""),
        max_attachment_bytes=parse_int(
            "WEDDING_EMAIL_MAX_ATTACHMENT_BYTES",
            get("WEDDING_EMAIL_MAX_ATTACHMENT_BYTES", d.max_attachment_bytes),
            0,
            1 << 40,
        ),
        sftp_connect_timeout_s=parse_float(
            "WEDDING_SFTP_CONNECT_TIMEOUT_S",
            get("WEDDING_SFTP_CONNECT_TIMEOUT_S", d.sftp_connect_timeout_s),
            0.1,
            3600,
        ),
        allow_private_networks=parse_networks(
            "WEDDING_DELIVERY_ALLOW_PRIVATE_NETWORKS",
            get("WEDDING_DELIVERY_ALLOW_PRIVATE_NETWORKS", ""),
        ),
        slots=parse_int("WEDDING_DELIVERY_SLOTS", get("WEDDING_DELIVERY_SLOTS", d.slots), 1, 1024),
        poll_s=parse_float(
            "WEDDING_DELIVERY_POLL_S", get("WEDDING_DELIVERY_POLL_S", 1), 0.05, 3600
        ),
        lease_s=parse_float(
            "WEDDING_DELIVERY_LEASE_S", get("WEDDING_DELIVERY_LEASE_S", 900), 1, 86_400
        ),
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration of a worker, the CLI and the tests.

    Attributes:
        kafka_bootstrap: ``host:port`` of a Kafka broker (``KAFKA_BOOTSTRAP``).
        postgres_dsn: libpq URL of the PostgreSQL history database as the application role
            ``wedding_app`` (``POSTGRES_DSN``): tenant work, under row-level security. A worker
            refuses a login that is a superuser, has BYPASSRLS or owns a table.
        postgres_system_dsn: the same database as the system role ``wedding_system``
            (``POSTGRES_SYSTEM_DSN``; default: ``POSTGRES_DSN`` with that user): work that
            spans tenants (due schedules, the delivery queue, retention), nothing else.
        postgres_owner_dsn: the same database as the owner role ``wedding_owner``
            (``POSTGRES_OWNER_DSN``; default: ``POSTGRES_DSN`` with that user): migrations
            (``init``), ``org``/``venue`` registration, history loads. Never used by a worker.
        app_id: Faust application id; it names the consumer group and the changelog topics
            (``WEDDING_APP_ID``). Changing it on a running system starts from empty tables.
        topic_partitions: partitions of every topic this app creates (``WEDDING_PARTITIONS``).
            Tables are co-partitioned with their source topic, so this cannot be changed on
            existing topics without a re-partition.
        data_dir: where each worker keeps its RocksDB tables (``WEDDING_DATA_DIR``).
        artifact_dir: the artifact store, a folder (``WEDDING_ARTIFACT_DIR``).
        artifact_store_max_bytes: the most bytes the artifact store may hold on disk; a report
            whose file would exceed it fails with "artifact store full"
            (``WEDDING_ARTIFACT_STORE_MAX_BYTES``; 0, the default: no limit but the disk's).
        artifact_org_max_bytes: the most bytes of the store one organisation's files may take;
            a report whose file would exceed it fails with "artifact quota of organisation …
            reached" (``WEDDING_ARTIFACT_ORG_MAX_BYTES``; 10 GiB by default, 0: no limit).
        web_host / web_port: the worker's HTTP listener (``WEDDING_WEB_HOST``/``WEDDING_WEB_PORT``).
            ``web_host`` is also the name other workers use to reach this one (faust's
            canonical URL ``http://<web_host>:<web_port>``, to which requests for the
            partitions it owns are forwarded): in a container, the pod's or service's DNS
            name, never ``0.0.0.0``.
        web_bind: the address the HTTP listener binds (``WEDDING_WEB_BIND``; default
            ``web_host``): ``0.0.0.0`` in a container, so probes and port-forwards reach it
            while ``web_host`` names it for the other workers.
        jwt_secret: HS256 secret for API bearer tokens (``WEDDING_JWT_SECRET``). The default is a
            development secret: set a real one in any deployment.
        link_secret: HS256 key of signed download links (``WEDDING_LINK_SECRET``), a key of its
            own so a link can never pass as a bearer token or the reverse. The default is a
            development secret, handled like ``jwt_secret``: set a real one in any deployment.
        rocksdb_block_cache_bytes: RocksDB block cache per opened partition
            (``WEDDING_ROCKSDB_BLOCK_CACHE_BYTES``, 16 MiB). faust-streaming's default is
            2 GiB per partition; 16 MiB keeps 4 tables × 4 partitions under ~300 MiB.
        rocksdb_write_buffer_bytes: memtable size per partition, two at most
            (``WEDDING_ROCKSDB_WRITE_BUFFER_BYTES``, 16 MiB; faust's default is 64 MiB × 3).
        batch_max_events / batch_max_seconds: the most records one poll of the worker's
            consumer returns, over all its partitions (``WEDDING_BATCH_MAX_EVENTS``, 80,000:
            faust's ``broker_max_poll_records``); a fold agent folds what one poll returned
            for a partition as one batch. The larger a backlog's batches, the fewer distinct
            rows per event (a venue's month row is read and written once per batch, not per
            event): ``bench_million`` 10,198 / 11,296 events/s with 5,000 and 1 MiB, 19,950 /
            19,207 with 40,000 and 8 MiB (300,000 events, alternating). ``batch_max_seconds``
            (``WEDDING_BATCH_MAX_SECONDS``, 0.01) is read but no longer used by the fold.
        fetch_partition_bytes: the most bytes one fetch returns per partition
            (``WEDDING_FETCH_PARTITION_BYTES``, 16 MiB; faust's ``consumer_max_fetch_size``,
            1 MiB by default, i.e. ~3,000 booking events): a partition's batch is at most
            what one fetch returned for it. A worker working off a backlog holds about four
            fetches per partition it owns in memory (peak RSS in the README's benchmarks).
        gc_gen0_threshold: the worker's first-generation garbage-collection threshold
            (``WEDDING_GC_GEN0_THRESHOLD``, 50,000; Python's is 700; 0 leaves Python's
            settings alone): see :func:`stream_app.runtime.gc_tuning.tune`.
        fetch_max_wait_ms: longest time the broker may hold the worker consumer's fetch
            request, milliseconds (``WEDDING_FETCH_MAX_WAIT_MS``, 20; faust's own 1,500 stalls
            busy partitions: see :mod:`stream_app.runtime.fetching`).
        prefetch_backoff_ms: how long fetched records not taken yet hold the next fetch from
            their broker, milliseconds (``WEDDING_PREFETCH_BACKOFF_MS``, 5; aiokafka's 100
            held every input partition behind the changelog's records:
            :mod:`stream_app.runtime.fetching`).
        stall_report_s: seconds without fetch, processing or commit progress on an assigned
            partition before faust logs its diagnosis (``WEDDING_STALL_REPORT_S``, 300).
        commit_interval_s: seconds between two commits of the consumer's offsets while
            events arrive (``WEDDING_COMMIT_INTERVAL_S``, faust's 2.8); a partition that has
            worked off its backlog is committed at once whatever it is
            (:mod:`stream_app.runtime.consumer`).
        stream_wait_empty: whether faust waits, when partitions are revoked, until every
            event being processed is acknowledged, then flushes the changelog writes
            (``WEDDING_STREAM_WAIT_EMPTY``, 0).
        dedupe_horizon_s: how long after an event's arrival (its Kafka timestamp) a re-send
            of it (same ``event_id``, a new offset) is recognised and skipped, seconds; 30 days
            by default (:mod:`stream_app.tables.dedupe`).
        dedupe_packed: whether a batch's dedupe records travel packed in the changelog, one
            changelog record per 4,096 (``WEDDING_DEDUPE_PACKED``, 1), or one each (0: what
            a release before packing writes and reads; a rolling upgrade runs with 0 until
            every worker runs this release, README "Upgrading").
        grace_s: grace period of the event-time windows, seconds (event time): a window
            accepts events until its partition's watermark passes its end by this much
            (``WEDDING_GRACE_S``, default 3600).
        offset_reset: where a new consumer group starts reading the input topics,
            ``earliest`` (default: every event ever produced) or ``latest`` (only new ones;
            the worker commits the end offsets for the new group before it joins, see
            :func:`stream_app.lag.start_group_at_end`) (``WEDDING_OFFSET_RESET``).
        shutdown_timeout_s: the most seconds a worker's graceful stop (SIGTERM) may take;
            past it the process exits at once with status 75, unflushed state left to the
            changelog replay (``WEDDING_SHUTDOWN_TIMEOUT_S``, default 25: under Kubernetes'
            30-second grace period).
        session_timeout_s: how long the group coordinator waits for a silent worker before
            giving its partitions to the others (``WEDDING_SESSION_TIMEOUT_S``). Lower means a
            crashed worker's partitions move sooner, but a long GC pause can cost a rebalance.
        group_instance_id: the worker's static group membership id (KIP-345,
            ``WEDDING_GROUP_INSTANCE_ID``; empty by default: dynamic membership). A worker
            restarted with the same id (a StatefulSet pod name) takes its partitions back at
            once instead of after the session timeout, with no rebalance; a worker stopped for
            good keeps its partitions until the session timeout.
        allow_private_targets: accept webhook URLs and SFTP hosts on loopback, private or
            link-local addresses (``WEDDING_ALLOW_PRIVATE_TARGETS=1``). Off by default: a tenant
            must not point deliveries at the cluster's internal services (SSRF).
        scheduling_enabled: run the scheduler task and deliver scheduled reports
            (``WEDDING_SCHEDULING``, ``1``/``0``). Every worker of one app may; exactly once
            holds. Turn it off on workers of a second app id sharing the same database and
            topics (e.g. a test or a staging app), whose scheduler and delivery agent would
            otherwise act on the same schedules.
        scheduler_interval_s: seconds between two scheduler ticks of a worker
            (``WEDDING_SCHEDULER_INTERVAL_S``); a fire time is claimed at most this late.
        max_schedules_per_org: schedules one organisation may hold, paused ones included
            (``WEDDING_MAX_SCHEDULES_PER_ORG``, 100); one more is a 409 ``too_many_schedules``.
        schedule_run_timeout_s: a scheduled run ``submitted`` this many seconds ago whose
            reports have not all reached a delivery outcome is marked ``failed`` with the cause
            (``WEDDING_SCHEDULE_RUN_TIMEOUT_S``, default one hour; it must exceed the longest
            report generation, or slow reports are failed while still running).
        report_lane_concurrency: reports generated at once per priority lane on a worker,
            ``critical=4,high=3,normal=3,low=2`` (``WEDDING_REPORT_LANES``).
        report_retry_base_s: first wait before retrying a report whose generation failed for
            a retriable cause; doubled for each further attempt (``WEDDING_REPORT_RETRY_BASE_S``).
        report_cancel_poll_s: how often a running report checks PostgreSQL for a cancellation
            made on another worker (``WEDDING_REPORT_CANCEL_POLL_S``).
        slow_query_s: a tenant query (aggregation, report) running at least this many seconds
            is logged with its plan and counted in ``wedding_slow_queries_total``
            (``WEDDING_SLOW_QUERY_S``, 5 s; see :mod:`stream_app.db.monitoring`).
        changelog_max_compaction_lag_ms: longest time a superseded or deleted record of a
            client-keyed table changelog stays uncompacted, milliseconds
            (``WEDDING_CHANGELOG_MAX_COMPACTION_LAG_MS``, one day); also its ``segment.ms`` and
            ``delete.retention.ms`` (how long a tombstone stays after compaction). Part of the
            GDPR erasure bound (README, "GDPR data map"): raising it delays erasure.
        input_retention_ms: ``retention.ms`` of the input topics and of the topics that copy
            their keys (``WEDDING_INPUT_RETENTION_MS``, 7 days; their ``segment.ms`` is one day
            at most). Events cannot be edited in place: an erased client's id leaves them
            when their segment expires, so this is part of the erasure bound too.
        retention_interval_s: seconds between two runs of the retention job
            (``WEDDING_RETENTION_INTERVAL_S``, 3600); one run per interval across all workers.
        gdpr_erasure_wait_s: how long ``POST /orgs/{org}/gdpr/erase`` waits for the live table
            to apply the erasure before it answers 202 ``in_progress``
            (``WEDDING_GDPR_ERASURE_WAIT_S``, 60).
        dev_mode: the development switch (``WEDDING_DEV_MODE``, off). On, development
            defaults are allowed where a deployment must set a secret: the public development
            JWT secret and link secret, and without ``WEDDING_MASTER_KEY`` the public
            development master key (:mod:`stream_app.crypto.keys`). Never set it in a
            deployment.
        data_key_ttl_s: seconds a worker keeps sealing an organisation's new files with the
            data-key version it last read before asking PostgreSQL again
            (``WEDDING_DATA_KEY_TTL_S``, 30): how soon ``keys rotate`` reaches new files.
        token_issuer / token_audience: the ``iss`` / ``aud`` every token must carry
            (``WEDDING_TOKEN_ISSUER``, ``WEDDING_TOKEN_AUDIENCE``).
        token_max_ttl_s: longest lifetime of a token, seconds (``WEDDING_TOKEN_MAX_TTL_S``,
            30 days): ``wedding-engine token --ttl`` beyond it is refused, and so is any
            token whose ``exp - iat`` is longer.
        revocation_cache_s: how long a worker keeps an organisation's revocations before
            reading them again from PostgreSQL (``WEDDING_REVOCATION_CACHE_S``, 5): a
            revocation is in force on every worker within this many seconds.
        redis_url: the shared rate-limit store (``WEDDING_REDIS_URL``, ``redis://host:port``).
            Empty: each worker counts alone in memory, so N workers allow N times the limits
            (development only).
        rate_limits: per token, per route class (``WEDDING_RATE_LIMITS``,
            ``reads=600/minute,reports=30/minute,aggregations=60/minute,downloads=120/minute,
            admin=120/minute,cancels=120/minute``; a class left out keeps its default).
            ``admin`` is the class of the admin routes (tokens, schedules, GDPR, retention,
            audit, an admin's report cancellations), so a flood of reads cannot stop an admin
            from revoking the flooding token; ``cancels`` that of an analyst's report
            cancellations (neither its report flood nor the admins' budget).
        org_rate_limits: per organisation, all its tokens together (``WEDDING_ORG_RATE_LIMITS``,
            four times the token limits).
        auth_failure_limit: requests with a bad token one client address may make before it
            is locked out (``WEDDING_AUTH_FAILURE_LIMIT``, ``20/minute``).
        priority_orgs: organisations whose analysts may request ``high``/``critical``
            priorities (``WEDDING_PRIORITY_ORGS``, comma-separated; admins always may).
        org_inflight: requests of one organisation a worker checks and handles at once
            (``WEDDING_ORG_INFLIGHT``, 8); more wait their turn
            (:func:`stream_app.web.guard.guarded`), so one tenant's flood queues behind itself.
        http_keepalive_s: seconds an HTTP connection has to complete a request head after it
            opened or after its previous answer (``WEDDING_HTTP_KEEPALIVE_S``, 30;
            :mod:`stream_app.runtime.http_limits`).
        http_body_timeout_s: seconds a request body has to arrive, read before the request
            takes one of its organisation's slots (``WEDDING_HTTP_BODY_TIMEOUT_S``, 10; 408).
        http_max_connections_per_address: most open HTTP connections of one client address
            (``WEDDING_HTTP_MAX_CONNECTIONS_PER_ADDRESS``, 1,024; 0: no cap).
        http_max_connections: most open HTTP connections in all
            (``WEDDING_HTTP_MAX_CONNECTIONS``; 0, the default: the process's file limit less
            1,024).
        org_slot_share: the largest share of a worker's report-lane or aggregation slots (the
            latter also taken by report validations) one organisation may hold at once
            (``WEDDING_ORG_SLOT_SHARE``, 0.5; at least one slot).
        org_reports: the most reports one organisation generates at once on a worker, all
            priority lanes together, while another organisation is active there
            (``WEDDING_ORG_REPORTS``, 2; :mod:`stream_app.reports.lanes`); a request over it
            goes back to its lane as one over the lane share does. The lane share alone
            let an admin, who may use every priority, run five at once (an attacker round:
            another tenant's small report took 1.2-9.1 s instead of 0.3 s).
        progress_interval_s: seconds between two progress lines of a long CLI job
            (``replay``, ``synth``, ``--wait``) when its output is not a terminal
            (``WEDDING_PROGRESS_INTERVAL_S``, 10; 0 writes a line per update); on a terminal a
            bar is redrawn instead (:mod:`stream_app.progress`).
        updates_queue: live updates (``GET /orgs/{org}/updates``) a browser may fall behind
            by before the worker drops it (``WEDDING_UPDATES_QUEUE``, 1000 messages); a
            dropped client reconnects with ``Last-Event-ID`` and gets what it missed.
        updates_max_clients: live-update streams one organisation may hold open on a worker
            (``WEDDING_UPDATES_MAX_CLIENTS``, 50); one more is refused with 429.
        updates_replay_max: messages per partition a live-update stream resumed with
            ``Last-Event-ID`` is read back at most (``WEDDING_UPDATES_REPLAY_MAX``, 2000); a
            position further behind the partition's end resumes from (end − this) after an
            ``event: gap`` (:func:`stream_app.web.updates_hub.bound_resume`).
        updates_max_replays: resumed live-update streams one organisation may have reading
            back at once on a worker (``WEDDING_UPDATES_MAX_REPLAYS``, 2); one more waits up to
            2 s, then is refused with 429 ``too_many_replays``.
        delivery: the delivery section (:class:`DeliverySettings`).
    """

    kafka_bootstrap: str = from_env("127.0.0.1:9092", "KAFKA_BOOTSTRAP")
    postgres_dsn: str = from_env(_DEFAULT_DSN, "POSTGRES_DSN")
    postgres_system_dsn: str = from_env("", "POSTGRES_SYSTEM_DSN")
    postgres_owner_dsn: str = from_env("", "POSTGRES_OWNER_DSN")
    app_id: str = from_env("wedding-engine", "WEDDING_APP_ID")
    topic_partitions: int = from_env(4, "WEDDING_PARTITIONS", int_in(1, 1000))
    data_dir: Path = field(
        default=Path(".state/worker-data"), metadata=env("WEDDING_DATA_DIR", _path)
    )
    artifact_dir: Path = field(
        default=Path(".state/artifacts"), metadata=env("WEDDING_ARTIFACT_DIR", _path)
    )
    artifact_store_max_bytes: int = from_env(
        0, "WEDDING_ARTIFACT_STORE_MAX_BYTES", int_in(0, 2**62)
    )
    artifact_org_max_bytes: int = from_env(
        10 * 2**30, "WEDDING_ARTIFACT_ORG_MAX_BYTES", int_in(0, 2**62)
    )
    web_host: str = from_env("127.0.0.1", "WEDDING_WEB_HOST")
    web_port: int = from_env(6066, "WEDDING_WEB_PORT", int_in(1, 65535))
    web_bind: str = from_env("", "WEDDING_WEB_BIND")
    jwt_secret: str = from_env(DEV_JWT_SECRET, "WEDDING_JWT_SECRET", parse_secret)
    link_secret: str = from_env(DEV_LINK_SECRET, "WEDDING_LINK_SECRET", parse_secret)
    rocksdb_block_cache_bytes: int = from_env(
        16 * 1024 * 1024, "WEDDING_ROCKSDB_BLOCK_CACHE_BYTES", int_in(0, 1024 * 1024 * 1024)
    )
    rocksdb_write_buffer_bytes: int = from_env(
        16 * 1024 * 1024,
        "WEDDING_ROCKSDB_WRITE_BUFFER_BYTES",
        int_in(1024 * 1024, 1024 * 1024 * 1024),
    )
    batch_max_events: int = from_env(80_000, "WEDDING_BATCH_MAX_EVENTS", int_in(1, 1_000_000))
    batch_max_seconds: float = from_env(0.01, "WEDDING_BATCH_MAX_SECONDS", float_in(0.001, 60))
    fetch_partition_bytes: int = from_env(
        16 << 20, "WEDDING_FETCH_PARTITION_BYTES", int_in(1 << 16, 1 << 30)
    )
    fetch_max_wait_ms: int = from_env(20, "WEDDING_FETCH_MAX_WAIT_MS", int_in(0, 60_000))
    prefetch_backoff_ms: int = from_env(5, "WEDDING_PREFETCH_BACKOFF_MS", int_in(0, 60_000))
    gc_gen0_threshold: int = from_env(50_000, "WEDDING_GC_GEN0_THRESHOLD", int_in(0, 10_000_000))
    offset_reset: str = from_env("earliest", "WEDDING_OFFSET_RESET", one_of("earliest", "latest"))
    stall_report_s: float = from_env(300.0, "WEDDING_STALL_REPORT_S", float_in(1, 86_400))
    commit_interval_s: float = from_env(2.8, "WEDDING_COMMIT_INTERVAL_S", float_in(0.1, 3600))
    shutdown_timeout_s: float = from_env(25.0, "WEDDING_SHUTDOWN_TIMEOUT_S", float_in(1, 3600))
    stream_wait_empty: bool = from_env(False, "WEDDING_STREAM_WAIT_EMPTY", parse_flag)
    grace_s: float = from_env(3600.0, "WEDDING_GRACE_S", float_in(0, 31 * 86_400))
    dedupe_horizon_s: float = from_env(
        30 * 86_400.0, "WEDDING_DEDUPE_HORIZON_S", float_in(1, 3650 * 86_400)
    )
    dedupe_packed: bool = from_env(True, "WEDDING_DEDUPE_PACKED", parse_flag)
    session_timeout_s: float = from_env(30.0, "WEDDING_SESSION_TIMEOUT_S", float_in(1, 1800))
    group_instance_id: str = from_env("", "WEDDING_GROUP_INSTANCE_ID")
    allow_private_targets: bool = from_env(False, "WEDDING_ALLOW_PRIVATE_TARGETS", parse_flag)
    scheduling_enabled: bool = from_env(True, "WEDDING_SCHEDULING", parse_flag)
    scheduler_interval_s: float = from_env(
        15.0, "WEDDING_SCHEDULER_INTERVAL_S", float_in(0.1, 3600)
    )
    max_schedules_per_org: int = from_env(
        100, "WEDDING_MAX_SCHEDULES_PER_ORG", int_in(1, 1_000_000)
    )
    schedule_run_timeout_s: float = from_env(
        3600.0, "WEDDING_SCHEDULE_RUN_TIMEOUT_S", float_in(1, 30 * 86400)
    )

    report_lane_concurrency: dict[str, int] = field(
        default_factory=lambda: _lanes("WEDDING_REPORT_LANES", DEFAULT_LANES),
        metadata=env("WEDDING_REPORT_LANES", _lanes),
    )
    report_retry_base_s: float = from_env(1.0, "WEDDING_REPORT_RETRY_BASE_S", float_in(0, 3600))
    report_cancel_poll_s: float = from_env(0.5, "WEDDING_REPORT_CANCEL_POLL_S", float_in(0.01, 60))
    slow_query_s: float = from_env(5.0, "WEDDING_SLOW_QUERY_S", float_in(0, 86_400))
    changelog_max_compaction_lag_ms: int = from_env(
        86_400_000, "WEDDING_CHANGELOG_MAX_COMPACTION_LAG_MS", int_in(1_000, 30 * 86_400_000)
    )
    input_retention_ms: int = from_env(
        7 * 86_400_000, "WEDDING_INPUT_RETENTION_MS", int_in(60_000, 365 * 86_400_000)
    )
    retention_interval_s: float = from_env(
        3600.0, "WEDDING_RETENTION_INTERVAL_S", float_in(0.5, 7 * 86_400)
    )
    gdpr_erasure_wait_s: float = from_env(60.0, "WEDDING_GDPR_ERASURE_WAIT_S", float_in(1, 3600))
    dev_mode: bool = from_env(False, "WEDDING_DEV_MODE", parse_flag)
    data_key_ttl_s: float = from_env(30.0, "WEDDING_DATA_KEY_TTL_S", float_in(0.1, 86_400))

    token_issuer: str = from_env("wedding-engine", "WEDDING_TOKEN_ISSUER")
    token_audience: str = from_env("wedding-engine-api", "WEDDING_TOKEN_AUDIENCE")
    token_max_ttl_s: int = from_env(
        30 * 86_400, "WEDDING_TOKEN_MAX_TTL_S", int_in(60, 366 * 86_400)
    )
    revocation_cache_s: float = from_env(5.0, "WEDDING_REVOCATION_CACHE_S", float_in(0, 300))
    redis_url: str = from_env("", "WEDDING_REDIS_URL", parse_redis_url)
    rate_limits: dict[str, str] = field(
        default_factory=lambda: limits_of("default", _TOKEN_LIMITS, _TOKEN_LIMITS),
        metadata=env("WEDDING_RATE_LIMITS", lambda name, raw: limits_of(name, raw, _TOKEN_LIMITS)),
    )
    org_rate_limits: dict[str, str] = field(
        default_factory=lambda: limits_of("default", _ORG_LIMITS, _ORG_LIMITS),
        metadata=env(
            "WEDDING_ORG_RATE_LIMITS", lambda name, raw: limits_of(name, raw, _ORG_LIMITS)
        ),
    )
    auth_failure_limit: str = from_env("20/minute", "WEDDING_AUTH_FAILURE_LIMIT", parse_rate)
    priority_orgs: frozenset[str] = from_env(frozenset(), "WEDDING_PRIORITY_ORGS", _names)
    org_inflight: int = from_env(8, "WEDDING_ORG_INFLIGHT", int_in(1, 10_000))
    http_keepalive_s: float = from_env(30.0, "WEDDING_HTTP_KEEPALIVE_S", float_in(1, 86_400))
    http_body_timeout_s: float = from_env(10.0, "WEDDING_HTTP_BODY_TIMEOUT_S", float_in(0.1, 3600))
    http_max_connections_per_address: int = from_env(
        1_024, "WEDDING_HTTP_MAX_CONNECTIONS_PER_ADDRESS", int_in(0, 10_000_000)
    )
    http_max_connections: int = from_env(0, "WEDDING_HTTP_MAX_CONNECTIONS", int_in(0, 10_000_000))
    org_slot_share: float = from_env(0.5, "WEDDING_ORG_SLOT_SHARE", float_in(0.01, 1))
    org_reports: int = from_env(2, "WEDDING_ORG_REPORTS", int_in(1, 1000))
    progress_interval_s: float = from_env(10.0, "WEDDING_PROGRESS_INTERVAL_S", float_in(0, 3600))
    updates_queue: int = from_env(1000, "WEDDING_UPDATES_QUEUE", int_in(1, 1_000_000))
    updates_max_clients: int = from_env(50, "WEDDING_UPDATES_MAX_CLIENTS", int_in(1, 100_000))
    updates_replay_max: int = from_env(2000, "WEDDING_UPDATES_REPLAY_MAX", int_in(1, 10_000_000))
    updates_max_replays: int = from_env(2, "WEDDING_UPDATES_MAX_REPLAYS", int_in(1, 10_000))
    delivery: DeliverySettings = field(default_factory=DeliverySettings)

    def __post_init__(self) -> None:
        if not self.web_bind:
            object.__setattr__(self, "web_bind", self.web_host)
        # the system and owner logins default to the same cluster as postgres_dsn
        if not self.postgres_system_dsn:
            object.__setattr__(
                self, "postgres_system_dsn", dsn_as_role(self.postgres_dsn, "wedding_system")
            )
        if not self.postgres_owner_dsn:
            object.__setattr__(
                self, "postgres_owner_dsn", dsn_as_role(self.postgres_dsn, "wedding_owner")
            )


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """The settings: ``overrides`` (field name → value, taken as given), else the field's
    variable in ``environ`` (``os.environ`` by default) when it is set, else the default.

    The only place the environment is read for :class:`Settings` (each field's variable and
    parser are in its metadata, :func:`env`).

    Raises:
        ValueError: a variable's value is malformed or out of range; the message names it.
        TypeError: an override names no field.
    """
    source = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        variable = f.metadata.get("env")
        if variable is None or f.name in overrides:
            continue
        raw = source.get(variable)
        if raw is not None:
            values[f.name] = f.metadata["parse"](variable, raw)
    if "delivery" not in overrides:
        values["delivery"] = load_delivery_settings(source)
    return Settings(**values, **overrides)
