"""Delivery secrets of a schedule, sealed for PostgreSQL and opened only to deliver.

The webhook secret and the SFTP password and private key are stored as sealed values
(:mod:`stream_app.crypto.sealed`) under the organisation's data key, bound to the schedule id
and the field name (``delivery.secret``, ``delivery.password``, ``delivery.private_key``). A
schedule read from the database carries the sealed text in those fields; the delivery
dispatcher opens them (:func:`unseal_schedule`) just before sending.

A plaintext secret that itself begins with ``wedding-sealed:v1:`` would be taken for a sealed
one and fail to open at delivery; no real secret has that form.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from stream_app.crypto.keys import DataKey
from stream_app.crypto.sealed import is_sealed, seal, sealed_version, unseal
from stream_app.schedules.model import Schedule, SftpTarget, WebhookTarget

_FIELDS = {WebhookTarget: ("secret",), SftpTarget: ("password", "private_key")}


class _Keys(Protocol):
    async def get(self, organization_id: str, version: int, /) -> DataKey: ...


def seal_schedule(schedule: Schedule, key: DataKey) -> Schedule:
    """``schedule`` with its plaintext delivery secrets sealed under ``key`` (already sealed
    values are kept).

    Raises:
        ValueError: ``key`` belongs to another organisation.
    """
    if key.organization_id != schedule.organization_id:
        raise ValueError("key: belongs to another organisation")
    target = schedule.delivery
    changes = {
        name: seal(key, schedule.schedule_id, f"delivery.{name}", value)
        for name in _FIELDS.get(type(target), ())
        if (value := getattr(target, name)) is not None and not is_sealed(value)
    }
    if not changes:
        return schedule
    return dataclasses.replace(schedule, delivery=dataclasses.replace(target, **changes))  # type: ignore[arg-type]


async def unseal_schedule(schedule: Schedule, keys: _Keys) -> Schedule:
    """``schedule`` with its sealed delivery secrets opened (plaintext ones are kept: rows
    written before encryption). For the delivery path only: the result holds secrets.

    Raises:
        SealedValueError: a value does not open (moved, edited, or foreign).
        DataKeyNotFoundError / MasterKeyError: its key cannot be had.
    """
    target = schedule.delivery
    changes = {}
    for name in _FIELDS.get(type(target), ()):
        value = getattr(target, name)
        if is_sealed(value):
            key = await keys.get(schedule.organization_id, sealed_version(value))
            changes[name] = unseal(key, schedule.schedule_id, f"delivery.{name}", value)
    if not changes:
        return schedule
    return dataclasses.replace(schedule, delivery=dataclasses.replace(target, **changes))  # type: ignore[arg-type]
