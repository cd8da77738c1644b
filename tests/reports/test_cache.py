"""Report cache keys, request validation of configuration and delivery, retry classes.

Pure functions only (no broker, no database): the canonical form is checked against keys
computed here by hand (sha256 over a JSON text written out in this file).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import orjson
import pytest

from stream_app.reports.cache import CacheEntry, cache_key
from stream_app.reports.errors import ReportFailure, is_retriable
from stream_app.reports.types.base import ReportInputError
from stream_app.schemas.base import EventValidationError, decode_event
from stream_app.schemas.reports import REPORT_CONFIGS, ReportRequest, check_configuration

BASE: dict[str, Any] = {
    "schema_version": 1,
    "report_id": "r1",
    "organization_id": "org-a",
    "user_id": "u1",
    "report_type": "monthly_booking_summary",
    "date_from": "2016-01-01",
    "date_to": "2016-03-31",
    "output_formats": ["json", "csv"],
    "requested_at": "2026-11-29T10:00:00+00:00",
    "data_filters": {"venue_id": ["b", "a"]},
}


def req(**over: Any) -> ReportRequest:
    return decode_event(orjson.dumps({**BASE, **over}), ReportRequest)


def test_key_is_sha256_of_the_canonical_request_written_out_by_hand() -> None:
    text = (
        '{"configuration":{},"data_filters":{"venue_id":["a","b"]},"date_from":"2016-01-01",'
        '"date_to":"2016-03-31","organization_id":"org-a","output_formats":["csv","json"],'
        '"report_type":"monthly_booking_summary"}'
    )
    assert cache_key(req()) == hashlib.sha256(text.encode()).hexdigest()


def test_equal_requests_in_any_order_share_a_key_and_identity_fields_do_not_count() -> None:
    reordered = decode_event(
        orjson.dumps(
            {
                "data_filters": {"venue_id": ["a", "b", "a"]},
                "output_formats": ["csv", "json"],
                **{k: v for k, v in reversed(BASE.items()) if k != "data_filters"},
                "report_id": "r2",
                "user_id": "someone-else",
                "priority": "critical",
                "cache_strategy": "refresh",
            }
        ),
        ReportRequest,
    )
    assert cache_key(reordered) == cache_key(req())
    assert cache_key(req(date_to="2016-04-30")) != cache_key(req())
    assert cache_key(req(output_formats=["csv"])) != cache_key(req())
    assert cache_key(req(organization_id="org-b")) != cache_key(req())


class _Cfg(msgspec.Struct, forbid_unknown_fields=True):
    top_n: int = 10
    currency: str = "EUR"


def test_configuration_is_validated_per_report_type(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EventValidationError) as err:
        req(configuration={"colour": "red", "bold": True})
    assert err.value.field == "$.configuration.bold"
    assert "['bold', 'colour']" in err.value.reason

    monkeypatch.setitem(REPORT_CONFIGS, "cfg_test", _Cfg)
    check_configuration("cfg_test", {"currency": "USD", "top_n": 3})
    with pytest.raises(ValueError, match=r"^\$\.configuration\.top_n: Expected `int`"):
        check_configuration("cfg_test", {"top_n": "three"})
    with pytest.raises(ValueError, match=r"^\$\.configuration\.extra: unknown key"):
        check_configuration("cfg_test", {"extra": 1, "top_n": 3})


def test_delivery_method_is_checked() -> None:
    assert req(delivery={"method": "api"}).delivery == {"method": "api"}
    with pytest.raises(EventValidationError) as err:
        req(delivery={"method": "pigeon"})
    assert err.value.field == "$.delivery.method"


def test_retriable_causes() -> None:
    assert is_retriable(FileExistsError("store"))
    assert is_retriable(asyncpg.ConnectionDoesNotExistError("gone"))
    assert is_retriable(ReportFailure("holder unreachable", retriable=True))
    assert not is_retriable(ReportFailure("organization_id: unknown"))
    assert not is_retriable(ReportInputError("data_filters.venue_id: unknown venue(s) ['x']"))
    assert not is_retriable(ValueError("bad"))


def test_freshness_needs_unexpired_and_unmoved_versions() -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    entry = CacheEntry(
        key="k",
        organization_id="o",
        report_id="r",
        report_type="monthly_booking_summary",
        artifacts=[],
        generated_at=now,
        expires_at=now.replace(hour=13),
        data_versions={"bookings": 7},
    )
    assert entry.is_fresh({"bookings": 7}, now.replace(minute=59))
    assert not entry.is_fresh({"bookings": 8}, now)
    assert not entry.is_fresh({"bookings": 7}, now.replace(hour=13))
