"""``stream_app.web.errors.ApiError``: the answer's body, and nothing of a request echoed
whole (an attacker's 100,000-character body key came back in ``field``)."""

from __future__ import annotations

import orjson

from stream_app.web.errors import MAX_FIELD_CHARS, MAX_REASON_CHARS, ApiError


def body(error: ApiError) -> dict[str, dict[str, str]]:
    response = error.response()
    parsed: dict[str, dict[str, str]] = orjson.loads(bytes(response.body or b""))  # type: ignore[arg-type]
    return parsed


def test_the_answer_names_code_reason_and_field() -> None:
    error = ApiError(400, "invalid_field", "must be a date", field="$.date_from")
    assert error.response().status == 400
    assert body(error) == {
        "error": {"code": "invalid_field", "reason": "must be a date", "field": "$.date_from"}
    }
    # no field to name: the key is there all the same, null
    assert body(ApiError(503, "unavailable", "later")) == {
        "error": {"code": "unavailable", "reason": "later", "field": None}
    }


def test_long_reasons_and_fields_are_cut_with_their_length() -> None:
    key = "k" * 100_000
    got = body(ApiError(400, "invalid_field", f"{key!r} is not a field", field=f"$.{key}"))
    assert got["error"]["field"] == f"$.{key}"[:MAX_FIELD_CHARS] + "… (100002 characters)"
    reason = got["error"]["reason"]
    # the key, its two quotes and " is not a field"
    assert reason == f"{key!r} is not a field"[:MAX_REASON_CHARS] + "… (100017 characters)"


def test_control_characters_of_a_field_are_escaped() -> None:
    """Found by the s6 attacker: an unknown key ``a\\r\\nb`` came back raw in ``field``."""
    key = "a\r\nb\x00c\x1b[31md\u2028e\u0085f\x7fg h\u00e9"
    got = body(ApiError(400, "invalid_field", f"unknown field `{key}`", field=f"$.{key}"))
    escaped = "a\\u000d\\u000ab\\u0000c\\u001b[31md\\u2028e\\u0085f\\u007fg h\u00e9"
    assert got["error"]["field"] == f"$.{escaped}"
    assert got["error"]["reason"] == f"unknown field `{escaped}`"
    # escaped first, then cut: the length named is the escaped one's
    long = body(ApiError(400, "invalid_field", "x", field="$." + "\n" * 100))["error"]["field"]
    assert long == ("$." + "\\u000a" * 100)[:MAX_FIELD_CHARS] + "… (602 characters)"
