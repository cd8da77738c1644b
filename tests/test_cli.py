"""The command line (:mod:`stream_app.cli`): ``wedding-engine org`` and ``venue`` register a
tenant and its venues in PostgreSQL; ``wedding-engine token`` issues (recorded, audited, bounded
lifetime) and revokes; and a worker refuses the development secret.

Synchronous tests: the commands run their own event loop, as from a shell.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import jwt
import orjson
import pytest

from stream_app.cli import _require_new_report_id, build_parser, main
from stream_app.db.reports import insert_queued
from stream_app.db.roles import APP_ROLE, as_role
from stream_app.devservices.manager import ServiceSettings
from stream_app.settings import DEV_JWT_SECRET, Settings
from tests.conftest import HOTEL_CSV
from tests.e2e.helpers import booking_created

ORG = "cli-tokens"


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("POSTGRES_DSN", as_role(settings.postgres_dsn, APP_ROLE))
    monkeypatch.setenv("KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("WEDDING_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("USER", "operator")
    return settings


@pytest.fixture
def token_env(env: Settings) -> Settings:
    """:func:`env` with the organisation the token tests issue for."""
    assert main(["org", ORG, "--zone", "Europe/Lisbon"]) == 0
    return env


async def rows(settings: Settings, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``wedding-engine ARGS`` in a process of its own (``env``, run from ``cwd``), its output
    captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "stream_app.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("max_ttl", "lifetime"), [(None, 3600), ("600", 600), ("7200", 3600)])
def test_a_token_without_ttl_lives_an_hour_or_the_deployments_longest(
    token_env: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    max_ttl: str | None,
    lifetime: int,
) -> None:
    """A trial user's finding: with ``WEDDING_TOKEN_MAX_TTL_S`` under an hour, ``token``
    without ``--ttl`` was refused for its own default (``--ttl … got 3600``)."""
    if max_ttl is not None:
        monkeypatch.setenv("WEDDING_TOKEN_MAX_TTL_S", max_ttl)
    assert main(["token", "--org", ORG, "--user", "ana"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(
        token, token_env.jwt_secret, algorithms=["HS256"], audience="wedding-engine-api"
    )
    assert claims["exp"] - claims["iat"] == lifetime


def test_a_token_for_an_unregistered_venue_is_issued_with_a_warning(
    token_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trial user's finding: ``--venue nov`` (a typo) gave a token that reads nothing,
    silently."""
    assert main(["venue", ORG, "hall"]) == 0
    capsys.readouterr()
    argv = ["token", "--org", ORG, "--venue", "hall", "--venue", "nov", "--venue", "zz"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    claims = jwt.decode(
        out.strip(), token_env.jwt_secret, algorithms=["HS256"], audience="wedding-engine-api"
    )
    assert sorted(claims["venues"]) == ["hall", "nov", "zz"]
    assert [line for line in err.splitlines() if not line.startswith(("# jti", "# expires"))] == [
        f"warning: --venue: {v!r} is not a venue of {ORG!r}: the token reads nothing of it"
        f" until `wedding-engine venue {ORG} {v}` registers it"
        for v in ("nov", "zz")
    ]
    assert main(["token", "--org", ORG, "--venue", "hall"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_token_is_recorded_and_audited(
    token_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["token", "--org", ORG, "--user", "ana", "--role", "analyst", "--venue", "v1"]
    assert main([*argv, "--ttl", "7200"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(
        token, token_env.jwt_secret, algorithms=["HS256"], audience="wedding-engine-api"
    )
    assert (claims["org"], claims["sub"], claims["role"], claims["venues"]) == (
        ORG,
        "ana",
        "analyst",
        ["v1"],
    )
    assert claims["iss"] == "wedding-engine"
    assert claims["exp"] - claims["iat"] == 7200
    recorded = asyncio.run(
        rows(
            token_env,
            "SELECT organization_id, subject, role, venue_scope,"
            " extract(epoch FROM expires_at - issued_at)::int FROM tokens WHERE jti = $1",
            claims["jti"],
        )
    )
    assert recorded == [(ORG, "ana", "analyst", ["v1"], 7200)]
    audit = asyncio.run(
        rows(
            token_env,
            "SELECT organization_id, actor, details->>'role' FROM audit_log"
            " WHERE action = 'token.issued' AND target = $1",
            claims["jti"],
        )
    )
    assert audit == [(ORG, "cli:operator", "analyst")]
    # revoke it by id, then every token of the organisation issued before a time
    assert main(["token", "revoke", "--org", ORG, "--jti", claims["jti"]]) == 0
    said = capsys.readouterr()
    assert "1 recorded token(s)" in said.out and "warning" not in said.err
    # an id no recorded token has: recorded anyway (a token minted elsewhere), but said
    assert main(["token", "revoke", "--org", ORG, "--jti", "no-such-jti"]) == 1
    said = capsys.readouterr()
    assert "(0 recorded token(s))" in said.out
    assert said.err == (
        f"warning: --jti: no token of {ORG!r} recorded with jti 'no-such-jti'"
        " (a typo revokes nothing you issued; `token issue` prints each jti)\n"
    )
    # a time in the future is refused: it would refuse every token issued from now on too
    assert main(["token", "revoke", "--org", ORG, "--before", "9999-01-01T00:00:00+00:00"]) == 2
    refused = capsys.readouterr().err
    assert refused.startswith("error: --before: 9999-01-01T00:00:00+00:00 is in the future"), (
        refused
    )
    before = datetime.now(UTC).isoformat()
    assert main(["token", "revoke", "--org", ORG, "--before", before]) == 0
    revocations = asyncio.run(
        rows(
            token_env,
            "SELECT jti IS NOT NULL, issued_before IS NOT NULL FROM token_revocations"
            " WHERE organization_id = $1 ORDER BY id",
            ORG,
        )
    )
    assert revocations[-3:] == [(True, False), (True, False), (False, True)]
    audited = asyncio.run(
        rows(
            token_env,
            "SELECT count(*) FROM audit_log"
            " WHERE organization_id = $1 AND action = 'token.revoked'",
            ORG,
        )
    )
    assert int(str(audited[0][0])) >= 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["token", "--org", "does-not-exist"], "--org: no organisation 'does-not-exist'"),
        (["token", "--org", ORG, "--ttl", "3153600000"], "--ttl: must be between 1 and 2592000"),
        (["token", "--org", ORG, "--ttl", "0"], "--ttl: must be between"),
        (["token", "--org", "a/b"], "--org: 1-128 characters"),
        (["token", "revoke", "--org", ORG], "revoke: give exactly one of --jti and --before"),
        (["token", "revoke", "--org", ORG, "--before", "yesterday"], "--before: 'yesterday'"),
        (["token", "revoke", "--org", ORG, "--before", "2026-01-01T00:00"], "--before: give a"),
        (
            ["token", "revoke", "--org", "does-not-exist", "--jti", "j1"],
            "--org: no organisation 'does-not-exist'",
        ),
        (
            ["token", "revoke", "--org", ORG, "--jti", "a\x00b"],
            "--jti: a token id is 1-128 printable ASCII characters",
        ),
        # display names every report format can carry (an attacker round's failed reports)
        (
            ["org", "does-not-exist", "--zone", "UTC", "--name", "ctl\x01name"],
            "--name: control character '\\x01' at character 4",
        ),
        (
            ["org", "does-not-exist", "--zone", "UTC", "--name", "W" * 201],
            "--name: must be 1-200 characters, got 201",
        ),
        (
            ["venue", ORG, "v-long", "--name", "\udcff-not-utf8"],
            "--name: byte 0xFF at character 1 is not UTF-8 (is the terminal's encoding UTF-8?)",
        ),
        # a trial user's: an empty --name silently became the id
        (["venue", ORG, "v-empty", "--name", ""], "--name: must be 1-200 characters, got 0"),
        (["org", "does-not-exist", "--zone", "UTC", "--name", ""], "--name: must be 1-200"),
    ],
)
def test_bad_arguments_are_refused_naming_the_option(
    token_env: Settings, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    # nothing recorded for the refused organisation
    assert (
        asyncio.run(
            rows(token_env, "SELECT jti FROM tokens WHERE organization_id = 'does-not-exist'")
        )
        == []
    )


def test_a_token_is_not_signed_with_the_development_secret_outside_development_mode(
    token_env: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``WEDDING_JWT_SECRET`` and development mode, ``token`` refuses (every worker
    would refuse such a token) and records nothing."""
    monkeypatch.delenv("WEDDING_JWT_SECRET")
    monkeypatch.setenv("WEDDING_DEV_MODE", "0")
    assert main(["token", "--org", ORG, "--user", "nosecret", "--role", "viewer"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: WEDDING_JWT_SECRET: the development secret is public"), err
    assert err.count("\n") == 1  # one line
    assert DEV_JWT_SECRET not in err
    recorded = asyncio.run(rows(token_env, "SELECT jti FROM tokens WHERE subject = 'nosecret'"))
    assert recorded == []
    # development mode allows it: the token is signed with the development secret
    monkeypatch.setenv("WEDDING_DEV_MODE", "1")
    assert main(["token", "--org", ORG, "--user", "nosecret", "--role", "viewer"]) == 0
    claims = jwt.decode(
        capsys.readouterr().out.strip(),
        DEV_JWT_SECRET,
        algorithms=["HS256"],
        audience="wedding-engine-api",
    )
    assert claims["sub"] == "nosecret"


def test_a_command_outside_the_clone_says_no_services_were_found(tmp_path: Path) -> None:
    """Run from a folder without ``.state/services.json`` and without connection settings:
    the refused connection is explained (where the settings were looked for, how to start)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("POSTGRES_DSN", "KAFKA_BOOTSTRAP", "WEDDING_REDIS_URL", "WEDDING_STATE_DIR")
    }
    argv = [sys.executable, "-m", "stream_app.cli", "token", "--org", ORG, "--role", "viewer"]
    done = subprocess.run(
        argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(
        f"error: no running services found for this folder ({tmp_path}/.state/services.json):"
        " start them with `wedding-engine services up`"
    ), done.stderr
    assert "Connect call failed" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["send", "replay", "dead-letters"])
def test_a_command_using_a_broker_refuses_a_guessed_one(tmp_path: Path, command: str) -> None:
    """``send``, ``replay`` and ``dead-letters`` without KAFKA_BOOTSTRAP and without running
    services for the folder stop before connecting: the default 127.0.0.1:9092 could be
    someone else's broker (a listener there sees no connection)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("POSTGRES_DSN", "KAFKA_BOOTSTRAP", "WEDDING_REDIS_URL", "WEDDING_STATE_DIR")
    }
    _, event = booking_created(ORG, "guess-1", "b1", "v1", "2026-06-01", 100, "EUR")
    (tmp_path / "events.jsonl").write_bytes(event + b"\n")  # valid: it would be sent
    args = {
        "send": ["send", "wedding-bookings", "events.jsonl"],
        "replay": ["replay", str(HOTEL_CSV), "--no-history"],
        "dead-letters": ["dead-letters", "--limit", "5"],
    }
    sock = socket.socket()
    listener: socket.socket | None = sock
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 9092))
        sock.listen()
        sock.setblocking(False)
    except OSError:  # something else listens there: the exit status and message still tell
        sock.close()
        listener = None
    try:
        done = run_cli(args[command], env, tmp_path)
        if listener is not None:
            with pytest.raises(BlockingIOError):
                listener.accept()
    finally:
        if listener:
            listener.close()
    what, done_ = (
        ("read dead letters from", "nothing was read")
        if command == "dead-letters"
        else ("send events to", "nothing was sent")
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        f"error: no running services found for this folder ({tmp_path}/.state/services.json):"
        " start them with `wedding-engine services up`, or run the command from the folder that"
        " started them, or set WEDDING_STATE_DIR to that folder's .state (or POSTGRES_DSN and"
        f" KAFKA_BOOTSTRAP); `{command}` does not {what} a broker it only guessed (the"
        f" default 127.0.0.1:9092): {done_}\n"
    )


def refused_worker(env: dict[str, str]) -> str:
    """Run ``wedding-engine worker`` with the environment ``env``; its stderr, once it has
    refused to start (exit status 2)."""
    argv = [sys.executable, "-m", "stream_app.cli", "worker"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    return done.stderr


def test_a_worker_refuses_the_development_secret(settings: Settings) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("WEDDING_JWT_SECRET", "WEDDING_DEV_MODE")
    }
    env.update(
        KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        POSTGRES_DSN=as_role(settings.postgres_dsn, APP_ROLE),
    )
    stderr = refused_worker(env)
    assert "WEDDING_JWT_SECRET: the development secret is public" in stderr
    assert DEV_JWT_SECRET not in stderr  # the message does not print it


def test_an_organisation_and_its_venues_are_created_then_updated(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["org", "cli-org", "--zone", "Europe/Lisbon", "--name", "Quinta"]) == 0
    assert main(["venue", "cli-org", "barn", "--capacity", "2"]) == 0
    assert main(["venue", "cli-org", "garden"]) == 0
    assert (
        capsys.readouterr().out.splitlines()[-1] == "venue cli-org/garden: garden, capacity unknown"
    )
    assert capsys.readouterr().err == ""  # created: nothing replaced
    assert main(["org", "cli-org", "--zone", "America/New_York", "--currency", "USD"]) == 0
    # the name left out is replaced by the id, and said (a trial user lost a capacity so)
    assert capsys.readouterr().err == (
        "warning: --name was not given: name 'Quinta' replaced by the default 'cli-org' (each"
        " call sets every field; give --name Quinta to keep it)\n"
    )
    assert main(["venue", "cli-org", "barn", "--capacity", "3", "--name", "The Barn"]) == 0
    assert capsys.readouterr().err == ""  # every option given
    org = "SELECT id, name, time_zone, currency FROM organizations WHERE id = $1"
    want = [("cli-org", "cli-org", "America/New_York", "USD")]
    assert asyncio.run(rows(env, org, "cli-org")) == want
    venues = "SELECT id, name, capacity FROM venues WHERE organization_id = $1 ORDER BY id"
    assert asyncio.run(rows(env, venues, "cli-org")) == [
        ("barn", "The Barn", 3),
        ("garden", "garden", None),
    ]
    assert main(["venue", "cli-org", "barn"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "warning: --name was not given: name 'The Barn' replaced by the default 'barn' (each"
        " call sets every field; give --name 'The Barn' to keep it)",
        "warning: --capacity was not given: capacity 3 replaced by the default 'unknown' (each"
        " call sets every field; give --capacity 3 to keep it)",
    ]
    assert main(["org", "cli-org", "--zone", "UTC"]) == 0
    assert "currency 'USD' replaced by the default 'EUR'" in capsys.readouterr().err


def test_the_id_of_a_deleted_organisation_is_not_registered_again(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """An attacker round at the 20th stop: the live tables are keyed by organisation id, so a
    new organisation of a deleted one's id read its venue metrics and payments."""
    assert main(["org", "cli-gone", "--zone", "UTC"]) == 0
    asyncio.run(rows(env, "DELETE FROM organizations WHERE id = $1", "cli-gone"))
    ((deleted,),) = asyncio.run(
        rows(env, "SELECT deleted_at FROM deleted_organizations WHERE organization_id = $1",
             "cli-gone")
    )  # fmt: skip
    assert isinstance(deleted, datetime)
    capsys.readouterr()
    assert main(["org", "cli-gone", "--zone", "UTC"]) == 2
    assert capsys.readouterr().err == (
        f"error: ORG: 'cli-gone' is the id of an organisation deleted at {deleted.isoformat()};"
        " the live tables (venue metrics, payments, client and supplier rows) are keyed by"
        " organisation id and keep its rows, so a new organisation of this id would read them:"
        " choose another id\n"
    )
    assert asyncio.run(rows(env, "SELECT id FROM organizations WHERE id = $1", "cli-gone")) == []


def test_offboarding_shows_then_deletes_an_organisation_and_its_files(
    env: Settings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "artifacts"
    monkeypatch.setenv("WEDDING_ARTIFACT_DIR", str(store))
    org, other = "cli-leaving", "cli-staying"
    for o in (org, other):
        assert main(["org", o, "--zone", "UTC"]) == 0
        assert main(["venue", o, "hall"]) == 0
        (store / o / "r1").mkdir(parents=True)
        (store / o / "r1" / "a.csv.enc").write_bytes(b"x" * 1000)
    (store / org / "r2").mkdir()
    (store / org / "r2" / "b.json.enc").write_bytes(b"y" * 234)
    for o in (org, other):
        assert main(["token", "--org", o, "--role", "admin"]) == 0
    capsys.readouterr()
    # without --yes: shown, nothing deleted
    assert main(["offboard", org]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"organisation {org}: 1 venues, 0 reports, 0 schedules, 1 tokens, 0 bookings,"
        " 0 payments, 0 clients; 2 files (1,234 bytes)",
        "nothing deleted: run again with --yes to delete it (this cannot be undone)",
    ]
    assert asyncio.run(rows(env, "SELECT id FROM organizations WHERE id = $1", org)) == [(org,)]
    assert main(["offboard", org, "--yes"]) == 0
    done = capsys.readouterr().out.splitlines()
    ((deleted,),) = asyncio.run(
        rows(env, "SELECT deleted_at FROM deleted_organizations WHERE organization_id = $1", org)
    )
    assert isinstance(deleted, datetime)
    assert done[1].startswith(
        f"deleted at {deleted.isoformat()}: its PostgreSQL rows, 2 files (1,234 bytes);"
    )
    assert not (store / org).exists()
    assert (store / other / "r1" / "a.csv.enc").read_bytes() == b"x" * 1000  # the other's kept
    for table in ("organizations", "venues", "tokens"):
        column = "id" if table == "organizations" else "organization_id"
        sql = f"SELECT count(*) FROM {table} WHERE {column} = $1"
        assert asyncio.run(rows(env, sql, org)) == [(0,)]
        assert asyncio.run(rows(env, sql, other)) == [(1,)]
    # its last audit event records the deletion, with what it held
    ((action, details),) = asyncio.run(
        rows(
            env,
            "SELECT action, details FROM audit_log WHERE organization_id = $1"
            " ORDER BY at DESC, id DESC LIMIT 1",
            org,
        )
    )
    assert action == "organization.deleted"
    assert orjson.loads(str(details))["rows"]["tokens"] == 1
    # again: it is gone, and said so; the id is not registered again
    assert main(["offboard", org, "--yes"]) == 2
    assert capsys.readouterr().err == (
        f"error: ORG: {org!r} was already deleted at {deleted.isoformat()}\n"
    )
    assert main(["offboard", "cli-never-was"]) == 2
    assert "ORG: no organisation 'cli-never-was'" in capsys.readouterr().err
    assert main(["offboard", "../x"]) == 2
    assert "ORG: 1-128 characters" in capsys.readouterr().err


REPORT_ARGV = ["report", "--org", "cli-org2", "--from", "2016-01-01", "--to", "2016-01-31"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["org", "bad/id", "--zone", "UTC"], "ORG: 1-128 characters"),
        (["org", "cli-bad", "--zone", "Mars/Olympus"], "--zone: 'Mars/Olympus' is not an IANA"),
        (["org", "cli-bad", "--zone", "UTC", "--currency", "EUX"], "--currency: 'EUX' is not"),
        (["venue", "no-such-org", "barn"], "ORG: no organisation 'no-such-org'"),
        (["venue", "cli-org2", "b a r n"], "VENUE: 1-128 characters"),
        (["venue", "cli-org2", "barn", "--capacity", "-1"], "--capacity: must be between 0"),
        (["venue", "cli-org2", "barn", "--capacity", "2147483648"], "--capacity: must be betw"),
        (
            ["report", "--org", "cli-org2", "--from", "2016-12-31", "--to", "2016-01-01"],
            "--to: 2016-01-01 is before --from 2016-12-31",
        ),
        (  # s6 fresh user: it said $.output_formats
            [*REPORT_ARGV, "--formats", "xlsx"],
            "error: --formats: ['xlsx'] not supported (choose from ['csv', 'excel', 'json',",
        ),
        ([*REPORT_ARGV, "--formats", "csv,csv"], "error: --formats: a format is listed twice"),
        (
            ["report", "--org", "cli-org2", "--from", "1016-01-01", "--to", "1016-01-31"],
            "error: --from: must be between 1900-01-01 and",
        ),
    ],
)
def test_bad_arguments_name_the_argument(
    env: Settings, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["org", "cli-org2", "--zone", "UTC"]) == 0
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_report_id_already_used_is_refused_at_once(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The s15 fresh user's ``report --report-id <used>``: the router dead-letters such a
    request at once, and the command waited its whole timeout (120 s) for a status; now it
    is refused before anything is sent, naming the option, the report and its status."""
    assert main(["org", "cli-org3", "--zone", "UTC"]) == 0

    async def record() -> bool:
        conn = await asyncpg.connect(as_role(env.postgres_dsn, APP_ROLE))
        try:
            return await insert_queued(
                conn,
                report_id="used-1",
                organization_id="cli-org3",
                user_id="u",
                report_type="monthly_booking_summary",
                request={},
            )
        finally:
            await conn.close()

    assert asyncio.run(record()) is True
    argv = ["report", "--org", "cli-org3", "--from", "2016-01-01", "--to", "2016-01-31"]
    started = time.monotonic()
    assert main([*argv, "--report-id", "used-1", "--timeout", "60"]) == 2
    assert time.monotonic() - started < 30
    assert capsys.readouterr().err == (
        "error: --report-id: 'used-1' already names a report of 'cli-org3' (status queued);"
        " a report id is used once: choose another, or leave it out\n"
    )
    # another organisation's report of that id is no obstacle (ids are per organisation)
    assert main(["org", "cli-org4", "--zone", "UTC"]) == 0
    dsn = as_role(env.postgres_dsn, APP_ROLE)
    assert asyncio.run(_require_new_report_id(dsn, "cli-org4", "used-1")) is None
    with pytest.raises(ValueError, match="'used-1' already names a report of 'cli-org3'"):
        asyncio.run(_require_new_report_id(dsn, "cli-org3", "used-1"))


async def test_a_database_never_set_up_is_named_with_the_command_that_sets_it_up(
    services: ServiceSettings, tmp_path: Path
) -> None:
    """The s12 fresh user's wiped cluster (and anyone who skips ``init``): a 35-line traceback
    before; now one line naming ``wedding-engine init``."""
    name = f"never_set_up_{os.getpid()}"
    conn = await asyncpg.connect(services.postgres_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name}")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    dsn = services.postgres_dsn.rpartition("/")[0] + f"/{name}"
    env = {
        **os.environ,
        "POSTGRES_DSN": dsn,
        "POSTGRES_SYSTEM_DSN": dsn,
        "POSTGRES_OWNER_DSN": dsn,
        "KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "WEDDING_DEV_MODE": "1",
    }
    done = await asyncio.to_thread(
        run_cli, ["org", "acme", "--zone", "Europe/Lisbon"], env, tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(
        "does not exist: the database is not set up; run `wedding-engine init` (topics and"
        " migrations) first\n"
    ), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_a_wrong_kafka_bootstrap_is_named(tmp_path: Path) -> None:
    """An unreachable KAFKA_BOOTSTRAP the user set is what the error names (the s12 fresh
    user was told to start services instead)."""
    _, event = booking_created(ORG, "addr-1", "b1", "v1", "2026-06-01", 100, "EUR")
    (tmp_path / "events.jsonl").write_bytes(event + b"\n")
    env = {**os.environ, "KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    env.pop("POSTGRES_DSN", None)
    done = run_cli(["send", "wedding-bookings", "events.jsonl"], env, tmp_path)
    assert done.returncode == 2, done.stderr
    last = done.stderr.splitlines()[-1]  # after aiokafka's own log line
    assert last.startswith("error: cannot reach Kafka at 127.0.0.1:1 (KAFKA_BOOTSTRAP): "), last


def test_dead_letters_takes_org_like_the_other_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    for option in ("--org", "--organization", "--organisation"):
        assert parser.parse_args(["dead-letters", option, "acme"]).organization == "acme"
    # and the id rule as they do, before any broker is asked (the s15 fresh user: 0 shown)
    assert main(["dead-letters", "--organization", ".."]) == 2
    assert capsys.readouterr().err.startswith("error: --organization: 1-128 characters")


def test_send_warns_of_an_organisation_nobody_registered(
    env: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A trial user's finding: a typo in ``organization_id`` made a tenant nobody can read,
    silently. The events are still sent (the live tables take any organisation's)."""
    known, typo = f"send-{uuid.uuid4().hex[:8]}", f"sned-{uuid.uuid4().hex[:8]}"
    assert main(["org", known, "--zone", "UTC"]) == 0
    assert main(["venue", known, "v1"]) == 0
    lines = [
        booking_created(org, f"{org}-1", "b1", "v1", "2026-06-01", 100, "EUR")[1]
        for org in (known, typo)
    ]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    capsys.readouterr()
    assert main(["send", "wedding-bookings", str(tmp_path / "events.jsonl")]) == 0
    out, err = capsys.readouterr()
    assert out == "sent 2 event(s) to wedding-bookings\n"
    assert err == (
        f"warning: organisation {typo!r} is not registered: its events are in the live"
        f" tables, but no token can be issued for it until `wedding-engine org {typo}"
        " --zone …` registers it\n"
    )
    # a venue nobody registered: its bookings are folded, but no report shows them (a new
    # user's trial: a typo in venue_id made revenue vanish from the monthly summary)
    lines = [
        booking_created(known, f"{known}-{n}", f"b{n}", venue, "2026-06-01", 100, "EUR")[1]
        for n, venue in enumerate(["v1", "garden", "garden", "barn"], start=2)
    ]
    (tmp_path / "venues.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert main(["send", "wedding-bookings", str(tmp_path / "venues.jsonl")]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"warning: venue {v!r} of {known!r} is not registered: its bookings are in the live"
        " tables (venue metrics, summaries) but no report shows them until"
        f" `wedding-engine venue {known} {v}` registers it"
        for v in ("barn", "garden")
    ]
    # the same id in other letters: named (a trial user sent FU5-ORG for fu5-org)
    upper = known.upper()
    line = booking_created(upper, f"{upper}-1", "b1", "v1", "2026-06-01", 100, "EUR")[1]
    (tmp_path / "upper.jsonl").write_bytes(line + b"\n")
    assert main(["send", "wedding-bookings", str(tmp_path / "upper.jsonl")]) == 0
    assert capsys.readouterr().err.startswith(
        f"warning: organisation {upper!r} is not registered; did you mean {known!r}?: its"
        " events are in the live tables"
    )
    # and `report --org` says it the way `venue` and `token` do
    argv = ["report", "--org", upper, "--from", "2026-01-01", "--to", "2026-01-31"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"error: --org: no organisation {upper!r}; did you mean {known!r}?; create it first:"
        f" wedding-engine org {upper} --zone …\n"
    )


def test_a_reader_that_leaves_early_gets_no_error_message(tmp_path: Path) -> None:
    """A trial user's ``wedding-engine report … | head -1`` printed ``error: [Errno 32] Broken
    pipe``. Here the command's output (100,000 lines) goes into a real pipe whose reader
    closes after the first line."""
    script = (
        "import sys\n"
        "from stream_app import cli\n"
        "def many(_):\n"
        "    for n in range(100_000):\n"
        "        print('line', n)\n"
        "    return 0\n"
        "cli._cmd_init = many\n"
        "sys.exit(cli.main(['init']))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"line 0\n"
    proc.stdout.close()  # the reader leaves
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait(timeout=60) == 1
    assert err == b"", err
