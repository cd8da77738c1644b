"""The event ids of the live-update stream (``GET /orgs/{org}/updates``): sealed positions.

Part of the HTTP layer; pure (no I/O). A position (partition → next offset of the shared
``realtime-metrics-updates`` topic, :data:`Position`) counts every
tenant's messages, so showing it would let one tenant watch the others' activity move the
offsets. A client therefore sees it only sealed:

    id = base64url(nonce (12) || AES-256-GCM(key, nonce, offsets, ad))   (no padding)

- ``offsets``: one unsigned 64-bit big-endian integer per partition 0, 1, …, the highest in the
  position (a partition absent from it is :data:`ABSENT`): the length depends only on the
  topic's partition count, never on the offsets' values (80 characters for 4 partitions,
  at most :data:`MAX_ID_CHARS` up to 380).
- ``key``: HKDF-SHA256 (RFC 5869) over ``WEDDING_JWT_SECRET`` with info :data:`_INFO`, so every
  worker of a deployment opens every other's ids (a resume may land on any worker); rotating
  the JWT secret ends the tokens of open streams anyway.
- ``ad`` (associated data): the organisation and the topic, length-prefixed, so an id minted
  for one organisation's stream does not open on another's.
- ``nonce``: 12 random bytes (``os.urandom``) per id: two ids of the same position differ, so
  ids cannot be compared or linked.

AES-GCM and HKDF come from ``cryptography``; nothing here implements a primitive. An id that
does not open (malformed, forged, another organisation's, another deployment's) is a 400
``invalid_field`` naming the field it came in, with the same message in every case.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import re
import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stream_app.web.errors import ApiError

Position = dict[int, int]
"""Partition → the next offset to read (as :data:`Position`)."""

MAX_ID_CHARS: Final = 4096
"""The longest event id accepted back (``Last-Event-ID``): the ids of a topic of up to 380
partitions fit."""
MAX_OFFSET: Final = 2**63 - 1
"""The largest Kafka offset (a signed 64-bit integer)."""
ABSENT: Final = 2**64 - 1
"""The sealed value of a partition missing from a position (above any offset)."""
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
_OFFSET = struct.Struct(">Q")
_INFO: Final = b"wedding-engine live-update event ids v1"
_AD_LABEL: Final = b"wedding-updates-event-id"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


@functools.lru_cache(maxsize=4)
def _cipher(secret: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
    return AESGCM(key)


def _ad(organization_id: str, topic: str) -> bytes:
    out = _AD_LABEL
    for part in (organization_id, topic):
        data = part.encode()
        out += struct.pack(">I", len(data)) + data
    return out


class EventIds:
    """Seals and opens the event ids of one organisation's streams of ``topic``.

    Args:
        secret: the deployment's secret the key is derived from (``WEDDING_JWT_SECRET``).
        organization_id: the stream's organisation (bound into every id).
        topic: the topic whose positions the ids name (bound into every id).
    """

    def __init__(self, secret: str, organization_id: str, topic: str) -> None:
        self._aead = _cipher(secret)
        self._ad = _ad(organization_id, topic)

    def seal(self, position: Position) -> str:
        """The opaque id of ``position`` (a new random nonce each call).

        Raises:
            ValueError: a partition or offset out of Kafka's range (a bug of the caller).
        """
        if any(p < 0 or not 0 <= o <= MAX_OFFSET for p, o in position.items()):
            raise ValueError(f"not a position: {position!r}")
        count = max(position, default=-1) + 1
        plain = b"".join(_OFFSET.pack(position.get(p, ABSENT)) for p in range(count))
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plain, self._ad)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, text: str, field_name: str = "Last-Event-ID") -> Position:
        """The position an id of :meth:`seal` names.

        Raises:
            ApiError: 400 ``invalid_field`` naming ``field_name`` when ``text`` is not an id
                sealed for this organisation and topic with this deployment's secret.
        """
        try:
            if len(text) > MAX_ID_CHARS or not _BASE64URL.fullmatch(text):
                raise ValueError
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            if len(raw) < NONCE_BYTES + TAG_BYTES:
                raise ValueError
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._ad)
            if len(plain) % _OFFSET.size:
                raise ValueError
        except (ValueError, binascii.Error, InvalidTag):
            raise ApiError(
                400,
                "invalid_field",
                f"{field_name}: not an event id of this stream (resume from an id it sent)",
                field_name,
            ) from None
        offsets = (o for (o,) in _OFFSET.iter_unpack(plain))
        return {p: o for p, o in enumerate(offsets) if o != ABSENT}
