"""Rate-limit classes: admin routes count apart from reads (a flood of reads cannot stop an
admin from revoking the flooding token, found by the attack tests)."""

from __future__ import annotations

import pytest

from stream_app.settings import RATE_CLASSES, parse_limits
from stream_app.web.guard import RouteSpec
from stream_app.web.permissions import PUBLIC, Permission


@pytest.mark.parametrize(
    ("access", "expected"),
    [
        (Permission.TABLES_READ, "reads"),
        (Permission.REPORTS_READ, "reads"),
        (Permission.REPORTS_REQUEST, "reports"),
        (Permission.AGGREGATIONS_RUN, "aggregations"),
        (Permission.TOKENS_MANAGE, "admin"),
        (Permission.SCHEDULES_MANAGE, "admin"),
        (Permission.GDPR_MANAGE, "admin"),
        (Permission.RETENTION_MANAGE, "admin"),
        (Permission.AUDIT_READ, "admin"),
        (PUBLIC, "reads"),
    ],
)
def test_each_permission_has_its_class(access: Permission, expected: str) -> None:
    assert RouteSpec(access).limit_class == expected


def test_a_class_left_out_keeps_its_default() -> None:
    defaults = parse_limits(
        "d",
        "reads=1/minute,reports=2/minute,aggregations=3/minute,downloads=4/minute,admin=5/minute,"
        "cancels=6/minute",
        RATE_CLASSES,
    )
    got = parse_limits("WEDDING_RATE_LIMITS", "reads=9/second", RATE_CLASSES, defaults)
    assert got == {**defaults, "reads": "9/second"}
    with pytest.raises(ValueError, match="WEDDING_RATE_LIMITS: missing admin"):
        parse_limits(
            "WEDDING_RATE_LIMITS",
            "reads=1/minute,reports=2/minute,aggregations=3/minute,downloads=4/minute",
            RATE_CLASSES,
        )


def test_a_cancellation_counts_as_admin_for_admins_only() -> None:
    """Four analysts' cancellations of unknown report ids used up the organisation's whole
    ``admin`` budget, and its admins got 429 on token revocation and GDPR (an attacker
    round): an analyst's cancellation counts in ``cancels`` (not ``reports`` either, which
    its own flood may have used up), an admin's in ``admin``."""
    from stream_app.web.views import ROUTE_SPECS

    spec = ROUTE_SPECS[("POST", "/orgs/{org}/reports/{report_id}/cancel")]
    assert spec.limit_class_of("admin") == "admin"
    assert spec.limit_class_of("analyst") == "cancels"
    assert spec.limit_class_of("admin", venue_scoped=True) == "cancels"  # a venue manager
    assert RouteSpec(Permission.TOKENS_MANAGE).limit_class_of("admin") == "admin"
