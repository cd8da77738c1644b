"""The worker process: the Faust app with every agent, table, timer and HTTP view registered.

Import this module (not :mod:`stream_app.app`) to run a worker; ``wedding-engine worker``
does, after creating the topics and applying the database migrations.
"""

from __future__ import annotations

from stream_app.agents import bookings as _bookings  # noqa: F401
from stream_app.agents import delivery as _delivery  # noqa: F401
from stream_app.agents import interactions as _interactions  # noqa: F401
from stream_app.agents import offset_repair as _offset_repair  # noqa: F401
from stream_app.agents import payments as _payments  # noqa: F401
from stream_app.agents import retention as _retention  # noqa: F401
from stream_app.agents import scheduler as _scheduler  # noqa: F401
from stream_app.agents import suppliers as _suppliers  # noqa: F401
from stream_app.app import app
from stream_app.reports import agent as _report_agent  # noqa: F401
from stream_app.web import aggregation as _aggregation_views  # noqa: F401
from stream_app.web import audit as _audit_views  # noqa: F401
from stream_app.web import dashboard as _dashboard_views  # noqa: F401
from stream_app.web import debug as _debug_views  # noqa: F401
from stream_app.web import gdpr as _gdpr_views  # noqa: F401
from stream_app.web import occupancy as _occupancy_views  # noqa: F401
from stream_app.web import openapi as _openapi_views  # noqa: F401
from stream_app.web import probes as _probe_views  # noqa: F401
from stream_app.web import schedules as _schedule_views  # noqa: F401
from stream_app.web import streams as _stream_views  # noqa: F401
from stream_app.web import summaries as _summary_views  # noqa: F401
from stream_app.web import tokens as _token_views  # noqa: F401
from stream_app.web import updates as _update_views  # noqa: F401
from stream_app.web import views as _views

_views.register_routes()

__all__ = ["app"]
