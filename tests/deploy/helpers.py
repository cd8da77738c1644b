"""What the deployment files may name: the variables the code reads, the CLI's command lines.

:func:`variables_read` runs the code's own configuration readers against an environment that
records every name looked up, so a variable the code does not read (a typo, a renamed
setting) is absent from the set, whatever the README says.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from stream_app.cli import build_parser
from stream_app.devservices.common import free_ports

ROOT = Path(__file__).parents[2]

PYTHON_VARIABLES = frozenset({"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"})
"""Variables of the image read by Python and the shell, not by the engine."""


class RecordingEnv(Mapping[str, str]):
    """An environment (empty but for ``values``) that remembers every name looked up."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def variables_read(monkeypatch: pytest.MonkeyPatch) -> frozenset[str]:
    """Every environment variable the worker's configuration readers look up.

    The readers: :class:`stream_app.settings.Settings` (through ``os.environ``, its delivery
    section included) and :func:`stream_app.crypto.keys.load_master_keys`.
    """
    from stream_app.crypto.keys import load_master_keys
    from stream_app.settings import load_settings

    load_settings()  # first its lazy imports, which may read variables of their own
    env = RecordingEnv({"WEDDING_DEV_MODE": "1"})  # dev mode: the readers need no secrets
    with monkeypatch.context() as m:
        m.setattr(os, "environ", env)
        load_settings()
    load_master_keys(env)
    return frozenset(env.read)


def helper_variables(env: Mapping[str, str]) -> set[str]:
    """Names used only to build another variable's value with Kubernetes' ``$(NAME)``."""
    return {name for value in env.values() for name in re.findall(r"\$\(([A-Z_]+)\)", value)}


def dockerfile() -> tuple[dict[str, str], list[str], list[str]]:
    """The Dockerfile's final ``ENV`` variables, its ``ENTRYPOINT`` and its ``CMD``."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    entrypoint: list[str] = []
    cmd: list[str] = []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "FROM":
            env.clear()  # a new stage
        elif word == "ENV":
            for token in shlex.split(rest):
                name, _, value = token.partition("=")
                env[name] = value
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif word == "CMD":
            cmd = json.loads(rest)
    return env, entrypoint, cmd


def parse_cli(argv: list[str]) -> Any:
    """``argv`` (after ``wedding-engine``) parsed by the CLI's own parser.

    Raises:
        AssertionError: the parser refuses it (argparse's message is in the captured stderr).
    """
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"wedding-engine {shlex.join(argv)}: refused by the CLI") from exc


def isolate_worker(env: dict[str, str], group_prefix: str) -> int:
    """Point the worker environment ``env`` at a consumer group of its own
    (``<group_prefix>-<random>``), from the end of the topics and without the scheduler, so the
    other tests' events and schedules are left alone, and at a free web port; the port."""
    (port,) = free_ports(1)
    env.update(
        WEDDING_APP_ID=f"{group_prefix}-{uuid.uuid4().hex[:8]}",
        WEDDING_OFFSET_RESET="latest",
        WEDDING_SCHEDULING="0",
        WEDDING_WEB_PORT=str(port),
    )
    return port
