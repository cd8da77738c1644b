"""A schedule's delivery secrets, sealed under its organisation's data key and bound to the
schedule id (:mod:`stream_app.delivery.sealing` does the work)."""

from __future__ import annotations

import dataclasses

from stream_app.crypto.keys import DataKey
from stream_app.delivery.sealing import Keys, seal_target, unseal_target
from stream_app.schedules.model import Schedule


def seal_schedule(schedule: Schedule, key: DataKey) -> Schedule:
    """``schedule`` with its plaintext delivery secrets sealed under ``key`` (already sealed
    values are kept).

    Raises:
        ValueError: ``key`` belongs to another organisation.
    """
    if key.organization_id != schedule.organization_id:
        raise ValueError("key: belongs to another organisation")
    target = seal_target(schedule.delivery, key, schedule.schedule_id)
    return (
        schedule if target is schedule.delivery else dataclasses.replace(schedule, delivery=target)
    )


async def unseal_schedule(schedule: Schedule, keys: Keys) -> Schedule:
    """``schedule`` with its sealed delivery secrets opened (for the delivery path only).

    Raises:
        SealedValueError: a value does not open (moved, edited, or foreign).
        DataKeyNotFoundError / MasterKeyError: its key cannot be had.
    """
    target = await unseal_target(
        schedule.delivery, keys, schedule.organization_id, schedule.schedule_id
    )
    return (
        schedule if target is schedule.delivery else dataclasses.replace(schedule, delivery=target)
    )
