"""Splitting a report's finding lines by the severity each starts with."""

from __future__ import annotations

from stream_app.reports.checks import severity_of, split_findings


def test_each_line_goes_to_the_severity_it_starts_with() -> None:
    lines = [
        "warning: capacity unknown for 1 venue(s) (v2); counted as 1 event per date",
        "error: payments.booking_id: 2 payments whose booking does not exist (e.g. p1, p2)",
        "info: v1: revenue in 2 currencies (EUR, GBP), shown separately",
        "Error: upper case is still an error",
        "a line without a severity",
        "warning: second warning",
    ]
    assert split_findings(lines) == {
        "error": (lines[1], lines[3], lines[4]),
        "warning": (lines[0], lines[5]),
        "info": (lines[2],),
    }


def test_a_line_without_a_known_prefix_is_never_dropped() -> None:
    assert severity_of("notice: something") == "error"
    assert severity_of("") == "error"
    assert severity_of("warning:x") == "warning"
