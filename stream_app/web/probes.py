"""Liveness and readiness of a worker, apart (Kubernetes' ``livenessProbe``/``readinessProbe``).

Part of the HTTP layer; it reads the worker's state (:func:`stream_app.web.views.readiness`)
and asks the Kafka broker and PostgreSQL a question each, nothing else.

- ``GET /livez``: 200 ``{"status": "alive"}`` whenever the event loop answers. A worker that
  restores its tables, or waits for its broker or database, is alive: restarting it would not
  help (it would start the restore again).
- ``GET /readyz``: 200 when every check passes, else 503; the body lists every check::

      {"ready": false, "checks": {
          "tables":   {"ok": true,  "detail": "ok"},
          "kafka":    {"ok": true,  "detail": "1 broker(s)"},
          "postgres": {"ok": false, "detail": "unreachable"}}}

  ``tables``: the worker is in its consumer group, not rebalancing and not restoring tables
  from their changelogs (``starting``, ``rebalancing`` or ``recovering`` otherwise);
  ``kafka``: a metadata request to the broker answers (aiokafka's admin client,
  ``describe_cluster``); ``postgres``: ``SELECT 1`` on a connection of the application pool;
  ``keys``: the worker's master key unwraps the stored data keys (:func:`check_keys`: a
  worker given the wrong ``WEDDING_MASTER_KEY`` is not ready, instead of answering 500 on
  every old file).
  ``ratelimits`` (advisory, ``"required": false``: listed, never making the worker unready):
  the shared rate-limit store answers (:data:`ADVISORY`).
  Each check has :data:`CHECK_TIMEOUT_S`; they run concurrently, so the answer comes within
  that bound even when a service hangs (a probe's own timeout is longer: ``k8s/``).

  The route is public, so it is single-flight and cached: one run of the checks at a time
  (so at most one application-pool connection and one broker metadata request), its outcome
  shared by every caller waiting for it and reused for :data:`CACHE_S`; every run counts in
  ``wedding_readiness_checks_total``. A failed check's public detail is generic
  (``unreachable``, ``timeout``, or the tables' state); the error itself is logged.

``GET /health`` (tables only, with the partitions owned) stays as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Counter

from stream_app.app import settings
from stream_app.crypto.keyring import get_keyring
from stream_app.crypto.keys import DEV_MASTER_KEY, MasterKey, master_key_coverage
from stream_app.db.pool import get_pool, get_system_pool
from stream_app.observability import REGISTRY
from stream_app.web import ratelimit
from stream_app.web.permissions import PUBLIC
from stream_app.web.responses import json_response
from stream_app.web.views import page, readiness

CHECK_TIMEOUT_S = 2.0
"""Longest wait for one readiness check (the broker's or the database's answer), seconds."""

CACHE_S = 1.0
"""How long one run's outcome answers ``/readyz`` (seconds)."""

READINESS_RUNS = Counter(
    "wedding_readiness_checks",
    "Runs of the readiness checks (GET /readyz callers share a run and its cached outcome)",
    registry=REGISTRY,
)

log = logging.getLogger(__name__)

Check = tuple[bool, str]
"""A check's outcome: passed, and a short human-readable detail (the error when it failed)."""

_admin: AIOKafkaAdminClient | None = None


async def check_tables() -> Check:
    """The worker's tables answer reads (:func:`~stream_app.web.views.readiness` is ``ok``)."""
    state = readiness()
    return state == "ok", state


async def check_kafka() -> Check:
    """A metadata request to the broker answers (the admin client is kept between probes
    and rebuilt after a failure, so a broker back at another address is found again).

    Raises:
        KafkaError, OSError: the broker does not answer (:func:`_bounded` reports it).
    """
    global _admin
    try:
        if _admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=settings.kafka_bootstrap,
                request_timeout_ms=int(CHECK_TIMEOUT_S * 1000),
                client_id="wedding-readiness",
            )
            _admin = admin
            await admin.start()
        cluster = await _admin.describe_cluster()
    except Exception:
        admin, _admin = _admin, None
        if admin is not None:
            with contextlib.suppress(Exception):  # closing a client whose broker is gone
                await admin.close()
        raise
    return True, f"{len(cluster.get('brokers', []))} broker(s)"


async def check_postgres() -> Check:
    """``SELECT 1`` on a connection of the worker's application pool answers 1."""
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire(timeout=CHECK_TIMEOUT_S) as conn:
        one = await conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_S)
    return one == 1, "ok"


_keys_logged: tuple[object, ...] | None = None
"""The last key-check outcome logged (a failing check runs every second: logged on change)."""


def _log_keys_once(outcome: tuple[object, ...], level: int, message: str, *args: object) -> None:
    global _keys_logged
    if outcome != _keys_logged:
        _keys_logged = outcome
        log.log(level, message, *args)


