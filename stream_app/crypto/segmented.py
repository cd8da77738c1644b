"""The segmented AES-256-GCM file format of report artifacts (streaming AEAD).

Construction: Tink's ``AES256_GCM_HKDF`` streaming AEAD
(https://developers.google.com/tink/streaming-aead/aes_gcm_hkdf_streaming, wire format in
Tink's ``AesGcmHkdfStreaming``), which instantiates the STREAM construction of Hoang,
Reyhanitabar, Rogaway and Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
Misuse-Resistance" (CRYPTO 2015, §7): a file is cut into segments, each sealed with AES-GCM
under a per-file key, with a nonce made of a random per-file prefix, the segment's number and
a last-segment flag. This module adds a small prefix (magic, format version, data-key
version) in front of Tink's header so a reader knows which organisation key to fetch.

Layout (integers big-endian)::

    offset size  field
    0      4     magic b"WEDA"
    4      1     format version (1)
    5      4     data-key version (uint32; the organisation's key that sealed the file)
    9      1     Tink header length (40)
    10     32    salt (random)
    42     7     nonce prefix (random)
    49     ...   segments: AES-GCM(ciphertext || 16-byte tag) of SEGMENT_SIZE plaintext bytes
                 each; the last one holds 0..SEGMENT_SIZE bytes (an empty file is one empty
                 last segment)

- File key: ``HKDF-SHA256(ikm=data key, salt=salt, info=context, L=32)``, where ``context``
  is the 9-byte prefix followed by the length-prefixed (uint32) UTF-8 organisation id,
  report id and file name. The associated data of the file thus lives in the key (as in
  Tink, where the associated data is HKDF's ``info``): a file copied to another report or
  organisation, or whose key version was edited, fails on its first segment.
- Segment nonce (12 bytes): ``nonce prefix (7) || segment number (uint32) || last flag
  (1 byte: 1 for the last segment, else 0)``. Reordered segments fail (the number is in the
  nonce); a file cut at a segment boundary fails (its new last segment was not sealed as
  last); a file cut elsewhere fails on its last segment; a flipped byte fails its segment's
  tag. Segments carry no associated data of their own.
- At most 2**32 segments (256 TiB) per file; one random 32-byte salt per file, so a data key
  seals about 2**80 files before a file key repeats with probability worth a thought.

Sizes are exact: :func:`plaintext_size` derives the plaintext length from the file length,
so a download can announce ``Content-Length`` before decrypting.

Pure and synchronous (no I/O beyond the file object given); the report agent runs it in a
worker thread.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stream_app.errors import WeddingError

MAGIC: Final = b"WEDA"
FORMAT_VERSION: Final = 1
SALT_BYTES: Final = 32
NONCE_PREFIX_BYTES: Final = 7
TAG_BYTES: Final = 16
TINK_HEADER_BYTES: Final = 1 + SALT_BYTES + NONCE_PREFIX_BYTES
HEADER_BYTES: Final = len(MAGIC) + 1 + 4 + TINK_HEADER_BYTES
"""Bytes before the first segment (49)."""
SEGMENT_SIZE: Final = 64 * 1024
"""Plaintext bytes per segment (64 KiB: 16 bytes of tag per segment, 0.02 % overhead; a
reader holds one segment in memory)."""
KEY_BYTES: Final = 32
MAX_SEGMENTS: Final = 1 << 32


class ArtifactIntegrityError(WeddingError, ValueError):
    """An encrypted file cannot be authenticated: altered, truncated, reordered, moved to
    another report or organisation, or sealed with a key this worker does not hold.

    Not retriable: reading again gives the same answer.
    """

    retriable = False


class FileContext(NamedTuple):
    """The identity a file is bound to (its associated data)."""

    organization_id: str
    """The tenant."""
    report_id: str
    """The report the file belongs to."""
    filename: str
    """The file's name in the report's folder (``monthly_booking_summary.csv``)."""


@dataclass(frozen=True, slots=True)
class Header:
    """The parsed header of an encrypted file.

    Attributes:
        key_version: the organisation data-key version that sealed the file.
        salt: HKDF salt (32 bytes).
        nonce_prefix: the 7-byte nonce prefix.
    """

    key_version: int
    salt: bytes
    nonce_prefix: bytes

    def prefix(self) -> bytes:
        """The 9 bytes before Tink's header (magic, format version, key version)."""
        return MAGIC + bytes([FORMAT_VERSION]) + struct.pack(">I", self.key_version)

    def encode(self) -> bytes:
        """The header's :data:`HEADER_BYTES` bytes."""
        return self.prefix() + bytes([TINK_HEADER_BYTES]) + self.salt + self.nonce_prefix


