"""Network faults between the code under test and a real service: a TCP proxy in the test's
event loop that can cut every connection through it and refuse new ones for a while, as a
PostgreSQL restart does to its clients (their connections reset, new ones refused until the
server is up). Not a fake of the service: the bytes go to the real one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class Proxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port`` until :meth:`outage`."""

    target_host: str
    target_port: int
    port: int = 0
    refusing: bool = False
    refused: int = 0
    cut: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        """One client connection: refused during an outage, else piped both ways."""
        if self.refusing:
            self.refused += 1
            client_w.transport.abort()
            return
        server_r, server_w = await asyncio.open_connection(self.target_host, self.target_port)
        self._writers |= {client_w, server_w}
        try:
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        finally:
            self._writers -= {client_w, server_w}

    def outage(self, seconds: float) -> None:
        """Reset every connection through the proxy now and refuse new ones for ``seconds``."""
        self.cut += len(self._writers) // 2
        for w in list(self._writers):
            w.transport.abort()
        self.refusing = True
        asyncio.get_running_loop().call_later(seconds, setattr, self, "refusing", False)


@asynccontextmanager
async def tcp_proxy(target_host: str, target_port: int) -> AsyncIterator[Proxy]:
    """A :class:`Proxy` to ``target_host:target_port`` listening on a free loopback port for
    the length of the block."""
    proxy = Proxy(target_host, target_port)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.port = int(server.sockets[0].getsockname()[1])
    try:
        yield proxy
    finally:
        server.close()
        for w in list(proxy._writers):
            w.transport.abort()
        await server.wait_closed()
