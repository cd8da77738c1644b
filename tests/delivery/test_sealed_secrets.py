"""Delivery secrets are sealed in PostgreSQL and opened only to deliver: the raw column holds
no secret, the webhook receiver (which checks the HMAC with the plaintext secret itself)
accepts the delivery, and a sealed secret copied to another organisation's schedule does not
open there."""

from __future__ import annotations

from typing import Any

import asyncpg

from stream_app.delivery.webhook import WebhookMethod
from stream_app.schedules.store import get_run
from tests.delivery.conftest import Deliverer
from tests.delivery.test_webhook import SECRET, Receiver, hook_schedule, receiver

__all__ = ["receiver"]  # the fixture, used by name


async def raw_secrets(db: asyncpg.Pool, org: str) -> str:
    value = await db.fetchval(
        "SELECT delivery_secrets::text FROM schedules WHERE organization_id = $1", org
    )
    assert isinstance(value, str)
    return value


async def test_webhook_secret_is_sealed_at_rest_and_signing_still_works(
    make_run: Any, receiver: tuple[Receiver, str], delivering: Deliverer, webhook: WebhookMethod
) -> None:
    recv, url = receiver
    run, (status,) = await make_run(hook_schedule(url))
    stored = await raw_secrets(delivering.db, run.schedule.organization_id)
    assert SECRET not in stored and "whsec" not in stored
    assert "wedding-sealed:v1:1:" in stored
    result = await delivering(run, status, webhook)
    assert result.outcome == "delivered", result.detail
    assert recv.bad_signatures == 0 and len(recv.accepted) == 1


async def test_a_sealed_secret_moved_to_another_tenant_does_not_open(
    make_run: Any, receiver: tuple[Receiver, str], delivering: Deliverer, webhook: WebhookMethod
) -> None:
    recv, url = receiver
    victim, _ = await make_run(hook_schedule(url))
    attacker, (status,) = await make_run(hook_schedule(url))
    # someone with write access to the table copies the victim's sealed secret
    async with delivering.db.acquire() as conn:
        await conn.execute(
            "UPDATE schedules SET delivery_secrets = $1::text::jsonb WHERE organization_id = $2",
            await raw_secrets(delivering.db, victim.schedule.organization_id),
            attacker.schedule.organization_id,
        )
        moved = await get_run(conn, attacker.run_id)
    assert moved is not None and moved.run_id == attacker.run_id
    result = await delivering(moved, status, webhook)
    assert result.outcome == "failed"
    assert "delivery secrets cannot be opened" in result.detail
    assert recv.calls == 0  # nothing was sent with a secret that is not this schedule's