def parse_header(raw: bytes) -> Header:
    """Parse the first :data:`HEADER_BYTES` bytes of a file.

    Raises:
        ArtifactIntegrityError: too short, wrong magic, unknown format version or header length.
    """
    if len(raw) < HEADER_BYTES:
        raise ArtifactIntegrityError(f"not an encrypted artifact: {len(raw)}-byte header")
    if raw[:4] != MAGIC:
        raise ArtifactIntegrityError("not an encrypted artifact: bad magic")
    if raw[4] != FORMAT_VERSION:
        raise ArtifactIntegrityError(f"unknown artifact format version {raw[4]}")
    if raw[9] != TINK_HEADER_BYTES:
        raise ArtifactIntegrityError(f"bad header length {raw[9]}")
    (version,) = struct.unpack(">I", raw[5:9])
    return Header(version, raw[10 : 10 + SALT_BYTES], raw[10 + SALT_BYTES : HEADER_BYTES])


def _context_info(header: Header, context: FileContext) -> bytes:
    parts = [header.prefix()]
    for value in context:
        data = value.encode()
        parts.append(struct.pack(">I", len(data)) + data)
    return b"".join(parts)


def _file_cipher(key: bytes, header: Header, context: FileContext) -> AESGCM:
    if len(key) != KEY_BYTES:
        raise ValueError(f"key: expected {KEY_BYTES} bytes, got {len(key)}")
    file_key = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=header.salt,
        info=_context_info(header, context),
    ).derive(key)
    return AESGCM(file_key)


def _nonce(header: Header, index: int, last: bool) -> bytes:
    return header.nonce_prefix + struct.pack(">IB", index, 1 if last else 0)


