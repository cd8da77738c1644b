"""The query optimiser: measure an aggregation, try candidates in scratch, say what helps.

Part of the query layer (reports). :func:`optimize` takes the body of
``POST /orgs/{org}/aggregations`` and answers (all times in milliseconds, measured, never
derived from planner costs)::

    {"plan": <EXPLAIN JSON of the base query, tenant-sanitised>,
     "baseline": {"runs", "median_ms", "p95_ms", "min_ms", "max_ms", "buffers",
                  "checksum", "rows"},
     "candidates": [{"kind": "rollup" | "index" | "rewrite", "status", "definition",
                     "measured": {…same as baseline…} | null,
                     "planner_would_use": bool | null (index candidates only),
                     "same_result", "improvement", "reason"}, …],
     "rule": "…", "verdict": "improvement: …" | "no improvement", "best": <index> | null}

Measuring: ``runs`` repetitions (after one warm-up) of ``EXPLAIN (ANALYZE, BUFFERS, FORMAT
JSON)``, each run's time = planning + execution time as PostgreSQL reports it; ``buffers`` =
shared hit/read blocks of the top plan node, median over the runs; ``checksum`` = SHA-256 of
the shaped result rows (the rows ``POST /aggregations`` would answer), computed once by
running the statement itself.

No planner estimate is ever answered (:data:`ESTIMATE_KEYS` are stripped from the plan, and
no cost is reported): PostgreSQL's statistics (``pg_statistic``) cover every organisation's
rows of a shared table, so an estimated row count or cost for a filter on a value reveals
whether another organisation has rows with that value and roughly how many. What is answered
is the plan's shape (node types, relation and index names) and what was measured under RLS
(actual rows, loops, times, buffers).

Candidates:

- ``rollup``: the smallest rollup that answers the request (:func:`.rollups.proposal_for`),
  built inside a transaction that is rolled back, the request re-measured over it;
- ``index``: hypothetical indexes (HypoPG, schema ``hypopg``, when the server has it): judged
  by the planner only (``planner_would_use``: whether the plan with the hypothetical index
  uses it; no cost), never measured, never an improvement by themselves: an operator builds
  one and re-runs the optimiser;
- ``rewrite``: none is known to this version for this query shape (the list says so).

The rule (:data:`RULE`): a candidate improves only when its result checksum equals the
baseline's and its p95 is below the baseline's median; otherwise "no improvement".

Tenant isolation: every statement runs in :func:`stream_app.db.tenancy.tenant_transaction`
for the organisation (RLS), the plan is stripped of the counts of rows a filter removed
(rows of other organisations in a shared table) and each statement is bounded by
:data:`~.engine.STATEMENT_TIMEOUT_MS`, the runs by :data:`MAX_RUNS` and the whole by
:data:`BUDGET_S`. Times and buffers of a scan of a shared table include the pages of other
organisations' rows, as ``query_ms`` of an aggregation does.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson

from stream_app.aggregation.compiler import CompiledQuery, compile_request
from stream_app.aggregation.datasets import DATASETS
from stream_app.aggregation.engine import (
    PLAIN_INDEX_SCANS,
    STATEMENT_TIMEOUT_MS,
    AggregationResult,
    shape_result,
)
from stream_app.aggregation.request import AggregationRequest, GroupKey, request_from_dict
from stream_app.aggregation.rollup_store import build_all, insert_rollup
from stream_app.aggregation.rollups import (
    compile_from_rollup,
    definition_from_dict,
    mismatch,
    proposal_for,
)
from stream_app.db.tenancy import UnknownOrganizationError, tenant_transaction
from stream_app.errors import WeddingError

DEFAULT_RUNS = 5
MAX_RUNS = 9
"""Measured repetitions per variant (after one warm-up): at most this many."""
BUDGET_S = 60.0
"""Wall-time budget of one optimisation: further repetitions are skipped past it."""
RULE = (
    "a candidate improves only when its result checksum equals the baseline's and its p95 ms "
    "is below the baseline's median ms; planner costs never decide"
)
ESTIMATE_KEYS = frozenset(
    {
        "Plan Rows",
        "Plan Width",
        "Startup Cost",
        "Total Cost",
        "Original Hash Buckets",
        "Original Hash Batches",
        "Hash Buckets",
        "Hash Batches",
    }
)
"""Keys of an EXPLAIN plan node that come from the planner's estimates (statistics over every
organisation's rows): never answered."""
_LEAKY_KEYS = (
    frozenset(
        {"Rows Removed by Filter", "Rows Removed by Index Recheck", "Rows Removed by Join Filter"}
    )
    | ESTIMATE_KEYS
)


