"""What one live-update stream may see and asked to see (``GET /orgs/{org}/updates``).

Part of the HTTP layer; pure (no I/O). A message of ``realtime-metrics-updates`` is shown to a
stream when all of these hold:

- its ``organization_id`` is the token's organisation and its key starts with ``<org>/``
  (both: the key is what Kafka partitions by, the field is what the body claims);
- ``metric_update`` (a venue's row: the key's entity is the venue): the venue is in the token's
  venue scope (if any) and in the ``venue`` filter (if given), the ``metric`` in the ``metric``
  filter (if given);
- ``generic_metric_update`` (a booking's, client's or supplier's row: no venue): not to a
  venue-scoped token, not when a ``venue`` filter is given, the metric in the ``metric`` filter;
- ``report_status``: the role grants ``reports:read``, ``report_status`` is in the ``metric``
  filter (if given; the ``venue`` filter does not apply to reports); for a venue-scoped token
  the report must be limited to its venues (checked against PostgreSQL by the caller:
  :attr:`Verdict.CHECK_REPORT`);
- any other ``kind``: to tokens without a venue scope and without filters only (unknown fields
  and kinds are passed through unchanged, so new ones reach the unscoped dashboards).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from stream_app.schemas.ids import ID_RULE, is_valid_id, quoted
from stream_app.topics import STREAM_OF_METRIC
from stream_app.web.auth import Principal
from stream_app.web.errors import ApiError
from stream_app.web.permissions import Permission, allowed

REPORT_STATUS = "report_status"
"""The ``metric`` filter value selecting report status changes."""

KNOWN_METRICS: frozenset[str] = frozenset({*STREAM_OF_METRIC, REPORT_STATUS})
"""The values the ``metric`` filter accepts: the tables' metrics and :data:`REPORT_STATUS`."""
MAX_FILTER_VALUES = 100
_METRIC = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Verdict(Enum):
    """Whether a message goes to a stream."""

    SHOW = "show"
    HIDE = "hide"
    CHECK_REPORT = "check_report"
    """A report status for a venue-scoped token: shown if the report is within its scope."""


@dataclass(frozen=True, slots=True)
class UpdateFilter:
    """One stream's caller and filters.

    Attributes:
        organization_id: the token's organisation.
        scope: the token's venues (None = every venue).
        reports: the role may read report statuses.
        metrics: the ``metric`` filter (None = every metric and report statuses).
        venues: the ``venue`` filter (None = no venue filter).
    """

    organization_id: str
    scope: frozenset[str] | None
    reports: bool
    metrics: frozenset[str] | None
    venues: frozenset[str] | None

    def verdict(self, key: bytes, doc: dict[str, Any]) -> Verdict:
        """Whether the message with ``key`` and decoded body ``doc`` goes to this stream."""
        org = self.organization_id
        if doc.get("organization_id") != org or not key.startswith(org.encode() + b"/"):
            return Verdict.HIDE
        kind = doc.get("kind")
        metric = doc.get("metric")
        if kind == "metric_update":
            venue = doc.get("key")
            if self.scope is not None and venue not in self.scope:
                return Verdict.HIDE
            if self.venues is not None and venue not in self.venues:
                return Verdict.HIDE
            return self._metric(metric)
        if kind == "generic_metric_update":
            if self.scope is not None or self.venues is not None:
                return Verdict.HIDE
            return self._metric(metric)
        if kind == REPORT_STATUS:
            if not self.reports or (self.metrics is not None and REPORT_STATUS not in self.metrics):
                return Verdict.HIDE
            return Verdict.CHECK_REPORT if self.scope is not None else Verdict.SHOW
        unfiltered = self.scope is None and self.venues is None and self.metrics is None
        return Verdict.SHOW if unfiltered else Verdict.HIDE

    def _metric(self, metric: object) -> Verdict:
        if self.metrics is not None and metric not in self.metrics:
            return Verdict.HIDE
        return Verdict.SHOW


def _values(raw: str | None, name: str) -> frozenset[str] | None:
    if raw is None:
        return None
    values = [v.strip() for v in raw.split(",")]
    if not values or any(not v for v in values):
        raise ApiError(400, "invalid_field", f"{name}: a comma-separated list, no empty item", name)
    if len(values) > MAX_FILTER_VALUES:
        raise ApiError(400, "invalid_field", f"{name}: at most {MAX_FILTER_VALUES} values", name)
    return frozenset(values)


def parse_filter(principal: Principal, metric: str | None, venue: str | None) -> UpdateFilter:
    """The filter of a stream from the token and the ``metric``/``venue`` query parameters
    (comma-separated lists).

    Raises:
        ApiError: 400 ``invalid_field`` naming ``metric`` or ``venue`` (a malformed name or
            id); 403 ``forbidden`` naming ``venue`` when it names a venue outside the token's
            scope.
    """
    metrics = _values(metric, "metric")
    for m in metrics or ():
        if not _METRIC.match(m):
            # not echoed: an attacker round sent a token there and had it answered back
            raise ApiError(
                400,
                "invalid_field",
                "metric: a value is not a metric name (a-z first, then 0-63 of a-z, 0-9, _)",
                "metric",
            )
        if m not in KNOWN_METRICS:
            raise ApiError(
                400,
                "invalid_field",
                f"metric: {m!r} is not one of {sorted(KNOWN_METRICS)} (a stream filtered on it"
                " would stay empty)",
                "metric",
            )
    venues = _values(venue, "venue")
    for v in venues or ():
        if not is_valid_id(v):
            raise ApiError(
                400, "invalid_field", f"venue: must be {ID_RULE}, got {quoted(v)}", "venue"
            )
    if principal.venues is not None and venues is not None and not venues <= principal.venues:
        outside = sorted(venues - principal.venues)
        raise ApiError(403, "forbidden", f"the token's venue scope excludes {outside}", "venue")
    return UpdateFilter(
        organization_id=principal.organization_id,
        scope=principal.venues,
        reports=allowed(principal.role, Permission.REPORTS_READ),
        metrics=metrics,
        venues=venues,
    )
