"""docker-compose.yml, the Dockerfile and deploy/: valid, runnable by the CLI, named like the
settings, with the PostgreSQL roles of the security model.

The compose file is checked against the Compose Specification's JSON schema (vendored in
tests/deploy/schemas, see its README). Docker is not needed: the roles script runs against the
session's real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
from asyncio.subprocess import PIPE
from glob import glob
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import jsonschema
import pytest
import yaml

from stream_app.db.roles import APP_ROLE, OWNER_ROLE, ROLES_SQL, SYSTEM_ROLE
from stream_app.settings import Settings, load_settings
from tests.deploy.helpers import PYTHON_VARIABLES, ROOT, dockerfile, parse_cli, variables_read

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
SCHEMA = json.loads((ROOT / "tests" / "deploy" / "schemas" / "compose-spec.json").read_text())
INTERPOLATION = re.compile(r"\$\{([A-Za-z0-9_]+)(?::?[-?][^}]*)?\}")


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # anchors and << merged
    return doc


def env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {k: v for k, v in pairs}


def interpolate(value: str) -> str:
    """``value`` with every ``${VAR...}`` replaced by deploy/.env.example's value."""
    example = env_example()
    return INTERPOLATION.sub(lambda m: example[m.group(1)], value)


def engine_services() -> dict[str, dict[str, Any]]:
    """The services that run the engine's image."""
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if str(svc.get("image", "")).startswith("wedding-engine")
    }


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(compose(), SCHEMA, cls=jsonschema.Draft7Validator)


def test_the_schema_refuses_a_misspelt_key() -> None:
    doc = compose()
    doc["services"]["worker-1"]["depend_on"] = doc["services"]["worker-1"].pop("depends_on")
    with pytest.raises(jsonschema.ValidationError, match="depend_on"):
        jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft7Validator)


def test_every_command_line_is_one_the_cli_accepts() -> None:
    _, entrypoint, cmd = dockerfile()
    assert entrypoint == ["wedding-engine"]
    assert parse_cli(cmd).command == "worker"
    commands = {name: parse_cli(svc["command"]).command for name, svc in engine_services().items()}
    assert commands == {"init": "init", "worker-1": "worker", "worker-2": "worker"}


def test_every_variable_set_is_one_the_code_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    read = variables_read(monkeypatch)
    image_env, _, _ = dockerfile()
    assert not set(image_env) - read - PYTHON_VARIABLES, "Dockerfile ENV"
    for name, svc in engine_services().items():
        assert "env_file" not in svc  # every variable is named in the compose file
        unknown = set(svc["environment"]) - read
        assert not unknown, f"{name}: not read by the code: {unknown}"


def test_the_env_example_names_exactly_what_compose_interpolates() -> None:
    used = set(INTERPOLATION.findall(COMPOSE.read_text()))
    assert set(env_example()) == used
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().splitlines()  # the real one


def test_the_example_secrets_are_refused_by_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    # a deployment that forgot to replace them stops at start, naming the variable
    from stream_app.crypto.keys import MasterKeyError, load_master_keys

    example = env_example()
    monkeypatch.setenv("WEDDING_JWT_SECRET", example["WEDDING_JWT_SECRET"])
    with pytest.raises(ValueError, match="WEDDING_JWT_SECRET: must be at least 32 bytes"):
        load_settings()
    with pytest.raises(MasterKeyError, match="WEDDING_MASTER_KEY"):
        load_master_keys({"WEDDING_MASTER_KEY": example["WEDDING_MASTER_KEY"]})


def dsn_user(dsn: str) -> str:
    return urlsplit(interpolate(dsn)).username or ""


def test_roles_init_is_owner_the_workers_are_app_and_system() -> None:
    services = engine_services()
    init = services.pop("init")["environment"]
    assert dsn_user(init["POSTGRES_OWNER_DSN"]) == OWNER_ROLE
    assert "POSTGRES_DSN" not in init and "POSTGRES_SYSTEM_DSN" not in init
    assert len(services) == 2
    for name, svc in services.items():
        env = svc["environment"]
        assert dsn_user(env["POSTGRES_DSN"]) == APP_ROLE, name
        assert dsn_user(env["POSTGRES_SYSTEM_DSN"]) == SYSTEM_ROLE, name
        assert "POSTGRES_OWNER_DSN" not in env, name  # never the owner's login
    # each login's password is the one the roles script sets
    pg_env = compose()["services"]["postgres"]["environment"]
    for role, variable in (
        (OWNER_ROLE, init["POSTGRES_OWNER_DSN"]),
        (APP_ROLE, services["worker-1"]["environment"]["POSTGRES_DSN"]),
        (SYSTEM_ROLE, services["worker-1"]["environment"]["POSTGRES_SYSTEM_DSN"]),
    ):
        password_var = f"WEDDING_{role.removeprefix('wedding_').upper()}_DB_PASSWORD"
        assert f"${{{password_var}" in variable and f"${{{password_var}" in pg_env[password_var]


