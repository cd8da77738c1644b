"""This worker's part of an organisation summary: the rows are read on the event loop, their
decoding and arithmetic run in another thread (an attacker's interactions summary over
150,000 clients held the loop 2.3 s, every tenant's requests on the worker waiting)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from stream_app.queries import scatter


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

    got = await scatter.local_part([_Table("a"), _Table("b")], compute)
    assert got == {"partitions": {"a": [0, 2], "b": [1]}, "part": [0, 1, 2]}
    assert seen["read"] == loop_thread and seen["finish"] != loop_thread
