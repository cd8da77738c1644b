"""``wedding-engine org`` and ``venue``: register a tenant and its venues in PostgreSQL.

Synchronous tests: the commands run their own event loop, as from a shell."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from stream_app.cli import main
from stream_app.db.roles import APP_ROLE, as_role
from stream_app.settings import Settings


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("POSTGRES_DSN", as_role(settings.postgres_dsn, APP_ROLE))
    monkeypatch.setenv("KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    return settings


async def rows(settings: Settings, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def test_an_organisation_and_its_venues_are_created_then_updated(env: Settings) -> None:
    assert main(["org", "cli-org", "--zone", "Europe/Lisbon", "--name", "Quinta"]) == 0
    assert main(["venue", "cli-org", "barn", "--capacity", "2"]) == 0
    assert main(["venue", "cli-org", "garden"]) == 0
    assert main(["org", "cli-org", "--zone", "America/New_York", "--currency", "USD"]) == 0
    assert main(["venue", "cli-org", "barn", "--capacity", "3", "--name", "The Barn"]) == 0
    org = "SELECT id, name, time_zone, currency FROM organizations WHERE id = $1"
    want = [("cli-org", "cli-org", "America/New_York", "USD")]
    assert asyncio.run(rows(env, org, "cli-org")) == want
    venues = "SELECT id, name, capacity FROM venues WHERE organization_id = $1 ORDER BY id"
    assert asyncio.run(rows(env, venues, "cli-org")) == [
        ("barn", "The Barn", 3),
        ("garden", "garden", None),
    ]


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
    ],
)
def test_bad_arguments_name_the_argument(
    env: Settings, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["org", "cli-org2", "--zone", "UTC"]) == 0
    assert main(argv) == 2
    assert message in capsys.readouterr().err