def test_two_workers_each_with_its_own_volume_port_and_name() -> None:
    services = engine_services()
    workers = {n: s for n, s in services.items() if parse_cli(s["command"]).command == "worker"}
    image_env, _, _ = dockerfile()
    tables, ports = set(), set()
    for name, svc in workers.items():
        mounts = dict(reversed(v.split(":")[:2]) for v in svc["volumes"])
        tables.add(mounts[image_env["WEDDING_DATA_DIR"]])
        assert mounts[image_env["WEDDING_ARTIFACT_DIR"]] == "artifacts"  # shared by all
        (port,) = svc["ports"]
        host, container = port.split(":")
        assert container == image_env["WEDDING_WEB_PORT"]
        ports.add(host)
        # the name the other workers forward to is this service's name on the compose network
        assert svc["environment"]["WEDDING_WEB_HOST"] == name
        assert svc["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert len(tables) == len(ports) == len(workers) == 2
    assert tables <= set(compose()["volumes"])


def test_roles_sql_is_the_code_s_roles_sql() -> None:
    lines = (ROOT / "deploy" / "postgres" / "roles.sql").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if not line.startswith("--"))
    assert "\n".join(lines[header:]).strip() == ROLES_SQL.strip()  # the header comment aside


def scram_matches(stored: str, password: str) -> bool:
    """Whether PostgreSQL's ``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`` verifier
    was made from ``password`` (RFC 5802 §3, RFC 7677)."""
    head, keys = stored.split("$", 1)[1].split("$")
    iterations, salt = head.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key


async def test_the_roles_script_creates_the_roles_with_their_passwords(
    settings: Settings,
) -> None:
    psql = shutil.which("psql") or next(iter(sorted(glob("/usr/lib/postgresql/*/bin/psql"))), "")
    assert psql, "psql is installed with the PostgreSQL server (scripts/install)"
    dsn = urlsplit(settings.postgres_dsn)  # the session's superuser
    passwords = {OWNER_ROLE: "o'wner pw", APP_ROLE: 'app "pw" $1', SYSTEM_ROLE: "sys\\pw;"}
    env = {
        **os.environ,
        "PATH": f"{os.path.dirname(psql)}:{os.environ['PATH']}",
        "PGHOST": dsn.hostname or "",
        "PGPORT": str(dsn.port),
        "POSTGRES_USER": dsn.username or "",
        "POSTGRES_DB": dsn.path.lstrip("/"),
        "WEDDING_ROLES_FILE": str(ROOT / "deploy" / "postgres" / "roles.sql"),
        "WEDDING_OWNER_DB_PASSWORD": passwords[OWNER_ROLE],
        "WEDDING_APP_DB_PASSWORD": passwords[APP_ROLE],
        "WEDDING_SYSTEM_DB_PASSWORD": passwords[SYSTEM_ROLE],
    }
    script = ROOT / "deploy" / "postgres" / "10-wedding-roles.sh"
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for _ in range(2):  # idempotent: a second run changes nothing but the passwords
            proc = await asyncio.create_subprocess_exec(
                "sh", str(script), env=env, stdout=PIPE, stderr=PIPE
            )
            _, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
        rows = await conn.fetch(
            "SELECT rolname, rolpassword, rolbypassrls, rolsuper FROM pg_authid"
            " WHERE rolname = ANY($1::text[])",
            list(passwords),
        )
        got = {r["rolname"]: r for r in rows}
        assert set(got) == set(passwords)
        for role, password in passwords.items():
            assert scram_matches(got[role]["rolpassword"], password), role
            assert not scram_matches(got[role]["rolpassword"], password + "x")
            assert got[role]["rolsuper"] is False
        assert [got[r]["rolbypassrls"] for r in (OWNER_ROLE, APP_ROLE, SYSTEM_ROLE)] == [
            True,
            False,
            False,
        ]
    finally:
        # the session's cluster trusts local logins: leave the roles without passwords again
        for role in passwords:
            await conn.execute(f"ALTER ROLE {role} PASSWORD NULL")
        await conn.close()
