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
  ``describe_cluster``); ``postgres``: ``SELECT 1`` on a connection of the application pool.
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

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Counter

from stream_app.app import settings
from stream_app.db.pool import get_pool
from stream_app.observability import REGISTRY
from stream_app.web.permissions import PUBLIC
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


CHECKS: dict[str, Callable[[], Awaitable[Check]]] = {
    "tables": check_tables,
    "kafka": check_kafka,
    "postgres": check_postgres,
}
"""The readiness checks by name, in the order the answer lists them."""


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
    """Every check of :data:`CHECKS`, concurrently: ``{name: {"ok": bool, "detail": str}}``."""
    outcomes = await asyncio.gather(*(_bounded(c) for c in CHECKS.values()))
    return {
        name: {"ok": ok, "detail": detail}
        for name, (ok, detail) in zip(CHECKS, outcomes, strict=True)
    }


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
    return web.json_response({"status": "alive"})


@page("/readyz", permission=PUBLIC)
async def readyz(self: Any, request: web.Request) -> web.StreamResponse:
    """Readiness: 200 when tables, broker and database checks pass, else 503; the body
    lists every check (see the module docstring); shared and cached (:func:`shared_checks`)."""
    checks = await shared_checks()
    ready = all(c["ok"] for c in checks.values())
    return web.json_response(
        {"ready": ready, "checks": checks},
        status=200 if ready else 503,
    )
