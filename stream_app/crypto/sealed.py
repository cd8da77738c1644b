"""Small secrets sealed with an organisation's data key (delivery secrets in PostgreSQL).

A sealed value is the text ``wedding-sealed:v1:<key version>:<base64(nonce || ciphertext ||
tag)>``: AES-256-GCM (``cryptography``'s ``AESGCM``, 12-byte random nonce) under the data key
of that version, with associated data ``org || schedule id || field`` (length-prefixed), so
a sealed value copied to another organisation, schedule or field does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stream_app.crypto.keys import DataKey
from stream_app.errors import WeddingError

PREFIX: Final = "wedding-sealed:v1:"


class SealedValueError(WeddingError, ValueError):
    """A sealed value is malformed or does not open with its key and context."""

    retriable = False


def is_sealed(value: str | None) -> bool:
    """Whether ``value`` is a sealed value (rather than a plaintext secret)."""
    return value is not None and value.startswith(PREFIX)


def _ad(organization_id: str, owner_id: str, field: str) -> bytes:
    out = b"wedding-sealed-secret"
    for part in (organization_id, owner_id, field):
        data = part.encode()
        out += struct.pack(">I", len(data)) + data
    return out


def seal(key: DataKey, owner_id: str, field: str, value: str) -> str:
    """``value`` sealed under ``key`` for (``key.organization_id``, ``owner_id``, ``field``)."""
    nonce = os.urandom(12)
    sealed = AESGCM(key.key).encrypt(
        nonce, value.encode(), _ad(key.organization_id, owner_id, field)
    )
    return f"{PREFIX}{key.version}:{base64.b64encode(nonce + sealed).decode()}"


def sealed_version(value: str) -> int:
    """The data-key version a sealed value names.

    Raises:
        SealedValueError: not a sealed value.
    """
    version, _, _ = value.removeprefix(PREFIX).partition(":")
    if not is_sealed(value) or not version.isdigit():
        raise SealedValueError("not a sealed value")
    return int(version)


def unseal(key: DataKey, owner_id: str, field: str, value: str) -> str:
    """The plaintext of a sealed value.

    Raises:
        SealedValueError: malformed, or it does not open with ``key`` for this context.
    """
    version = sealed_version(value)
    if version != key.version:
        raise SealedValueError(f"{field}: sealed with key version {version}, not {key.version}")
    try:
        raw = base64.b64decode(value.rsplit(":", 1)[1], validate=True)
        plain = AESGCM(key.key).decrypt(
            raw[:12], raw[12:], _ad(key.organization_id, owner_id, field)
        )
    except (binascii.Error, ValueError, InvalidTag):
        raise SealedValueError(f"{field}: the sealed value does not open") from None
    return plain.decode()
