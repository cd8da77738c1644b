"""API delivery (signed, expiring download links) and the dispatcher's non-sending paths:
skip when empty, a failed report, an altered file."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import pytest
from msgspec.structs import replace

from stream_app.crypto.keyring import KeyRing
from stream_app.delivery.api import (
    AUDIENCE,
    ApiMethod,
    LinkError,
    LinkSigner,
    LinkTargetGoneError,
    resolve_download,
    verify_link,
)
from stream_app.delivery.dispatch import delivery_config
from stream_app.delivery.log import fetch_run_log
from stream_app.delivery.targets import ApiTarget
from stream_app.reports.artifacts import open_artifact
from stream_app.schedules.model import Schedule
from stream_app.settings import Settings, load_delivery_settings
from tests.delivery.conftest import Deliverer
from tests.schedules.builders import per_org

NOW = datetime(2031, 1, 6, 10, 0, tzinfo=UTC)
SECRET = "test-link-secret-0123456789abcdefghijklmnop"


def api_schedule(**overrides: Any) -> Callable[[str], Schedule]:
    return per_org(
        "api",
        **{
            "output_formats": ("csv", "json"),
            "delivery": ApiTarget(link_ttl_seconds=3600),
            **overrides,
        },
    )


# --- links ------------------------------------------------------------------------------


def test_link_round_trip_and_expiry(signer: LinkSigner) -> None:
    link = signer.sign("org-1", "org-1/r1/report.csv", now=NOW, ttl_s=600, report_id="r1")
    assert link.url.startswith("https://reports.example.test/downloads/")
    assert link.expires_at == datetime(2031, 1, 6, 10, 10, tzinfo=UTC)
    claims = verify_link(link.url, SECRET, now=NOW + timedelta(seconds=599))
    assert (claims.organization_id, claims.path) == ("org-1", "org-1/r1/report.csv")
    with pytest.raises(LinkError, match="expired"):
        verify_link(link.url, SECRET, now=NOW + timedelta(seconds=600))


def _resign_payload(token: str, change: dict[str, Any]) -> str:
    """Swap the payload of a JWT, keeping its original signature (a tampered link)."""
    header, payload, signature = token.split(".")
    doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    doc.update(change)
    new = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    return f"{header}.{new}.{signature}"


def test_tampered_links_are_rejected(signer: LinkSigner) -> None:
    link = signer.sign("org-1", "org-1/r1/report.csv", now=NOW, ttl_s=600, report_id="r1")
    token = link.url.rsplit("/", 1)[1]
    for change in ({"path": "org-1/r2/report.csv"}, {"exp": int(NOW.timestamp()) + 10**6}):
        with pytest.raises(LinkError, match="invalid link"):
            verify_link(_resign_payload(token, change), SECRET, now=NOW)
    with pytest.raises(LinkError, match="invalid link"):
        verify_link(link.url, "another-secret-0123456789abcdefghijkl", now=NOW)
    # a token signed with the right key but for another purpose (audience) is refused
    other = jwt.encode(
        {"org": "org-1", "path": "org-1/r1/report.csv", "aud": "api", "iat": 1, "exp": 2**33},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(LinkError, match="invalid link"):
        verify_link(other, SECRET, now=NOW)
    far = jwt.encode(
        {
            "org": "org-1",
            "path": "org-1/r1/report.csv",
            "aud": "wedding-download",
            "rid": "r1",
            "jti": "j1",
            "iat": 1,
            "exp": 2**40,
        },
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(LinkError, match="out of range"):
        verify_link(far, SECRET, now=NOW)


def test_links_only_reach_the_organisations_files(signer: LinkSigner, tmp_path: Path) -> None:
    for path in ("org-2/r1/x.csv", "/etc/passwd", "org-1/../org-2/r1/x.csv"):
        with pytest.raises(LinkError):
            signer.sign("org-1", path, now=NOW, report_id="r1")
    # a forged token naming another tenant's path, correctly signed, is still refused
    forged = jwt.encode(
        {
            "org": "org-1",
            "path": "org-1/../../etc/passwd",
            "aud": "wedding-download",
            "rid": "r1",
            "jti": "j1",
            "iat": 1,
            "exp": 2**33,
        },
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(LinkError):
        verify_link(forged, SECRET, now=NOW)
    root = tmp_path / "store"
    (root / "org-1" / "r1").mkdir(parents=True)
    (root / "org-1" / "r1" / "x.csv").write_bytes(b"a,b\n")
    claims = verify_link(
        signer.sign("org-1", "org-1/r1/x.csv", now=NOW, report_id="r1").url, SECRET, now=NOW
    )
    assert resolve_download(root, claims).read_bytes() == b"a,b\n"
    missing = verify_link(
        signer.sign("org-1", "org-1/r1/y.csv", now=NOW, report_id="r1").url, SECRET, now=NOW
    )
    with pytest.raises(LinkTargetGoneError, match="was removed"):  # a 404, not a bad link
        resolve_download(root, missing)
    # a jti that is not a token id (it names the link in the audit log): refused
    for jti in ("j" * 129, "", "j\x00"):
        token = signer.sign("org-1", "org-1/r1/x.csv", now=NOW, report_id="r1").url.rsplit("/", 1)[
            1
        ]
        payload = jwt.decode(
            token, SECRET, algorithms=["HS256"], audience=AUDIENCE, options={"verify_iat": False}
        )
        long_jti = jwt.encode({**payload, "jti": jti}, SECRET, algorithm="HS256")
        with pytest.raises(LinkError, match="jti is not 1-128 printable ASCII"):
            verify_link(long_jti, SECRET, now=NOW)


def test_forged_claims_are_refused_as_invalid_links_not_500s() -> None:
    """An attacker round with links signed by the (development) secret: a ``rid`` breaking
    the id rule beside another report's path was served, revocable by nothing; a NUL in the
    path and a 5,000-character ``rid`` were 500s; an ``iat`` in the future escaped every
    revocation."""
    base: dict[str, object] = {
        "org": "org-1",
        "path": "org-1/r1/report.csv",
        "aud": "wedding-download",
        "rid": "r1",
        "jti": "j1",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 600,
    }
    ok = verify_link(jwt.encode(base, SECRET, algorithm="HS256"), SECRET, now=NOW)
    assert (ok.report_id, ok.path) == ("r1", "org-1/r1/report.csv")
    refused: list[tuple[dict[str, object], str]] = [
        ({"rid": "../org-2/r1"}, "an id claim breaks the id rule"),
        ({"rid": "r" * 5000}, "an id claim breaks the id rule"),
        ({"sid": "s/1"}, "an id claim breaks the id rule"),
        ({"rid": "r2"}, "path 'org-1/r1/report.csv' is not a file of report 'r2'"),
        ({"path": "org-1/r1/report.csv\x00"}, "is not a file of report 'r1'"),
        ({"path": "org-1/r1/sub/report.csv"}, "is not a file of report 'r1'"),
        ({"path": "org-1/r1/.."}, "is not a file of organisation"),
        ({"iat": int(NOW.timestamp()) + 61}, "issued in the future"),
    ]
    for change, reason in refused:
        token = jwt.encode({**base, **change}, SECRET, algorithm="HS256")
        with pytest.raises(LinkError, match=re.escape(reason)):
            verify_link(token, SECRET, now=NOW)
    # a signing clock a little ahead is allowed
    ahead = jwt.encode({**base, "iat": int(NOW.timestamp()) + 59}, SECRET, algorithm="HS256")
    assert verify_link(ahead, SECRET, now=NOW).report_id == "r1"


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LinkSigner(secret="short", base_url="https://x.test")
    delivery = load_delivery_settings({"WEDDING_SMTP_PORT": "2525", "WEDDING_SMTP_TLS": "starttls"})
    settings = Settings(link_secret=SECRET, jwt_secret="j" * 32, delivery=delivery)
    with pytest.raises(ValueError, match="WEDDING_LINK_SECRET"):
        delivery_config(Settings(link_secret=SECRET, jwt_secret=SECRET, delivery=delivery))
    config = delivery_config(settings)
    assert (config.smtp.port, config.smtp.start_tls, config.smtp.use_tls) == (2525, True, False)


# --- the api method through the dispatcher ---------------------------------------------


async def test_api_delivery_records_expiring_links(
    db: asyncpg.Pool,
    make_run: Any,
    signer: LinkSigner,
    artifact_root: Path,
    report_bytes: dict[str, bytes],
    delivering: Deliverer,
) -> None:
    run, (status,) = await make_run(api_schedule())
    keys = KeyRing(db)
    before = datetime.now(UTC).replace(microsecond=0)
    result = await delivering(run, status, ApiMethod(signer))
    assert result.outcome == "delivered" and len(result.links) == 2
    for link, artifact in zip(result.links, status.artifacts, strict=True):
        claims = signer.verify(link, now=datetime.now(UTC))
        assert claims.path == artifact.path
        assert before + timedelta(seconds=3600) <= claims.expires_at
        assert claims.expires_at <= before + timedelta(seconds=3602)
        assert resolve_download(artifact_root, claims) == artifact_root / artifact.path
        reader = await open_artifact(artifact_root, claims.organization_id, claims.path, keys)
        assert reader.read_all() == report_bytes[artifact.format]
        with pytest.raises(LinkError, match="expired"):
            signer.verify(link, now=datetime.now(UTC) + timedelta(seconds=3601))
    (entry,) = await delivering.log(run.run_id)
    assert entry.outcome == "delivered" and entry.method == "api"
    # None would read as JSON null and fail the comparison
    assert [x["url"] for x in json.loads(result.location or "null")] == list(result.links)


async def test_empty_report_is_skipped(
    db: asyncpg.Pool, make_run: Any, signer: LinkSigner, delivering: Deliverer
) -> None:
    run, (status,) = await make_run(api_schedule(skip_if_empty=True), rows=0)
    result = await delivering(run, status, ApiMethod(signer))
    assert (result.outcome, result.attempts, result.links) == ("skipped", 0, ())
    async with db.acquire() as conn:
        (entry,) = await fetch_run_log(conn, run.run_id)
        state = await conn.fetchval("SELECT status FROM schedule_runs WHERE id = $1", run.run_id)
    assert (entry.attempt, entry.outcome) == (0, "skipped")
    assert state == "skipped"


async def test_empty_report_is_delivered_without_skip_if_empty(
    make_run: Any, signer: LinkSigner, delivering: Deliverer
) -> None:
    run, (status,) = await make_run(api_schedule(skip_if_empty=False), rows=0)
    result = await delivering(run, status, ApiMethod(signer))
    assert result.outcome == "delivered" and len(result.links) == 2


async def test_failed_report_fails_the_run_with_its_cause(
    db: asyncpg.Pool, make_run: Any, signer: LinkSigner, delivering: Deliverer
) -> None:
    run, (status,) = await make_run(api_schedule())
    failed = replace(status, status="failed", artifacts=[], error="venue v9 has no partition")
    result = await delivering(run, failed, ApiMethod(signer))
    assert (result.outcome, result.attempts) == ("failed", 0)
    async with db.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, error FROM schedule_runs WHERE id = $1", run.run_id
        )
    assert row is not None and row["status"] == "failed"
    assert row["error"] == "report failed: venue v9 has no partition"


async def test_altered_artifact_is_not_delivered(
    make_run: Any, signer: LinkSigner, artifact_root: Path, delivering: Deliverer
) -> None:
    run, (status,) = await make_run(api_schedule())
    (artifact_root / status.artifacts[0].path).write_bytes(b"tampered")
    result = await delivering(run, status, ApiMethod(signer))
    assert result.outcome == "failed" and result.links == ()
    assert "fails authentication" in result.detail or "not an encrypted artifact" in result.detail


async def test_non_final_status_and_unknown_report_are_refused(
    make_run: Any, signer: LinkSigner, delivering: Deliverer
) -> None:
    run, (status,) = await make_run(api_schedule())
    with pytest.raises(ValueError, match="not final"):
        await delivering(run, replace(status, status="processing"), ApiMethod(signer))
    with pytest.raises(ValueError, match="not part of run"):
        await delivering(run, replace(status, report_id="other"), ApiMethod(signer))
