"""Roles and what they may do: the one permission table of the HTTP API.

Every route declares the permission it needs (``@page(..., permission=Permission.X)``, see
:func:`stream_app.web.views.page`); a token's ``role`` claim grants a set of permissions
(:data:`ROLE_PERMISSIONS`). A caller whose role lacks the route's permission gets **403**
``{"error": {"code": "forbidden", "field": "role", "reason": "role 'viewer' lacks permission
'reports:request' ..."}}``.

Roles, each including the one before:

- ``viewer``: table reads, report status and downloads;
- ``analyst``: also report requests (and cancelling them), report validations and aggregations;
- ``admin``: also schedules, deliveries, tokens, GDPR actions, retention rules, audit reads,
  query statistics.

A worker-to-worker token (role ``internal``, :data:`~stream_app.schemas.tokens.INTERNAL_ROLE`:
a read one worker forwards to the worker holding the rows) grants only ``tables:read``, and
only at the routes declared ``forwarded=True`` (the venue metrics, a booking's payments, a
client's interactions, a supplier's activity and the three organisation summaries); every
other route refuses it with the same 403 ``field: "role"`` (:mod:`stream_app.web.guard`).

A route open to everyone (``/health``, ``/metrics``, signed download links, which carry their
own credential) declares :data:`PUBLIC`; a route that declares nothing is refused to every
caller (:data:`UNDECLARED`, fail closed) and fails ``tests/e2e/test_roles.py``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from stream_app.schemas.tokens import INTERNAL_ROLE, ROLES


class Permission(StrEnum):
    """One thing a route does; the value is what a 403 names."""

    TABLES_READ = "tables:read"
    """Live table reads: venue metrics and occupancy, payments, interactions, suppliers, the
    organisation summaries."""
    REPORTS_READ = "reports:read"
    """A report's status and its files."""
    REPORTS_REQUEST = "reports:request"
    """Request a report, cancel one the same user requested."""
    REPORTS_CANCEL_ANY = "reports:cancel-any"
    """Cancel any report of the organisation: another user's, a scheduled run's (an attacker
    round's analyst cancelled every scheduled run it saw on the live stream, the effect of
    pausing the schedules, which only admins may)."""
    REPORTS_VALIDATE = "reports:validate"
    """Run a report type's validation checks over a range (reads what the report reads)."""
    AGGREGATIONS_RUN = "aggregations:run"
    """Run an aggregation over the history, list the datasets."""
    ROLLUPS_MANAGE = "rollups:manage"
    """Run the query optimiser; create, list and delete rollups."""
    SCHEDULES_MANAGE = "schedules:manage"
    """Create, read, change, pause, resume and delete schedules."""
    DELIVERIES_READ = "deliveries:read"
    """A schedule's runs and delivery log."""
    TOKENS_MANAGE = "tokens:manage"
    """Revoke tokens."""
    GDPR_MANAGE = "gdpr:manage"
    """GDPR export and erasure."""
    RETENTION_MANAGE = "retention:manage"
    """Retention rules."""
    AUDIT_READ = "audit:read"
    """Read the audit log."""
    QUERY_STATS_READ = "query-stats:read"
    """The organisation's slowest recent queries (``GET /orgs/{org}/query-stats``)."""
    DEBUG_READ = "debug:read"
    """Worker internals (``/debug/*``, served only with ``WEDDING_DEBUG=1``)."""


class _Public:
    """The marker of routes without a bearer token (see the module docstring)."""

    def __repr__(self) -> str:
        return "PUBLIC"


class _Undeclared:
    """The marker of a route that declared no permission: refused to everyone."""

    def __repr__(self) -> str:
        return "UNDECLARED"


PUBLIC: Final = _Public()
UNDECLARED: Final = _Undeclared()
RouteAccess = Permission | _Public | _Undeclared
"""What a route declares: a permission, :data:`PUBLIC` or (by default) :data:`UNDECLARED`."""


_VIEWER = frozenset({Permission.TABLES_READ, Permission.REPORTS_READ})
_ANALYST = _VIEWER | {
    Permission.REPORTS_REQUEST,
    Permission.REPORTS_VALIDATE,
    Permission.AGGREGATIONS_RUN,
}
_ADMIN = frozenset(Permission)

ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "viewer": _VIEWER,
    "analyst": _ANALYST,
    "admin": _ADMIN,
    INTERNAL_ROLE: frozenset({Permission.TABLES_READ}),
}
"""The permissions each role grants (the internal role's only at the forwarded routes)."""


def allowed(role: str, permission: Permission) -> bool:
    """Whether ``role`` grants ``permission`` (an unknown role grants nothing)."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def least_role(permission: Permission) -> str:
    """The least role granting ``permission`` (for error messages)."""
    return next(r for r in ROLES if permission in ROLE_PERMISSIONS[r])