class _Rollback(WeddingError):
    """Raised to roll a scratch transaction back."""


def _sanitise(node: Any) -> Any:
    """The plan without counts of rows a filter removed (other tenants' rows) and without the
    planner's estimates (:data:`ESTIMATE_KEYS`)."""
    if isinstance(node, dict):
        return {k: _sanitise(v) for k, v in node.items() if k not in _LEAKY_KEYS}
    if isinstance(node, list):
        return [_sanitise(v) for v in node]
    return node


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def checksum(result: AggregationResult) -> str:
    """SHA-256 (hex) of the result rows as the HTTP API renders them, plus ``truncated``."""
    body = orjson.dumps({"rows": result.rows, "truncated": result.truncated})
    return hashlib.sha256(body).hexdigest()


async def _measure(
    conn: asyncpg.Connection,
    req: AggregationRequest,
    organization_id: str,
    zone: str,
    query: CompiledQuery,
    runs: int,
    deadline: float,
) -> tuple[dict[str, Any], Any]:
    """Measured figures of ``query`` and its (sanitised) plan; inside a tenant transaction."""
    explain = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query.sql}"
    times: list[float] = []
    hits: list[int] = []
    reads: list[int] = []
    plan: Any = None
    for i in range(runs + 1):
        if i > 1 and time.monotonic() > deadline:
            break
        raw = await conn.fetchval(explain, *query.params)
        doc = (orjson.loads(raw) if isinstance(raw, str) else raw)[0]
        if i == 0:
            continue  # warm-up
        times.append(float(doc["Planning Time"]) + float(doc["Execution Time"]))
        hits.append(int(doc["Plan"].get("Shared Hit Blocks", 0)))
        reads.append(int(doc["Plan"].get("Shared Read Blocks", 0)))
        plan = doc
    records = await conn.fetch(query.sql, *query.params)
    shaped = shape_result(req, organization_id, zone, query, records, 0.0, None)
    figures = {
        "runs": len(times),
        "median_ms": round(statistics.median(times), 3),
        "p95_ms": round(_p95(times), 3),
        "min_ms": round(min(times), 3),
        "max_ms": round(max(times), 3),
        "buffers": {
            "shared_hit": int(statistics.median(hits)),
            "shared_read": int(statistics.median(reads)),
        },
        "checksum": checksum(shaped),
        "rows": len(shaped.rows),
    }
    return figures, _sanitise(plan)


def _index_names(node: Any) -> set[str]:
    """Every ``Index Name`` of an EXPLAIN JSON plan (any depth)."""
    if isinstance(node, dict):
        found = {str(node["Index Name"])} if "Index Name" in node else set()
        for value in node.values():
            found |= _index_names(value)
        return found
    if isinstance(node, list):
        return set().union(*(_index_names(v) for v in node)) if node else set()
    return set()


async def _planner_uses(conn: asyncpg.Connection, query: CompiledQuery, index_name: str) -> bool:
    """Whether the planner's plan of ``query`` (not executed) uses the index ``index_name``."""
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {query.sql}", *query.params)
    doc = (orjson.loads(raw) if isinstance(raw, str) else raw)[0]
    return index_name in _index_names(doc["Plan"])


async def _enter(conn: asyncpg.Connection, organization_id: str) -> str:
    zone = await conn.fetchval(
        "SELECT o.time_zone, set_config('statement_timeout', $2, true),"
        " set_config('enable_indexscan', $3, true) FROM organizations o WHERE o.id = $1",
        organization_id,
        str(STATEMENT_TIMEOUT_MS),
        "on" if PLAIN_INDEX_SCANS else "off",
    )
    if zone is None:
        raise UnknownOrganizationError(f"organization_id: {organization_id!r} does not exist")
    return str(zone)


