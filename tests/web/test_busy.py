"""The 503 ``busy`` answer of aggregations and rollups when no aggregation slot is free."""

from __future__ import annotations

import json

from stream_app.quotas import SlotsBusyError
from stream_app.web.aggregation import BUSY_RETRY_AFTER_S, slots_busy


def test_the_organisations_own_share_names_organization_id() -> None:
    answer = slots_busy(SlotsBusyError(organization=True)).response()
    body = json.loads(answer.body)  # type: ignore[arg-type]
    assert (answer.status, answer.headers["Retry-After"]) == (503, str(BUSY_RETRY_AFTER_S))
    assert body == {
        "error": {
            "code": "busy",
            "reason": "this organisation already runs its share of aggregations; retry later",
            "field": "organization_id",
        }
    }


def test_every_slot_taken_names_no_field() -> None:
    answer = slots_busy(SlotsBusyError(organization=False)).response()
    body = json.loads(answer.body)  # type: ignore[arg-type]
    assert (answer.status, answer.headers["Retry-After"]) == (503, str(BUSY_RETRY_AFTER_S))
    assert body == {
        "error": {
            "code": "busy",
            "reason": "too many aggregations running; retry later",
            "field": None,
        }
    }
