"""This worker's part of an organisation summary: the rows are read on the event loop, their
decoding and arithmetic run in another thread (an attacker's interactions summary over
150,000 clients held the loop 2.3 s, every tenant's requests on the worker waiting)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from stream_app.queries import scatter
from stream_app.queries.errors import QueryUnavailableError


class _Table:
    """A table stand-in whose changelog is named ``name``."""

    def __init__(self, name: str) -> None:
        self.changelog_topic = self
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


async def test_the_part_is_read_on_the_loop_and_computed_in_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scatter, "check_not_recovering", lambda: None)
    monkeypatch.setattr(scatter, "held_partitions", lambda t: [0, 2] if t.name == "a" else [1])
    loop_thread = threading.get_ident()
    seen: dict[str, int] = {}

    def compute(held: dict[str, list[int]]) -> Callable[[], Any]:
        seen["read"] = threading.get_ident()
        rows = [p for ps in held.values() for p in ps]  # what a scan would copy out

        def finish() -> Any:
            seen["finish"] = threading.get_ident()
            return sorted(rows)

        return finish

    got = await scatter.local_part([_Table("a"), _Table("b")], compute, "org-1")
    assert got == {"partitions": {"a": [0, 2], "b": [1]}, "part": [0, 1, 2]}
    assert seen["read"] == loop_thread and seen["finish"] != loop_thread


async def test_an_organisation_computes_one_summary_at_a_time_on_a_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An attacker's viewer ran eight summaries at once and the eight threads took the worker
    from every tenant. One part per organisation at a time: a second waits, and past
    ``SUMMARY_WAIT_S`` is a 503 ``busy``; another organisation's part runs beside it."""
    monkeypatch.setattr(scatter, "check_not_recovering", lambda: None)
    monkeypatch.setattr(scatter, "held_partitions", lambda t: [0])
    monkeypatch.setattr(scatter, "SUMMARY_WAIT_S", 0.3)
    monkeypatch.setattr(scatter, "_slots", None)
    release = threading.Event()

    def slow(held: dict[str, list[int]]) -> Callable[[], Any]:
        return lambda: release.wait(5) and "done"

    def quick(held: dict[str, list[int]]) -> Callable[[], Any]:
        return lambda: "quick"

    tables = [_Table("a")]
    first = asyncio.create_task(scatter.local_part(tables, slow, "org-a"))
    await asyncio.sleep(0.05)
    other = await scatter.local_part(tables, quick, "org-b")  # beside it, at once
    assert other["part"] == "quick"
    with pytest.raises(QueryUnavailableError) as refused:
        await scatter.local_part(tables, quick, "org-a")
    assert refused.value.code == "busy"
    assert "this organisation's summary" in refused.value.reason
    release.set()
    assert (await first)["part"] == "done"
    assert (await scatter.local_part(tables, quick, "org-a"))["part"] == "quick"  # its turn
