"""Fixtures of the schedule tests: the shared PostgreSQL cluster (see pg_fixtures.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _load_shared() -> ModuleType:
    name = "wedding_sched_pg_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("pg_fixtures.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_shared = _load_shared()
pg_dsn = _shared.pg_dsn
pg_pool = _shared.pg_pool
db = _shared.db
new_org = _shared.new_org
