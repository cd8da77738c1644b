"""A worker's PostgreSQL logins at start: an unreachable server or a refused login is one line
naming the variable (an operator's trial: ``[Errno 111] Connect call failed`` or a 35-line
traceback before)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from stream_app.db.migrate import (
    DatabaseUnreachableError,
    check_worker_database,
    connect_login,
    server_of,
)
from stream_app.settings import Settings


def with_user_and_port(dsn: str, user: str | None = None, port: int | None = None) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user or parts.username}@{host}:{port or parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def test_an_unreachable_server_names_the_variable_and_the_address(
    settings: Settings,
) -> None:
    closed = with_user_and_port(settings.postgres_dsn, port=1)
    with pytest.raises(DatabaseUnreachableError) as caught:
        await check_worker_database(closed, settings.postgres_system_dsn)
    message = str(caught.value)
    assert message.startswith("cannot reach PostgreSQL at 127.0.0.1:1 (POSTGRES_DSN): "), message


async def test_a_refused_login_names_the_variable(settings: Settings) -> None:
    nobody = with_user_and_port(settings.postgres_system_dsn, user="nobody_here")
    with pytest.raises(DatabaseUnreachableError) as caught:
        await connect_login(nobody, "POSTGRES_SYSTEM_DSN")
    message = str(caught.value)
    where = server_of(settings.postgres_system_dsn)
    assert message.startswith(f"POSTGRES_SYSTEM_DSN: PostgreSQL at {where} refused the login: ")
    assert "nobody_here" in message


def test_server_of_never_shows_the_password() -> None:
    assert server_of("postgresql://u:secret@db.internal:6543/w") == "db.internal:6543"
    assert server_of("postgresql://u:secret@db.internal/w") == "db.internal:5432"
    assert server_of("host=db user=u password=secret") == "the server"