def plaintext_size(ciphertext_size: int) -> int:
    """The plaintext length of an encrypted file of ``ciphertext_size`` bytes.

    Raises:
        ArtifactIntegrityError: no size of plaintext encrypts to that length (truncated).
    """
    body = ciphertext_size - HEADER_BYTES
    if body < TAG_BYTES:
        raise ArtifactIntegrityError(f"truncated: {ciphertext_size} bytes")
    full = SEGMENT_SIZE + TAG_BYTES
    segments = -(-body // full)
    last = body - (segments - 1) * full
    if last < TAG_BYTES:
        raise ArtifactIntegrityError(f"truncated: {ciphertext_size} bytes")
    return body - segments * TAG_BYTES


class SegmentedEncryptor:
    """A write-only file object that seals what is written to it into ``fh``.

    Holds at most one segment (64 KiB) of plaintext. :meth:`close` must be called once all
    data is written: it seals the last segment (a file without it fails to decrypt).
    """

    def __init__(self, fh: BinaryIO, key: bytes, key_version: int, context: FileContext) -> None:
        """Write the header to ``fh``.

        Args:
            fh: the destination, opened for binary writing (not closed here).
            key: the 32-byte data key.
            key_version: the data key's version, recorded in the header.
            context: the identity the file is bound to.

        Raises:
            ValueError: the key is not 32 bytes or the version is out of range.
        """
        if not 0 <= key_version < 1 << 32:
            raise ValueError(f"key_version: {key_version} is out of range")
        self._header = Header(key_version, os.urandom(SALT_BYTES), os.urandom(NONCE_PREFIX_BYTES))
        self._cipher = _file_cipher(key, self._header, context)
        self._fh = fh
        self._buf = bytearray()
        self._index = 0
        self._closed = False
        fh.write(self._header.encode())
        self.ciphertext_size = HEADER_BYTES

    def _seal(self, data: bytes | bytearray | memoryview, last: bool) -> None:
        if self._index >= MAX_SEGMENTS:
            raise ValueError("file too large for one encrypted artifact (2**32 segments)")
        sealed = self._cipher.encrypt(_nonce(self._header, self._index, last), bytes(data), None)
        self._fh.write(sealed)
        self.ciphertext_size += len(sealed)
        self._index += 1

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Buffer ``data`` and seal every complete segment but the newest; returns its length.

        Raises:
            ValueError: written after :meth:`close`.
        """
        if self._closed:
            raise ValueError("write to a closed encryptor")
        self._buf += data
        if len(self._buf) > SEGMENT_SIZE:
            view = memoryview(self._buf)
            start = 0
            while len(self._buf) - start > SEGMENT_SIZE:
                self._seal(view[start : start + SEGMENT_SIZE], last=False)
                start += SEGMENT_SIZE
            view.release()
            del self._buf[:start]
        return len(data)

    def close(self) -> None:
        """Seal the last segment (idempotent). Does not close the underlying file."""
        if not self._closed:
            self._seal(self._buf, last=True)
            self._buf = bytearray()
            self._closed = True


def read_header(fh: BinaryIO) -> Header:
    """Read and parse the header at the current position of ``fh`` (its start).

    Raises:
        ArtifactIntegrityError: see :func:`parse_header`.
    """
    return parse_header(fh.read(HEADER_BYTES))


def decrypt_segments(
    fh: BinaryIO, key: bytes, header: Header, context: FileContext, ciphertext_size: int
) -> Iterator[bytes]:
    """Yield the plaintext of ``fh`` one segment (at most 64 KiB) at a time.

    ``fh`` is positioned just after the header (:func:`read_header`). Every segment is
    authenticated before it is yielded, so a consumer never sees unauthenticated bytes;
    an error can still come after earlier segments were yielded (a streamed download then
    ends short of its announced length).

    Args:
        fh: the encrypted file, after its header.
        key: the data key of ``header.key_version``.
        header: the file's header.
        context: the identity the file must be bound to.
        ciphertext_size: the file's total size in bytes.

    Raises:
        ArtifactIntegrityError: a segment fails authentication or the file is truncated,
            naming the segment.
    """
    plaintext_size(ciphertext_size)  # raises when no plaintext has this length
    cipher = _file_cipher(key, header, context)
    full = SEGMENT_SIZE + TAG_BYTES
    body = ciphertext_size - HEADER_BYTES
    count = -(-body // full)
    for index in range(count):
        last = index == count - 1
        want = body - index * full if last else full
        sealed = fh.read(want)
        if len(sealed) != want:
            raise ArtifactIntegrityError(f"truncated at segment {index} of {count}")
        try:
            yield cipher.decrypt(_nonce(header, index, last), sealed, None)
        except InvalidTag:
            raise ArtifactIntegrityError(
                f"segment {index} of {count} failed authentication: the file was altered,"
                " truncated or reordered, belongs to another report or organisation, or was"
                " sealed with another key"
            ) from None
    if fh.read(1):
        raise ArtifactIntegrityError("data after the last segment")


def encrypt_bytes(data: bytes, key: bytes, key_version: int, context: FileContext) -> bytes:
    """``data`` sealed in the file format (for small files and tests)."""
    buf = io.BytesIO()
    enc = SegmentedEncryptor(buf, key, key_version, context)
    enc.write(data)
    enc.close()
    return buf.getvalue()


def decrypt_bytes(data: bytes, key: bytes, context: FileContext) -> bytes:
    """The plaintext of a whole encrypted file held in memory (for small files and tests).

    Raises:
        ArtifactIntegrityError: as :func:`decrypt_segments`.
    """
    fh = io.BytesIO(data)
    header = read_header(fh)
    return b"".join(decrypt_segments(fh, key, header, context, len(data)))
