"""The worker process: the Faust app with every agent, table, timer and HTTP view registered.

Import this module (not :mod:`stream_app.app`) to run a worker; ``wedding-engine worker``
does, after creating the topics and applying the database migrations.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

import faust

from stream_app import logthrottle
from stream_app import pauses as _pauses  # noqa: F401
from stream_app.agents import bookings as _bookings  # noqa: F401
from stream_app.agents import delivery as _delivery  # noqa: F401
from stream_app.agents import interactions as _interactions  # noqa: F401
from stream_app.agents import offset_repair as _offset_repair  # noqa: F401
from stream_app.agents import payments as _payments  # noqa: F401
from stream_app.agents import report_cache as _report_cache  # noqa: F401
from stream_app.agents import reports as _report_agents  # noqa: F401
from stream_app.agents import retention as _retention  # noqa: F401
from stream_app.agents import scheduler as _scheduler  # noqa: F401
from stream_app.agents import suppliers as _suppliers  # noqa: F401
from stream_app.app import app, settings
from stream_app.reports import recovery as _report_recovery  # noqa: F401
from stream_app.web import aggregation as _aggregation_views  # noqa: F401
from stream_app.web import audit as _audit_views  # noqa: F401
from stream_app.web import dashboard as _dashboard_views  # noqa: F401
from stream_app.web import debug as _debug_views  # noqa: F401
from stream_app.web import gdpr as _gdpr_views  # noqa: F401
from stream_app.web import occupancy as _occupancy_views  # noqa: F401
from stream_app.web import openapi as _openapi_views  # noqa: F401
from stream_app.web import probes as _probe_views  # noqa: F401
from stream_app.web import query_stats as _query_stats_views  # noqa: F401
from stream_app.web import rollups as _rollup_views  # noqa: F401
from stream_app.web import schedules as _schedule_views  # noqa: F401
from stream_app.web import streams as _stream_views  # noqa: F401
from stream_app.web import summaries as _summary_views  # noqa: F401
from stream_app.web import tokens as _token_views  # noqa: F401
from stream_app.web import updates as _update_views  # noqa: F401
from stream_app.web import validate as _validate_views  # noqa: F401
from stream_app.web import views as _views

_views.register_routes()

__all__ = ["SHUTDOWN_FORCED_EXIT", "EngineWorker", "app"]

log = logging.getLogger(__name__)

SHUTDOWN_FORCED_EXIT = 75
"""Exit status of a worker whose graceful stop overran ``WEDDING_SHUTDOWN_TIMEOUT_S``."""


class EngineWorker(faust.Worker):
    """faust's worker with a deadline on its graceful stop.

    Stopping (SIGTERM, SIGINT) waits on the broker: the last offsets are committed, the
    producer flushed, the group left. Without a broker those calls retry for ever and the
    process never ends (issue 14). When the stop begins, a timer thread starts; if the
    process still runs ``settings.shutdown_timeout_s`` later it exits at once with
    :data:`SHUTDOWN_FORCED_EXIT`, as SIGKILL would leave it: what was not committed is read
    again, and what the tables hold is replayed from their changelogs, on the next start.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not _is_terminal(self.stdout):  # a log file gets no spinner's cursor escape codes
            self.spinner = None

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Set up faust's handlers, then throttle repeated failures on each of them
        (:mod:`stream_app.logthrottle`: a broker or database outage logs each kind of failure
        once with its traceback, then one line a minute with a count)."""
        super().on_setup_root_logger(logger, level)
        logthrottle.install(logger)

    async def on_stop(self) -> None:
        """Arm the shutdown deadline, then stop as faust does."""
        _arm_shutdown_deadline(settings.shutdown_timeout_s)
        await super().on_stop()


def _is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (a file, a pipe or None is not)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


_deadline_armed = threading.Event()


def _arm_shutdown_deadline(timeout_s: float) -> None:
    """Start (once) the daemon timer that ends the process ``timeout_s`` seconds from now."""
    if _deadline_armed.is_set():
        return
    _deadline_armed.set()

    def force_exit() -> None:
        log.error("graceful stop still running after %.0f s: exiting now", timeout_s)
        print(
            f"worker: graceful stop still running after {timeout_s:.0f} s "
            f"(WEDDING_SHUTDOWN_TIMEOUT_S): exiting with status {SHUTDOWN_FORCED_EXIT}",
            file=sys.stderr,
            flush=True,
        )
        os._exit(SHUTDOWN_FORCED_EXIT)

    timer = threading.Timer(timeout_s, force_exit)
    timer.daemon = True
    timer.name = "shutdown-deadline"
    timer.start()
