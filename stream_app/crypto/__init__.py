"""Encryption at rest: the segmented file format, per-organisation data keys, sealed secrets.

Modules: :mod:`~stream_app.crypto.segmented` (the streaming AEAD file format, pure and
synchronous), :mod:`~stream_app.crypto.keys` (master key, wrapped data keys in PostgreSQL,
rotation), :mod:`~stream_app.crypto.keyring` (a worker's cache of unwrapped data keys),
:mod:`~stream_app.crypto.sealed` (small values such as delivery secrets). All primitives come
from the ``cryptography`` package; nothing here implements a cipher.
"""
