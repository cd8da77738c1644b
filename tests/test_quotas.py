"""Per-organisation shares of a worker's slots (:mod:`stream_app.quotas`)."""

from __future__ import annotations

import asyncio

import pytest

from stream_app.quotas import SlotsBusyError, TenantSlots, org_share


def test_share_of_slots() -> None:
    assert [org_share(n, 0.5) for n in (1, 2, 3, 4)] == [1, 1, 1, 2]
    assert org_share(4, 1.0) == 4
    assert org_share(4, 0.01) == 1


async def test_a_flooding_tenant_holds_its_share_and_another_still_runs() -> None:
    slots = TenantSlots(total=2, per_org=1)
    release = asyncio.Event()
    started: list[str] = []

    async def job(org: str, wait_s: float) -> str:
        async with slots.slot(org, wait_s):
            started.append(org)
            await release.wait()
        return org

    # tenant A floods: 5 requests; only one runs, the others wait for A's share
    flood = [asyncio.create_task(job("a", 5)) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert started == ["a"]
    assert slots.held == {"a": 1}
    # tenant B is served at once from the slot A cannot take
    b = asyncio.create_task(job("b", 0.5))
    await asyncio.sleep(0.05)
    assert started == ["a", "b"]
    assert slots.held == {"a": 1, "b": 1}
    # a second request of B within its wait finds B's share in use
    with pytest.raises(SlotsBusyError) as busy:
        async with slots.slot("b", 0.1):
            pass
    assert busy.value.organization is True
    release.set()
    assert await b == "b"
    assert sorted(await asyncio.gather(*flood)) == ["a"] * 5
    assert slots.held == {"a": 0, "b": 0}
