"""``/metrics`` renders at a bounded rate and never answers with a render older than the
request (stream_app.web.metrics_page; the 20th stop's attacker round, F1)."""

from __future__ import annotations

import asyncio
import time

from stream_app.web.metrics_page import PacedRenders


class Counter:
    """A page that says how many times it was rendered and what ``value`` was then."""

    def __init__(self) -> None:
        self.value = 0
        self.starts: list[float] = []

    def render(self) -> bytes:
        self.starts.append(time.monotonic())
        return f"{len(self.starts)} {self.value}".encode()


async def test_a_flood_shares_renders_at_the_paced_rate() -> None:
    page = Counter()
    paced = PacedRenders(page.render, min_gap_s=0.1)
    stop = time.monotonic() + 1.0
    answers = 0

    async def client() -> None:
        nonlocal answers
        while time.monotonic() < stop:
            await paced.get()
            answers += 1

    await asyncio.gather(*(client() for _ in range(16)))
    # one render per 0.1 s at most over ~1 s (+1 for the first and the last partial gap);
    # rendered once per request, 16 clients would have made thousands
    assert 9 <= paced.renders <= 12, paced.renders
    assert answers >= 16 * (paced.renders - 1)
    gaps = [b - a for a, b in zip(page.starts, page.starts[1:], strict=False)]
    assert min(gaps) >= 0.099, gaps


async def test_every_answer_is_a_render_begun_after_the_request() -> None:
    page = Counter()
    paced = PacedRenders(page.render, min_gap_s=0.05)
    for n in range(1, 6):
        page.value = n  # the state changes, then the page is asked for
        body = await paced.get()
        assert body.split()[1] == str(n).encode(), body
    # a request arriving while a render runs waits for the next one, which sees the change
    first = asyncio.ensure_future(paced.get())
    await asyncio.sleep(0)  # the first render's turn is scheduled
    page.value = 99
    second = await paced.get()
    assert (await first).split()[1] in (b"5", b"99")
    assert second.split()[1] == b"99"


async def test_a_failing_render_fails_its_callers_and_the_next_render_runs() -> None:
    calls = 0

    def render() -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("registry broken")
        return b"ok"

    paced = PacedRenders(render, min_gap_s=0.0)
    results = await asyncio.gather(paced.get(), paced.get(), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results), results
    assert await paced.get() == b"ok"


def test_the_stream_counters_are_series_at_zero_before_any_event() -> None:
    """An operator's trial: the events-in, outcome, re-send and changelog counters were absent
    until first incremented, so an alert on their first rise (``increase(x[5m]) > 0``) missed
    it. In a fresh process that loaded the worker's agents, every input topic's series is
    there at 0."""
    import subprocess
    import sys

    script = (
        "import stream_app.worker\n"
        "from prometheus_client import generate_latest\n"
        "from stream_app.observability import REGISTRY\n"
        "print(generate_latest(REGISTRY).decode())\n"
    )
    text = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    from stream_app.topics import INPUT_TOPICS

    for topic in INPUT_TOPICS:
        assert f'wedding_events_in_total{{topic="{topic}"}} 0.0' in text
        assert f'wedding_dedupe_expired_resends_total{{topic="{topic}"}} 0.0' in text
        for outcome in ("counted", "duplicate", "dead_lettered"):
            line = f'wedding_events_outcome_total{{outcome="{outcome}",topic="{topic}"}} 0.0'
            assert line in text
    assert 'wedding_changelog_interleaved_total{table="venue-bookings"} 0.0' in text
    # deliveries too (a new user's trial: nothing on /metrics said a webhook kept failing)
    for method in ("email", "webhook", "sftp", "api"):
        for outcome in ("delivered", "retrying", "failed", "skipped"):
            line = f'wedding_delivery_attempts_total{{method="{method}",outcome="{outcome}"}} 0.0'
            assert line in text
