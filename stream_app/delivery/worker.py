"""The delivery worker: queues finished reports to deliver and attempts them when due.

Who wants a report delivered is not known here: each :class:`DeliverySource` (a schedule
run, :mod:`stream_app.schedules.deliveries`; a report request's own ``delivery``,
:mod:`stream_app.delivery.adhoc`) turns a report's final status into a
:class:`~stream_app.delivery.base.DeliveryOrder`, re-reads it for each attempt, and is told
each outcome (``settle``).

:meth:`DeliveryWorker.enqueue_report` turns a final ``report-results`` status into a
``delivery_queue`` row due at once when a source orders it (it sends nothing, so consuming
the topic never waits for an endpoint). :meth:`DeliveryWorker.tick` claims due rows
(:func:`stream_app.delivery.queue.claim_due`: ``FOR UPDATE SKIP LOCKED`` plus a lease, so no
two workers attempt one delivery at the same time) and starts one attempt per claimed row,
each holding one of the worker's :class:`~stream_app.delivery.slots.DeliverySlots` for the
attempt only. Organisations are served in the order their oldest due delivery waits, and
none takes more than its share of slots (never more than half), so a tenant with many slow
or failing endpoints cannot stop another tenant's deliveries; ``api`` deliveries (no
network) are claimed first and take no slot. A failed attempt that may be retried is
queued again with its due time by :func:`stream_app.delivery.dispatch.deliver` (nothing
sleeps in a slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncpg

from stream_app.crypto.keyring import KeyRing
from stream_app.db.tenancy import tenant_transaction
from stream_app.delivery.base import DeliveryOrder, DeliveryResult
from stream_app.delivery.dispatch import DeliveryConfig, build_method, deliver
from stream_app.delivery.queue import QueuedDelivery, claim_due, due_organizations, enqueue, remove
from stream_app.delivery.slots import DeliverySlots
from stream_app.schemas.updates import ReportStatus
from stream_app.transient import retry_transient

log = logging.getLogger(__name__)
FINAL = frozenset({"completed", "failed", "cancelled"})
API_BATCH = 32
"""The most ``api`` deliveries (no network, no slot) one tick starts per organisation."""


class DeliverySource(Protocol):
    """Who orders deliveries of finished reports, and what their outcomes mean to it.

    Every method runs on a connection inside the organisation's tenant transaction.
    """

    name: str
    """Stored with each queued row (``delivery_queue.source``)."""

    async def order_for(
        self, conn: asyncpg.Connection, status: ReportStatus
    ) -> DeliveryOrder | None:
        """The delivery this source orders for report ``status`` (final), or None."""
        ...

    async def reload(self, conn: asyncpg.Connection, item: QueuedDelivery) -> DeliveryOrder | None:
        """The order of a queued row, read again before an attempt; None when it is gone
        (e.g. its schedule was deleted): the row is dropped."""
        ...

    async def settle(
        self, conn: asyncpg.Connection, order: DeliveryOrder, result: DeliveryResult
    ) -> None:
        """Told an outcome of ``order`` (in the transaction that logs it)."""
        ...


def default_worker_id() -> str:
    """``host:pid`` of this process, the default ``claimed_by``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class DeliveryWorker:
    """Queues and attempts the deliveries of one worker process (see the module docstring).

    Attributes:
        pool: PostgreSQL pool of the application role: every statement on a run or a queued
            row runs in its organisation's tenant transaction.
        system_pool: pool of the cross-tenant system role, used for one thing: which
            organisations have due rows (:func:`due_organizations`). Defaults to ``pool``.
        keys: the worker's data-key cache (decrypts artifacts, opens sealed secrets).
        config: server-wide delivery settings (slots, poll interval, lease, egress policy).
        artifact_root: the artifact store's root folder.
        sources: who orders deliveries, asked in this order (the first order wins).
        slots: the fair-share slot counter.
        worker_id: recorded as ``claimed_by`` of leased rows.

    ``clock`` (default the system clock) says what is due; tests inject it to simulate time.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: DeliveryConfig,
        artifact_root: Path,
        *,
        sources: Iterable[DeliverySource],
        system_pool: asyncpg.Pool | None = None,
        keys: KeyRing | None = None,
        worker_id: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.pool = pool
        self.system_pool = system_pool or pool
        self.keys = keys or KeyRing(pool)
        self.config = config
        self.artifact_root = artifact_root
        self.sources = {source.name: source for source in sources}
        self.slots = DeliverySlots(config.slots)
        self.worker_id = worker_id or default_worker_id()
        self._injected_clock = clock
        self._clock = clock or (lambda: datetime.now(UTC))
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def enqueue_report(self, status: ReportStatus) -> bool:
        """Queue the delivery of a report's final status, due now, if a source orders one.

        Returns:
            Whether a delivery was queued (False: not final, nobody ordered one, or already
            queued).
        """
        if status.status not in FINAL:
            return False
        org = status.organization_id
        async with self.pool.acquire() as conn, tenant_transaction(conn, org):
            for source in self.sources.values():
                order = await source.order_for(conn, status)
                if order is None:
                    continue
                if order.organization_id != org:  # a source's bug; never another tenant's
                    log.warning(
                        "report %s: order of another organisation ignored", status.report_id
                    )
                    return False
                added = await enqueue(conn, order, status, due_at=self._clock())
                break
            else:
                return False
        self._wake.set()
        return added

    async def tick(self) -> int:
        """Claim what is due and fits the free slots, start those attempts; returns how many."""
        now = self._clock()
        async with self.system_pool.acquire() as conn:
            waiting = await due_organizations(conn, now)
        started = 0
        for org in waiting:
            # api deliveries first: no network, so no slot, never behind slow ones
            for item in await self._claim(org, now, API_BATCH, api_only=True):
                self._start(item, slot=False)
                started += 1
            allowed = self.slots.allowance(org, waiting)
            if allowed == 0:
                continue
            for item in await self._claim(org, now, allowed):
                self.slots.take(org)
                self._start(item, slot=True)
                started += 1
        return started

    async def _claim(
        self, org: str, now: datetime, limit: int, *, api_only: bool = False
    ) -> list[QueuedDelivery]:
        """Lease up to ``limit`` due deliveries of ``org`` (only api ones with ``api_only``) to
        this worker, in the organisation's tenant transaction (:func:`claim_due`)."""
        async with self.pool.acquire() as conn, tenant_transaction(conn, org):
            return await claim_due(
                conn,
                org,
                now,
                limit=limit,
                lease_s=self.config.lease_s,
                worker_id=self.worker_id,
                api_only=api_only,
            )

    def _start(self, item: QueuedDelivery, *, slot: bool) -> None:
        task = asyncio.create_task(self._attempt(item, slot=slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, item: QueuedDelivery, *, slot: bool = True) -> None:
        """One attempt of ``item``, begun again while PostgreSQL is away or restarting
        before the send (:func:`~stream_app.transient.retry_transient`; an outcome after the
        send is recorded by :func:`deliver` itself, so the send is not repeated)."""

        async def once() -> None:
            source = self.sources.get(item.source)
            async with self.pool.acquire() as conn, tenant_transaction(conn, item.organization_id):
                order = None if source is None else await source.reload(conn, item)
                if order is None:  # e.g. the schedule was deleted meanwhile
                    await remove(conn, item.organization_id, item.report_id)
                    return
            assert source is not None
            await deliver(
                self.pool,
                order,
                item.status,
                self.artifact_root,
                build_method(order.target, self.config),
                attempt=item.attempt,
                keys=self.keys,
                # the backoff counts from the end of the attempt, or from the injected clock
                now=self._injected_clock() if self._injected_clock else None,
                settle=source.settle,
            )

        try:
            await retry_transient(
                once,
                f"delivery of report {item.report_id} ({item.source})",
                retry_for_s=self.config.lease_s / 3,
            )
        except asyncpg.ForeignKeyViolationError as exc:
            # what the outcome refers to was deleted while the delivery was in flight (its
            # organisation offboarded): it has nowhere to go (an attacker round: an ERROR and
            # a traceback per delivery in flight at an offboarding)
            log.warning(
                "delivery of report %s (%s) of %r: its outcome refers to rows deleted meanwhile"
                " (%s; the organisation offboarded?); dropped",
                item.report_id,
                item.source,
                item.organization_id,
                exc.constraint_name,
            )
        except Exception:  # logged; the lease runs out and the row is attempted again
            log.exception("delivery of report %s (%s) failed", item.report_id, item.source)
        finally:
            if slot:
                self.slots.release(item.organization_id)
            self._wake.set()

    async def drain(self) -> None:
        """Wait for the attempts under way to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set: after each enqueue, freed slot, or ``poll_s`` seconds.

        A failing tick (database down) is logged and the loop goes on.
        """
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self.tick()
                except Exception:  # logged; the loop must outlive a failed tick
                    log.exception("delivery tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.config.poll_s)
        finally:
            await self.drain()
