"""Delivery secrets sealed for PostgreSQL (and Kafka) and opened only to deliver.

The webhook secret and the SFTP password and private key are stored as sealed values
(:mod:`stream_app.crypto.sealed`) under the organisation's data key, bound to their owner (a
schedule id, or :func:`adhoc_owner` of a report id) and the field name
(``delivery.secret``, ``delivery.password``, ``delivery.private_key``). A stored target
carries the sealed text in those fields; the dispatcher opens them (:func:`unseal_target`)
just before sending.

A plaintext secret that itself begins with ``wedding-sealed:v1:`` would be taken for a sealed
one and fail to open at delivery; no real secret has that form.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from stream_app.crypto.keys import DataKey
from stream_app.crypto.sealed import is_sealed, seal, sealed_version, unseal
from stream_app.delivery.targets import SECRET_FIELDS, DeliveryTarget


class Keys(Protocol):
    """What opens a sealed value: an organisation's data key of a version."""

    async def get(self, organization_id: str, version: int, /) -> DataKey:
        """Version ``version`` of ``organization_id``'s data key."""
        ...


def adhoc_owner(report_id: str) -> str:
    """The owner the secrets of report ``report_id``'s own delivery are bound to
    (``report/<id>``: an id never holds ``/``, so it is never a schedule id)."""
    return f"report/{report_id}"


def has_secrets(target: DeliveryTarget) -> bool:
    """Whether ``target``'s type carries secrets (webhook, SFTP)."""
    return type(target) in SECRET_FIELDS


def seal_target(target: DeliveryTarget, key: DataKey, owner_id: str) -> DeliveryTarget:
    """``target`` with its plaintext secrets sealed under ``key`` for ``owner_id`` (already
    sealed values are kept)."""
    changes = {
        name: seal(key, owner_id, f"delivery.{name}", value)
        for name in SECRET_FIELDS.get(type(target), ())
        if (value := getattr(target, name)) is not None and not is_sealed(value)
    }
    return dataclasses.replace(target, **changes) if changes else target  # type: ignore[arg-type]


async def unseal_target(
    target: DeliveryTarget, keys: Keys, organization_id: str, owner_id: str
) -> DeliveryTarget:
    """``target`` with its sealed secrets opened (plaintext ones are kept: rows written before
    encryption). For the delivery path only: the result holds secrets.

    Raises:
        SealedValueError: a value does not open (moved, edited, or foreign).
        DataKeyNotFoundError / MasterKeyError: its key cannot be had.
    """
    changes = {}
    for name in SECRET_FIELDS.get(type(target), ()):
        value = getattr(target, name)
        if is_sealed(value):
            key = await keys.get(organization_id, sealed_version(value))
            changes[name] = unseal(key, owner_id, f"delivery.{name}", value)
    return dataclasses.replace(target, **changes) if changes else target  # type: ignore[arg-type]
