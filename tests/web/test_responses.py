"""``json_response``: the same JSON as ``json.dumps`` writes, encoded with orjson."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from stream_app.web.responses import json_response


def test_the_answer_decodes_to_what_json_dumps_writes() -> None:
    data = {"venue_id": "v1", "periods": [{"bookings": 3, "booked_minor": {"EUR": 12_345}}],
            "none": None, "ok": True, "ratio": 0.25, "tuple": (1, 2)}  # fmt: skip
    resp = json_response(data, status=201, headers={"Retry-After": "3"})
    assert resp.status == 201
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.headers["Retry-After"] == "3"
    assert isinstance(resp.body, bytes)
    assert json.loads(resp.body) == json.loads(json.dumps(data))


def test_integer_keys_are_strings_and_text_is_utf8() -> None:
    resp = json_response({1: "Zoë", "k": {2: 3}})
    assert isinstance(resp.body, bytes)
    assert json.loads(resp.body) == {"1": "Zoë", "k": {"2": 3}}
    assert "Zoë".encode() in resp.body  # UTF-8, not a \u escape


def test_an_integer_beyond_64_bits_falls_back_to_the_standard_encoder() -> None:
    big = 2**70 + 1  # orjson refuses it; json.dumps writes it exactly
    resp = json_response({"amount_minor": big})
    assert isinstance(resp.body, bytes)
    assert json.loads(resp.body) == {"amount_minor": big}


def test_a_value_neither_encoder_writes_raises() -> None:
    with pytest.raises(TypeError):
        json_response({"amount": Decimal("1.10")})