def _improves(candidate: dict[str, Any], baseline: dict[str, Any]) -> bool:
    return bool(
        candidate["checksum"] == baseline["checksum"]
        and candidate["p95_ms"] < baseline["median_ms"]
    )


def index_proposals(req: AggregationRequest) -> list[str]:
    """Column lists (after ``organization_id``) of indexes that could serve ``req``: the
    time range's field, then the equality-filtered fields; and one also holding the
    grouped and aggregated columns (an index-only scan)."""
    ds = DATASETS[req.dataset]
    lead: list[str] = []
    for flt in req.filters:
        if flt.op in ("eq", "in") and flt.field not in lead:
            lead.append(flt.field)
    if req.time_range is not None and req.time_range.field not in lead:
        lead.append(req.time_range.field)
    covering = list(lead)
    for key in req.group_by:
        name = key.field if isinstance(key, GroupKey) else key
        if name not in covering:
            covering.append(name)
    for m in req.metrics:
        if m.field is not None and m.field not in covering:
            covering.append(m.field)
    if ds.currency_field is not None and ds.currency_field not in covering:
        covering.append(ds.currency_field)
    out = [", ".join(["organization_id", *lead])] if lead else []
    out.append(", ".join(["organization_id", *covering]))
    return out


async def optimize(
    db: asyncpg.Pool | asyncpg.Connection,
    organization_id: str,
    request: AggregationRequest | Mapping[str, Any],
    *,
    runs: int = DEFAULT_RUNS,
) -> dict[str, Any]:
    """Measure ``request`` for ``organization_id`` and try candidates (module docstring).

    Args:
        db: a pool (a connection is borrowed) or a connection outside a transaction.
        organization_id: the tenant; every statement is scoped to it.
        request: the aggregation (an :class:`AggregationRequest` or its JSON dict).
        runs: measured repetitions per variant, clamped to 1..:data:`MAX_RUNS`.

    Returns:
        The answer described in the module docstring (JSON-ready).

    Raises:
        AggregationError: the request is invalid (``field`` is its JSON path).
        UnknownOrganizationError: no such organisation.
        asyncpg.QueryCanceledError: a measured statement ran over the statement timeout.
    """
    req = request if isinstance(request, AggregationRequest) else request_from_dict(dict(request))
    compile_request(req, organization_id, "UTC")  # refuse a bad request before any work
    runs = max(1, min(MAX_RUNS, runs))
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _optimize(conn, organization_id, req, runs)
    return await _optimize(db, organization_id, req, runs)


async def _optimize(
    conn: asyncpg.Connection, organization_id: str, req: AggregationRequest, runs: int
) -> dict[str, Any]:
    deadline = time.monotonic() + BUDGET_S
    async with tenant_transaction(conn, organization_id):
        zone = await _enter(conn, organization_id)
        base = compile_request(req, organization_id, zone)
        baseline, plan = await _measure(conn, req, organization_id, zone, base, runs, deadline)
        existing = [
            int(r["id"])
            for r in await conn.fetch(
                "SELECT id, definition FROM rollups WHERE organization_id = $1 AND dataset = $2"
                " ORDER BY id",
                organization_id,
                req.dataset,
            )
            if mismatch(req, definition_from_dict(orjson.loads(r["definition"]))) is None
        ]
    candidates = [
        await _rollup_candidate(conn, organization_id, req, baseline, runs, deadline, existing),
        *await _index_candidates(conn, organization_id, req, baseline),
        {
            "kind": "rewrite",
            "status": "none",
            "definition": None,
            "measured": None,
            "same_result": None,
            "improvement": False,
            "reason": "no rewrite rule of this version applies to a single-table aggregation",
        },
    ]
    improving = [i for i, c in enumerate(candidates) if c["improvement"]]
    best = min(improving, key=lambda i: candidates[i]["measured"]["median_ms"], default=None)
    if best is None:
        verdict = "no improvement"
    else:
        c = candidates[best]
        verdict = (
            f"improvement: {c['kind']} candidate {best}, median {c['measured']['median_ms']} ms"
            f" against {baseline['median_ms']} ms"
        )
    return {
        "organization_id": organization_id,
        "time_zone": zone,
        "sql": base.sql,
        "plan": plan,
        "baseline": baseline,
        "candidates": candidates,
        "rule": RULE,
        "verdict": verdict,
        "best": best,
    }


