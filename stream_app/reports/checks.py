"""A report type's validation over a range, not rendered (``POST /orgs/{org}/reports/validate``).

Part of the reports stage; reads what the type's builder reads (PostgreSQL inside
:func:`~stream_app.db.tenancy.tenant_transaction`, the live tables through
``ctx.read_venue_rows``) and writes nothing: no file, no ``reports`` row, no cache entry.

The type's own builder runs exactly as for a report (same queries, same figures, same
checks) and its :attr:`~stream_app.reports.model.ReportTable.validation` lines are answered
instead of being rendered, so the findings are by construction the ones the report would
carry. Each line starts with its severity, as every report type writes them
(:meth:`stream_app.reports.validation.Finding.line`, the occupancy and compliance reports):
``error:`` (the figures would be wrong), ``warning:`` (right, but may surprise), ``info:``.
A line without one of these prefixes is counted as an error, so a finding is never dropped.
A type that checks nothing (``monthly_booking_summary``) answers no findings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from stream_app.reports import registry
from stream_app.reports.types.base import ReportContext

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


def severity_of(line: str) -> Severity:
    """The severity a finding line starts with (``error: …``), ``error`` when none."""
    head = line.split(":", 1)[0].strip().lower()
    for severity in SEVERITIES:
        if head == severity:
            return severity
    return "error"


@dataclass(frozen=True, slots=True)
class ValidationAnswer:
    """The findings of one report type over one range.

    Attributes:
        organization_id / report_type / date_from / date_to: what was checked (local dates,
            inclusive).
        errors / warnings / infos: the report's finding lines of each severity, in the
            report's order, exactly as the report prints them.
        elapsed_ms: wall time of the checks (queries and computation), milliseconds.
    """

    organization_id: str
    report_type: str
    date_from: date
    date_to: date
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    infos: tuple[str, ...]
    elapsed_ms: float

    @property
    def ok(self) -> bool:
        """No errors (warnings and notes allowed)."""
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        """The HTTP answer: ``{"organization_id", "report_type", "date_from", "date_to", "ok",
        "counts": {"errors", "warnings", "infos"}, "errors": [line], "warnings": [line],
        "infos": [line], "elapsed_ms"}``."""
        return {
            "organization_id": self.organization_id,
            "report_type": self.report_type,
            "date_from": self.date_from.isoformat(),
            "date_to": self.date_to.isoformat(),
            "ok": self.ok,
            "counts": {
                "errors": len(self.errors),
                "warnings": len(self.warnings),
                "infos": len(self.infos),
            },
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "infos": list(self.infos),
            "elapsed_ms": round(self.elapsed_ms, 3),
        }


def split_findings(lines: tuple[str, ...] | list[str]) -> dict[Severity, tuple[str, ...]]:
    """``lines`` grouped by :func:`severity_of`, each group in the given order."""
    return {s: tuple(line for line in lines if severity_of(line) == s) for s in SEVERITIES}


async def validate(ctx: ReportContext) -> ValidationAnswer:
    """Run the builder of ``ctx.request.report_type`` and answer its validation findings.

    Raises:
        ReportInputError: the type's builder refused the request (unknown venue, a data
            filter the type does not take, ...); the message names the field first.
        KeyError: the type is not registered (requests are validated first).
        asyncpg and OSError errors: PostgreSQL cannot be reached.
    """
    req = ctx.request
    started = time.perf_counter()
    table = await registry.get(req.report_type).build(ctx)
    found = split_findings(tuple(table.validation))
    return ValidationAnswer(
        organization_id=req.organization_id,
        report_type=req.report_type,
        date_from=req.date_from,
        date_to=req.date_to,
        errors=found["error"],
        warnings=found["warning"],
        infos=found["info"],
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )
