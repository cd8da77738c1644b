"""The report agents: the router of ``report-requests`` and one agent per priority lane.

Thin: the router accepts each request (:func:`stream_app.reports.route.route_request`), a lane
agent claims and answers one request at a time per actor
(:func:`stream_app.reports.lanes.handle_lane_request`), each tried again while its error is
transient (:mod:`stream_app.transient`). Topics: :mod:`stream_app.topology`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from functools import partial
from typing import Any

from stream_app.app import app, settings
from stream_app.reports.lanes import handle_lane_request
from stream_app.reports.route import route_request
from stream_app.schemas.reports import PRIORITIES
from stream_app.topology import report_lane_topics, report_requests_topic
from stream_app.transient import handle_until_done


@app.agent(report_requests_topic, concurrency=2)
async def report_agent(stream: AsyncIterable[Any]) -> None:
    """Consume ``report-requests`` for ever and accept each request."""
    async for event in stream.events():  # type: ignore[attr-defined]
        # an agent that dies stops every request after it: errors are logged, transient
        # ones (a PostgreSQL or broker restart) first tried again (stream_app.transient)
        await handle_until_done(
            partial(route_request, event), f"report router: offset {event.message.offset}"
        )


def _lane_agent(priority: str) -> Any:
    async def lane(stream: AsyncIterable[Any]) -> None:
        async for event in stream.events():  # type: ignore[attr-defined]
            await handle_until_done(
                partial(handle_lane_request, event),
                f"report lane {priority}: offset {event.message.offset}",
            )

    lane.__name__ = lane.__qualname__ = f"report_lane_{priority}"
    lane.__doc__ = f"Generate the ``{priority}`` reports (concurrency from the settings)."
    return app.agent(
        report_lane_topics[priority],
        name=f"stream_app.agents.reports.report_lane_{priority}",
        concurrency=settings.report_lane_concurrency[priority],
    )(lane)


lane_agents = {p: _lane_agent(p) for p in PRIORITIES}
"""Priority → its lane agent."""
