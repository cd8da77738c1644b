"""A table read nobody can answer right now (:mod:`stream_app.queries.errors`): its code and
reason, retriable for the report agent, a 503 naming the code for the HTTP layer."""

from __future__ import annotations

import pytest

from stream_app.errors import WeddingError
from stream_app.queries.errors import QueryUnavailableError
from stream_app.reports.errors import is_retriable
from stream_app.web.errors import api_error_of


def test_code_and_reason_are_kept_apart_and_the_reason_is_the_message() -> None:
    exc = QueryUnavailableError("owner_unavailable", "worker-b did not answer for partition 3")
    assert (exc.code, exc.reason) == (
        "owner_unavailable",
        "worker-b did not answer for partition 3",
    )
    assert str(exc) == "worker-b did not answer for partition 3"
    assert isinstance(exc, WeddingError)
    with pytest.raises(WeddingError, match=r"^worker-b did not answer"):
        raise exc


def test_the_report_agent_retries_it() -> None:
    assert QueryUnavailableError.retriable is True
    assert is_retriable(QueryUnavailableError("incomplete", "partition 2 read twice"))


def test_the_http_layer_answers_503_with_the_code() -> None:
    err = api_error_of(QueryUnavailableError("rebalancing", "no worker holds partition 1"))
    assert (err.status, err.code, err.reason) == (503, "rebalancing", "no worker holds partition 1")
