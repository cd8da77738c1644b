"""HTTP downloads of encrypted report files, decrypted as a stream.

Used by the report download (:func:`stream_app.web.views.report_file`) and the signed-link
download (:mod:`stream_app.web.schedules`). The response is an aiohttp
:class:`~aiohttp.web.StreamResponse` with ``Content-Length`` = the plaintext size; the file
is decrypted in a worker thread 16 authenticated 64 KiB segments (1 MiB) at a time, never
whole in memory.
:func:`~stream_app.reports.artifacts.open_artifact` authenticates the header and first
segment before the response starts, so a swapped or foreign file is a 404/500 answer; a
segment that fails later (the file altered on disk while being served) aborts the connection,
and the client sees a body shorter than its ``Content-Length``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from stream_app.crypto.keyring import KeyRing
from stream_app.crypto.keys import DataKeyNotFoundError, MasterKeyError
from stream_app.reports.artifacts import (
    ArtifactIntegrityError,
    ArtifactMissingError,
    ArtifactReader,
    open_artifact,
)
from stream_app.web.errors import ApiError

log = logging.getLogger(__name__)


async def open_for_download(
    root: Path, organization_id: str, rel_path: str, keys: KeyRing
) -> ArtifactReader:
    """:func:`open_artifact` with its failures as HTTP errors.

    Raises:
        ApiError: 404 ``not_found`` (missing or outside the store), 500 ``artifact_corrupt``
            (fails authentication) or 500 ``key_unavailable`` (its data key is missing, or
            does not unwrap under the worker's master key; the reason says which).
    """
    try:
        return await open_artifact(root, organization_id, rel_path, keys)
    except ArtifactMissingError:
        raise ApiError(404, "not_found", "artifact file is missing from the store") from None
    except ArtifactIntegrityError as exc:
        log.error("artifact %s of %s fails authentication: %s", rel_path, organization_id, exc)
        raise ApiError(500, "artifact_corrupt", "the stored file fails authentication") from None
    except DataKeyNotFoundError as exc:
        log.error("artifact %s of %s: key unavailable: %s", rel_path, organization_id, exc)
        raise ApiError(
            500,
            "key_unavailable",
            "the file's data key version is not in the database (a file sealed by another"
            " deployment)",
        ) from None
    except MasterKeyError as exc:
        log.error("artifact %s of %s: key unavailable: %s", rel_path, organization_id, exc)
        raise ApiError(
            500,
            "key_unavailable",
            "the file's data key does not unwrap under this worker's master key"
            " (WEDDING_MASTER_KEY is not the key that wrapped it, or a master-key rotation is"
            " unfinished); the worker's log names both keys",
        ) from None


async def stream_artifact(
    request: web.Request, reader: ArtifactReader, headers: dict[str, str]
) -> web.StreamResponse:
    """Send the plaintext of ``reader`` as the response body, segment by segment.

    Args:
        request: the request being answered.
        reader: the opened artifact.
        headers: extra headers (Content-Type, Content-Disposition, Digest).

    Returns:
        The prepared and finished response.
    """
    response = web.StreamResponse(status=200, headers=headers)
    response.content_length = reader.size
    await response.prepare(request)
    try:
        async for chunk in reader.chunks():
            await response.write(chunk)
    except ArtifactIntegrityError as exc:
        log.error("artifact %s fails authentication mid-download: %s", reader.path, exc)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response