async def check_keys() -> Check:
    """The worker's master key (``WEDDING_MASTER_KEY``, and ``WEDDING_MASTER_KEY_PREVIOUS``)
    unwraps the stored data keys: fails when data keys exist and none is wrapped by a master
    key this worker holds (every old file would answer 500 ``key_unavailable``). Some
    organisations under another key (a master rotation under way) pass, with a warning in the
    log; the key ids are logged, never answered. Passes, unchecked, on a database whose grants
    predate the check (``wedding-engine init`` adds them)."""
    masters = (await get_keyring(settings.postgres_dsn)).masters
    pool = await get_system_pool(settings.postgres_system_dsn)
    try:
        async with pool.acquire(timeout=CHECK_TIMEOUT_S) as conn:
            coverage = await master_key_coverage(conn, masters)
    except asyncpg.InsufficientPrivilegeError:
        _log_keys_once(
            ("unchecked",),
            logging.WARNING,
            "readiness check keys: the system login may not read organization_data_keys;"
            " run `wedding-engine init` to grant it (the master key is not checked)",
        )
        return True, "not checked (run wedding-engine init)"
    holds = masters.current.key_id + (f", {masters.previous.key_id}" if masters.previous else "")
    if not coverage.usable:
        _log_keys_once(
            ("foreign", tuple(sorted(coverage.foreign))),
            logging.ERROR,
            "readiness check keys: no stored data key is wrapped by this worker's master key"
            " (%s); they are wrapped by %s: set WEDDING_MASTER_KEY to that key (or give it as"
            " WEDDING_MASTER_KEY_PREVIOUS during a rotation)",
            holds,
            ", ".join(f"{k} ({n} organisation(s))" for k, n in sorted(coverage.foreign.items())),
        )
        return False, (
            "WEDDING_MASTER_KEY does not unwrap the stored data keys (they are wrapped by"
            " another master key; the worker's log names both)"
        )
    if coverage.foreign:
        dev = MasterKey.of(DEV_MASTER_KEY).key_id
        public = (
            f"; {dev} is the public development key (a key command run with WEDDING_DEV_MODE"
            " set and no key): re-wrap those under this worker's key with `wedding-engine"
            " keys rotate --master --previous-key-file <the development key>`, then rotate"
            " their data keys (anyone could unwrap the ones wrapped by it)"
            if dev in coverage.foreign and not masters.current.development
            else ""
        )
        _log_keys_once(
            ("partial", tuple(sorted(coverage.foreign))),
            logging.WARNING,
            "readiness check keys: data keys of %s are wrapped by master keys this worker"
            " does not hold (%s): their files do not decrypt here; finish the rotation with"
            " `wedding-engine keys rotate --master`%s",
            ", ".join(
                f"{n} organisation(s) under {k}" for k, n in sorted(coverage.foreign.items())
            ),
            holds,
            public,
        )
    return True, "ok"


CHECKS: dict[str, Callable[[], Awaitable[Check]]] = {
    "tables": check_tables,
    "kafka": check_kafka,
    "postgres": check_postgres,
    "keys": check_keys,
}
"""The readiness checks by name, in the order the answer lists them."""

ADVISORY: dict[str, Callable[[], Awaitable[Check]]] = {
    "ratelimits": ratelimit.store_reachable,
}
"""Checks listed in the answer with ``"required": false``: they do not make the worker
unready. ``ratelimits``: the shared rate-limit store (Redis) answers a ``PING``; without it
requests are let through unlimited and the API stays up (a limiter outage must not take the
API down), so a failing store shows here and in ``wedding_ratelimit_store_failures_total``
(an operator's trial: a worker started with its Redis away answered ready, its limits off,
and nothing said so but a log line per failing request)."""


async def _bounded(check: Callable[[], Awaitable[Check]]) -> Check:
    """``check`` within :data:`CHECK_TIMEOUT_S`; an error or timeout is a failed check whose
    detail is generic (``timeout`` or ``unreachable``: the body is public); the error is logged."""
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        log.warning("readiness check %s: no answer within %g s", check.__name__, CHECK_TIMEOUT_S)
        return False, "timeout"
    except Exception as exc:  # noqa: BLE001 - any failure is the check's answer
        log.warning("readiness check %s failed: %s: %s", check.__name__, type(exc).__name__, exc)
        return False, "unreachable"


async def run_checks() -> dict[str, dict[str, Any]]:
    """Every check of :data:`CHECKS` and :data:`ADVISORY`, concurrently: ``{name: {"ok": bool,
    "detail": str}}``, an advisory check's with ``"required": False``."""
    outcomes = await asyncio.gather(*(_bounded(c) for c in [*CHECKS.values(), *ADVISORY.values()]))
    checks: dict[str, dict[str, Any]] = {
        name: {"ok": ok, "detail": detail}
        for name, (ok, detail) in zip(CHECKS, outcomes, strict=False)
    }
    for name, (ok, detail) in zip(ADVISORY, outcomes[len(CHECKS) :], strict=True):
        checks[name] = {"ok": ok, "detail": detail, "required": False}
    return checks


_cached: tuple[float, dict[str, dict[str, Any]]] | None = None
_running: asyncio.Task[dict[str, dict[str, Any]]] | None = None


async def shared_checks() -> dict[str, dict[str, Any]]:
    """:func:`run_checks`, single-flight and cached: the outcome of a run finished less than
    :data:`CACHE_S` ago, else the run under way, else a new run (counted in
    ``wedding_readiness_checks_total``). A caller that goes away does not cancel the run."""
    global _cached, _running
    if _cached is not None and time.monotonic() - _cached[0] < CACHE_S:
        return _cached[1]
    if _running is None or _running.done():
        READINESS_RUNS.inc()

        async def run() -> dict[str, dict[str, Any]]:
            global _cached
            checks = await run_checks()
            _cached = (time.monotonic(), checks)
            return checks

        _running = asyncio.get_running_loop().create_task(run())
    return await asyncio.shield(_running)


@page("/livez", permission=PUBLIC)
async def livez(self: Any, request: web.Request) -> web.StreamResponse:
    """Liveness: 200 ``{"status": "alive"}`` while the event loop answers."""
    return json_response({"status": "alive"})


@page("/readyz", permission=PUBLIC)
async def readyz(self: Any, request: web.Request) -> web.StreamResponse:
    """Readiness: 200 when tables, broker and database checks pass, else 503; the body
    lists every check (see the module docstring); shared and cached (:func:`shared_checks`)."""
    checks = await shared_checks()
    ready = all(c["ok"] for c in checks.values() if c.get("required", True))
    return json_response(
        {"ready": ready, "checks": checks},
        status=200 if ready else 503,
    )
