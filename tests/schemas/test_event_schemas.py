"""Each malformed case is rejected with the offending field named."""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
import pytest

from stream_app.schemas import BookingEvent, EventValidationError, PaymentEvent, decode_event
from stream_app.schemas.interactions import ClientInteractionEvent
from stream_app.schemas.reports import ReportRequest

VALID = {
    "schema_version": 1,
    "event_id": "e-1",
    "organization_id": "org-1",
    "occurred_at": "2026-06-01T10:00:00+02:00",
    "event_type": "booking_created",
    "booking_id": "b-1",
    "venue_id": "v-1",
    "service_date": "2026-09-12",
    "amount_minor": 1250000,
    "currency": "EUR",
    "nights": 1,
}


def with_(**changes: object) -> bytes:
    doc = {**VALID, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


def test_valid_event_decodes_to_utc_instant() -> None:
    ev = decode_event(with_(), BookingEvent)
    assert ev.occurred_at.astimezone(UTC) == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    assert ev.service_date == date(2026, 9, 12)
    assert ev.amount_minor == 1250000


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (b"not json at all", "$", "not valid JSON"),
        (b"[1, 2]", "$", "object"),
        (with_(amount_minor=...), "$.amount_minor", "required"),
        (with_(amount_minor="1250000"), "$.amount_minor", "int"),
        (with_(amount_minor=12500.5), "$.amount_minor", "int"),
        (with_(amount_minor=-1), "$.amount_minor", ">= 0"),
        (with_(currency="EUX"), "$.currency", "is not an ISO 4217 currency code"),
        (with_(currency="XXX"), "$.currency", "ISO 4217 code without a minor unit"),
        (with_(currency="XAU"), "$.currency", "ISO 4217 code without a minor unit"),
        (
            with_(occurred_at="2026-06-01T10:00:00"),
            "$.occurred_at",
            "a timestamp without an offset: expected RFC 3339 with an offset, e.g.",
        ),
        (with_(occurred_at="2026-06-01"), "$.occurred_at", "expected RFC 3339 with an offset"),
        (with_(schema_version=2), "$.schema_version", "not supported"),
        (
            with_(event_type="booking_exploded"),
            "$.event_type",
            "Invalid enum value 'booking_exploded' (allowed: booking_cancelled, booking_created)",
        ),
        (with_(amount=5), "$.amount", "unknown field (did you mean `amount_minor`?)"),
        (with_(venu_id="v"), "$.venu_id", "unknown field (did you mean `venue_id`?)"),
        (with_(venue_id="a/b"), "$.venue_id", "must be 1-128 characters of A-Z"),
        (with_(unexpected="x"), "$.unexpected", "unknown field"),
        (with_(service_date="2026-02-30"), "$.service_date", "2026-02-30 is not a date of the"),
        (with_(service_date="2026-2-3"), "$.service_date", "not a calendar date in the form"),
        (with_(service_date="9999-12-31"), "$.service_date", "1900..2099"),
        (with_(service_date="1899-12-31"), "$.service_date", "1900..2099"),
        (with_(nights=10**12), "$.nights", "between 0 and 366"),
        (with_(nights=-1), "$.nights", "between 0 and 366"),
        (with_(guest_count=2**63), "$.guest_count", "between 0 and 100000"),
        (with_(lead_time_days=2**63), "$.lead_time_days", "between 0 and 36600"),
    ],
)
def test_malformed_events_name_the_field(raw: bytes, field: str, words: str) -> None:
    with pytest.raises(EventValidationError) as info:
        decode_event(raw, BookingEvent)
    assert info.value.field == field
    assert words in info.value.reason


def test_payment_and_interaction_rules() -> None:
    pay = {k: v for k, v in VALID.items() if k not in ("venue_id", "service_date", "nights")}
    pay.update(event_type="refund_issued", payment_id="p-1")
    assert decode_event(orjson.dumps(pay), PaymentEvent).amount_minor == 1250000
    rating = {
        "schema_version": 1,
        "event_id": "i-1",
        "organization_id": "org-1",
        "occurred_at": "2026-06-01T10:00:00Z",
        "event_type": "rating",
        "client_id": "c-1",
        "score": 6,
    }
    with pytest.raises(EventValidationError) as info:
        decode_event(orjson.dumps(rating), ClientInteractionEvent)
    assert info.value.field == "$.score"


def test_booked_interaction_is_valid_without_a_score_and_rejects_one() -> None:
    booked = {
        "schema_version": 1,
        "event_id": "i-2",
        "organization_id": "org-1",
        "occurred_at": "2026-06-01T10:00:00Z",
        "event_type": "booked",
        "client_id": "c-1",
        "inquiry_id": "inq-1",
        "supplier_id": "venue-1",
    }
    ev = decode_event(orjson.dumps(booked), ClientInteractionEvent)
    assert (ev.event_type, ev.inquiry_id, ev.supplier_id) == ("booked", "inq-1", "venue-1")
    minimal = {k: v for k, v in booked.items() if k not in ("inquiry_id", "supplier_id")}
    assert decode_event(orjson.dumps(minimal), ClientInteractionEvent).inquiry_id is None
    with pytest.raises(EventValidationError) as info:
        decode_event(orjson.dumps({**booked, "score": 5}), ClientInteractionEvent)
    assert info.value.field == "$.score"
    assert "booked" in info.value.reason
    with pytest.raises(EventValidationError) as info:
        decode_event(orjson.dumps({**booked, "schema_version": 2}), ClientInteractionEvent)
    assert info.value.field == "$.schema_version"