async def _rollup_candidate(
    conn: asyncpg.Connection,
    organization_id: str,
    req: AggregationRequest,
    baseline: dict[str, Any],
    runs: int,
    deadline: float,
    existing: list[int],
) -> dict[str, Any]:
    proposal = proposal_for(req)
    out: dict[str, Any] = {
        "kind": "rollup",
        "status": "not_applicable",
        "definition": proposal,
        "measured": None,
        "same_result": None,
        "improvement": False,
        "reason": None,
        "existing_rollups": existing,
    }
    if proposal is None:
        out["reason"] = (
            "distinct counts, percentiles and samples cannot be answered from a rollup"
            if req.sample is not None
            or any(
                m.op in ("distinct_count", "percentile_cont", "percentile_disc", "percentile")
                for m in req.metrics
            )
            else "the request uses two time fields"
        )
        return out
    rollup = definition_from_dict(proposal)
    measured: dict[str, Any] = {}
    try:
        async with tenant_transaction(conn, organization_id):
            zone = await _enter(conn, organization_id)
            rollup_id = await insert_rollup(conn, organization_id, rollup)
            started = time.perf_counter()
            await build_all(conn, organization_id, rollup_id, rollup, zone)
            measured["build_ms"] = round((time.perf_counter() - started) * 1000, 3)
            measured["rollup_rows"] = int(
                await conn.fetchval(
                    "SELECT count(*) FROM rollup_rows WHERE organization_id = $1"
                    " AND rollup_id = $2",
                    organization_id,
                    rollup_id,
                )
            )
            query = compile_from_rollup(req, rollup, rollup_id, organization_id, zone)
            figures, _ = await _measure(conn, req, organization_id, zone, query, runs, deadline)
            measured.update(figures)
            raise _Rollback
    except _Rollback:
        pass
    out.update(
        status="measured",
        measured=measured,
        same_result=measured["checksum"] == baseline["checksum"],
        improvement=_improves(measured, baseline),
        reason="built in a transaction that was rolled back; create it with POST /rollups",
    )
    return out


async def _index_candidates(
    conn: asyncpg.Connection,
    organization_id: str,
    req: AggregationRequest,
    baseline: dict[str, Any],
) -> list[dict[str, Any]]:
    ds = DATASETS[req.dataset]
    out: list[dict[str, Any]] = []
    for columns in index_proposals(req):
        quoted = ", ".join(f'"{c}"' for c in columns.split(", "))
        definition = f"CREATE INDEX ON {ds.table} ({quoted})"
        entry: dict[str, Any] = {
            "kind": "index",
            "status": "unavailable",
            "definition": definition,
            "measured": None,
            "planner_would_use": None,
            "same_result": None,
            "improvement": False,
            "reason": None,
        }
        out.append(entry)
        async with tenant_transaction(conn, organization_id):
            has_hypopg = await conn.fetchval(
                "SELECT to_regprocedure('hypopg.hypopg_create_index(text)') IS NOT NULL"
            )
            if not has_hypopg:
                entry["reason"] = (
                    "HypoPG is not installed in this database (Debian postgresql-15-hypopg, "
                    "CREATE EXTENSION hypopg SCHEMA hypopg): index candidates are not judged"
                )
                continue
            zone = await _enter(conn, organization_id)
            query = compile_request(req, organization_id, zone)
            try:
                await conn.execute("SELECT hypopg.hypopg_reset()")
                index_name = await conn.fetchval(
                    "SELECT indexname FROM hypopg.hypopg_create_index($1)", definition
                )
                uses = await _planner_uses(conn, query, str(index_name))
                await conn.execute("SELECT hypopg.hypopg_reset()")
            except asyncpg.PostgresError as exc:
                entry["reason"] = f"HypoPG refused it: {exc}"
                continue
        entry.update(
            status="planner_only",
            planner_would_use=uses,
            reason=(
                "hypothetical index (HypoPG): whether the planner would use it, nothing more "
                "(its cost estimates are withheld: they reflect every organisation's rows); "
                "not measured, so never an improvement by itself"
            ),
        )
    return out
