"""Rows of asyncpg as the frozen dataclasses the database layer returns.

Part of the database layer; pure (no I/O). A dataclass whose field names are the columns of
a ``SELECT`` is filled from its record by :func:`from_row`, so a new column is added in one
place (the dataclass), not in a hand-written constructor call beside it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import asyncpg
import orjson

T = TypeVar("T")


def from_row(
    cls: type[T],
    row: asyncpg.Record,
    *,
    json: Collection[str] = (),
    loads: Callable[[str], Any] = orjson.loads,
) -> T:
    """An instance of the dataclass ``cls`` with each field the column of its name in ``row``.

    Args:
        cls: a dataclass; every field of it must be a column of ``row``.
        json: the fields stored as JSON text (``jsonb``, or ``::text`` of it), decoded with
            ``loads``; a NULL stays None.
        loads: the JSON decoder (:func:`orjson.loads` unless the caller's rule needs another).

    Raises:
        KeyError: a field of ``cls`` is not a column of ``row``.
    """
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = row[field.name]
        if field.name in json and value is not None:
            value = loads(value)
        values[field.name] = value
    return cls(**values)


def status_count(status: str) -> int:
    """The rows of a command status such as ``DELETE 3`` or ``UPDATE 0`` (asyncpg's
    ``execute`` answer)."""
    return int(status.rsplit(" ", 1)[-1])


def column_list(cls: type[Any]) -> str:
    """The field names of the dataclass ``cls``, comma-separated (a ``SELECT`` list)."""
    return ", ".join(f.name for f in dataclasses.fields(cls))