REPORT_REQUEST = {
    "schema_version": 1,
    "report_id": "r-1",
    "organization_id": "org-1",
    "user_id": "u-1",
    "requested_at": "2026-06-01T10:00:00Z",
    "output_formats": ["json"],
    "report_type": "monthly_booking_summary",
    "date_from": "2026-01-01",
    "date_to": "2026-01-31",
}


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"data_filters": {"venue_id": [1]}}, "$.data_filters.venue_id[0]", "got `int`"),
        ({"data_filters": {"venue_id": "v-1"}}, "$.data_filters.venue_id", "got `str`"),
        ({"data_filters": {"a": ["x"], "b": 7}}, "$.data_filters.b", "got `int`"),
        ({"date_from": "01/02/2026"}, "$.date_from", "calendar date in the form YYYY-MM-DD"),
        ({"date_from": "2026-02-30"}, "$.date_from", "2026-02-30 is not a date of the calendar"),
        ({"requested_at": "2026-06-01"}, "$.requested_at", "RFC 3339 with an offset"),
        ({"surprise": 1}, "$.surprise", "unknown field"),
        ({"data_filters": {"venue_id": ["v1"], "x": ["1"]}}, "$.data_filters.x", "not a filter"),
        ({"user_id": ...}, "$.user_id", "required field is missing"),
        (
            {"data_filters": {"venue_id": ["x" * 5000]}},
            "$.data_filters.venue_id",
            "'" + "x" * 62 + "… (5000 characters) breaks the id rule",
        ),
        (  # s6 attacker: a long dimension was cut to 64 characters without a sign
            {"data_filters": {"d" * 300: ["v1"]}},
            "$.data_filters." + "d" * 64 + "… (300 characters)",
            "not a filter dimension",
        ),
        (
            {"data_filters": {"k" * 200: 7}},
            "$.data_filters." + "k" * 64 + "… (200 characters)",
            "got `int`",
        ),
    ],
)
def test_report_requests_name_the_field_and_the_format(
    change: dict[str, object], field: str, reason: str
) -> None:
    """Fresh user and attacker findings of 2026-12-05: every refusal names the field
    (inside ``data_filters`` too), dates state their format, a huge id is not echoed."""
    doc = {k: v for k, v in {**REPORT_REQUEST, **change}.items() if v is not ...}
    with pytest.raises(EventValidationError) as info:
        decode_event(orjson.dumps(doc), ReportRequest)
    assert info.value.field == field
    assert reason in info.value.reason
    assert len(info.value.reason) < 400


def test_a_long_unknown_field_name_gets_no_suggestion_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """difflib's cost grows with the name (47 ms for 800,000 characters, on the fold agents'
    path): names longer than any field (65+ characters; a match needs a ratio of 0.6) are
    refused without the search."""
    import difflib

    from stream_app.schemas import base

    def no_search(*_: object, **__: object) -> list[str]:
        raise AssertionError("difflib consulted")

    monkeypatch.setattr(difflib, "get_close_matches", no_search)
    name = "x" * (base.SUGGEST_MAX_CHARS + 1)
    with pytest.raises(EventValidationError) as info:
        decode_event(with_(**{name: 1}), BookingEvent)
    assert (info.value.field, info.value.reason) == (f"$.{name}", "unknown field")
    longest = max(len(f) for f in BookingEvent.__struct_fields__)
    assert 2 * longest / (base.SUGGEST_MAX_CHARS + 1 + longest) < 0.6  # never a match anyway


@pytest.mark.parametrize(
    ("method", "reason"),
    [
        ("card\u202e", "character U+202E at character 5 is a control, format or unassigned"),
        ("web\x00", "character U+0000 at character 4 is a control, format or unassigned"),
        ("a\u200bb", "character U+200B at character 2"),
        ("x" * 101, "at most 100 characters, got 101"),
        ("", "'' is blank or has spaces around it"),
        (" ", "' ' is blank or has spaces around it"),
        (" card", "' card' is blank or has spaces around it"),
    ],
)
def test_free_text_labels_are_plain_text(method: str, reason: str) -> None:
    """A trial user's ``method`` with a right-to-left override and ``channel`` with a NUL
    were kept (and reached GDPR exports); both labels are plain text now."""
    pay = {k: v for k, v in VALID.items() if k not in ("venue_id", "service_date", "nights")}
    pay.update(event_type="payment_received", payment_id="p-1", method=method)
    with pytest.raises(EventValidationError) as info:
        decode_event(orjson.dumps(pay), PaymentEvent)
    assert info.value.field == "$.method" and reason in info.value.reason
    inquiry = {
        "schema_version": 1,
        "event_id": "i-1",
        "organization_id": "org-1",
        "occurred_at": "2026-06-01T10:00:00Z",
        "event_type": "inquiry",
        "client_id": "c-1",
        "channel": method,
    }
    with pytest.raises(EventValidationError) as info:
        decode_event(orjson.dumps(inquiry), ClientInteractionEvent)
    assert info.value.field == "$.channel" and reason in info.value.reason
    for fine in ("card", "virement bancaire", "カード", "W\u0301eb"):
        pay["method"] = inquiry["channel"] = fine
        assert decode_event(orjson.dumps(pay), PaymentEvent).method == fine
        assert decode_event(orjson.dumps(inquiry), ClientInteractionEvent).channel == fine


@pytest.mark.parametrize("amount", ["840.00", 840.5, 1e5])
def test_a_money_type_error_says_minor_units(amount: object) -> None:
    pay = {k: v for k, v in VALID.items() if k not in ("venue_id", "service_date", "nights")}
    pay.update(event_type="payment_received", payment_id="p-1", amount_minor=amount)
    with pytest.raises(EventValidationError) as info:
        decode_event(orjson.dumps(pay), PaymentEvent)
    assert info.value.field == "$.amount_minor"
    assert info.value.reason.endswith(
        ": an integer number of minor units (cents), e.g. 84000 for 840.00"
    )
