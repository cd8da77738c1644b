"""Encryption at rest: throughput of the segmented AES-256-GCM format and download overhead.

Measures, on this machine, in one process (no database: the key is a random 32-byte data
key, as a worker holds it after one unwrap):

1. sealing throughput, MB/s: plaintext written through :class:`SegmentedEncryptor` into a
   file, in 1 MiB writes (a renderer's largest) and in 200-byte writes (CSV rows);
2. opening throughput, MB/s: :func:`decrypt_segments` over the same file;
3. download overhead, disk side: a plaintext file read in 64 KiB reads against the encrypted
   file decrypted segment by segment;
4. download overhead over HTTP on 127.0.0.1: aiohttp's ``FileResponse`` of the plaintext
   file (what the download route served before) against
   :func:`stream_app.web.artifact_download.stream_artifact` of the encrypted file (what it
   serves now), each fetched in full by an aiohttp client, best of 3;
5. size overhead: bytes on disk per plaintext byte.

Run: ``.venv/bin/python loadtests/bench_crypto.py [--mb 256]``. Prints a table; MB = 10^6 B.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from stream_app.crypto.keys import DataKey
from stream_app.crypto.segmented import (
    FileContext,
    SegmentedEncryptor,
    decrypt_segments,
    plaintext_size,
    read_header,
)
from stream_app.reports.artifacts import ArtifactReader
from stream_app.web.artifact_download import stream_artifact

CONTEXT = FileContext("bench-org", "bench-report", "report.csv")


def seal(path: Path, data: bytes, key: bytes, write_size: int) -> float:
    """Seconds to seal ``data`` into ``path`` in writes of ``write_size`` bytes (fsync'd)."""
    t0 = time.perf_counter()
    with path.open("wb") as fh:
        enc = SegmentedEncryptor(fh, key, 1, CONTEXT)
        view = memoryview(data)
        for i in range(0, len(data), write_size):
            enc.write(view[i : i + write_size])
        enc.close()
        fh.flush()
        os.fsync(fh.fileno())
    return time.perf_counter() - t0


def open_all(path: Path, key: bytes) -> tuple[float, int]:
    """Seconds to decrypt ``path`` segment by segment, and the plaintext bytes seen."""
    t0 = time.perf_counter()
    n = 0
    with path.open("rb") as fh:
        header = read_header(fh)
        for chunk in decrypt_segments(fh, key, header, CONTEXT, path.stat().st_size):
            n += len(chunk)
    return time.perf_counter() - t0, n


def read_plain(path: Path) -> float:
    """Seconds to read ``path`` in 64 KiB reads (a plain file download's disk side)."""
    t0 = time.perf_counter()
    with path.open("rb") as fh:
        while fh.read(65536):
            pass
    return time.perf_counter() - t0


def reader_of(sealed: Path, key: bytes) -> ArtifactReader:
    """The opened encrypted file, as :func:`~stream_app.reports.artifacts.open_artifact`
    returns it after fetching the key."""
    with sealed.open("rb") as fh:
        header = read_header(fh)
    size = plaintext_size(sealed.stat().st_size)
    return ArtifactReader(sealed, size, CONTEXT, header, DataKey(CONTEXT.organization_id, 1, key))


async def http_downloads(plain: Path, reader: ArtifactReader) -> tuple[float, float]:
    """Best-of-3 seconds to download ``plain`` (FileResponse) and ``reader`` (decrypting)."""
    size = reader.size

    async def plain_file(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(plain)

    async def sealed_file(request: web.Request) -> web.StreamResponse:
        return await stream_artifact(request, reader, {"Content-Type": "text/csv"})

    app = web.Application()
    app.router.add_get("/plain", plain_file)
    app.router.add_get("/sealed", sealed_file)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    best = {"/plain": float("inf"), "/sealed": float("inf")}
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
            for _ in range(3):
                for route in best:
                    t0 = time.perf_counter()
                    async with client.get(route) as r:
                        n = 0
                        async for chunk in r.content.iter_chunked(1 << 20):
                            n += len(chunk)
                    assert r.status == 200 and n == size, (route, r.status, n)
                    best[route] = min(best[route], time.perf_counter() - t0)
    finally:
        await runner.cleanup()
    return best["/plain"], best["/sealed"]


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256, help="plaintext size, MB (10^6 bytes)")
    args = parser.parse_args()
    size = args.mb * 1_000_000
    data = os.urandom(size)
    key = os.urandom(32)
    with tempfile.TemporaryDirectory(prefix="bench-crypto-") as tmp:
        plain, sealed = Path(tmp) / "plain", Path(tmp) / "sealed"
        plain.write_bytes(data)
        big = min(seal(sealed, data, key, 1 << 20) for _ in range(3))
        small_data = data[: size // 8]
        small = min(seal(Path(tmp) / "small", small_data, key, 200) for _ in range(2))
        opened, seen = min(open_all(sealed, key) for _ in range(3))
        assert seen == size
        base = min(read_plain(plain) for _ in range(3))
        on_disk = sealed.stat().st_size
        http_plain, http_sealed = asyncio.run(http_downloads(plain, reader_of(sealed, key)))
    mbs = size / 1e6
    print(f"plaintext: {mbs:.0f} MB random bytes, segments of 64 KiB, {os.cpu_count()} CPUs")
    print(f"seal, 1 MiB writes:      {mbs / big:8.0f} MB/s")
    print(f"seal, 200-byte writes:   {len(small_data) / 1e6 / small:8.0f} MB/s")
    print(f"open (decrypt, verify):  {mbs / opened:8.0f} MB/s")
    print(f"plain read, 64 KiB:      {mbs / base:8.0f} MB/s")
    print(
        f"download, disk side:     {base * 1000:8.1f} ms plain vs {opened * 1000:.1f} ms"
        f" decrypting: +{(opened - base) / mbs * 1000:.2f} ms per MB"
    )
    print(
        f"download over HTTP:      {mbs / http_plain:8.0f} MB/s plain (FileResponse) vs"
        f" {mbs / http_sealed:.0f} MB/s decrypting stream ({http_sealed / http_plain:.2f}x time)"
    )
    print(f"size on disk:            +{on_disk - size} bytes ({(on_disk - size) / size:.4%})")


if __name__ == "__main__":
    main()
