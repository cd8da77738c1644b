"""Real receivers of the tests: an aiohttp application served on a loopback address for the
length of an ``async with`` block (webhook receivers, "internal services"), and the password
login of the tests' SFTP servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import asyncssh
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(
    routes: Mapping[str, Handler], *, host: str = "127.0.0.1", port: int = 0, method: str = "POST"
) -> AsyncIterator[int]:
    """Serve ``routes`` (path → handler, for ``method``; ``"*"``: any) on ``host``:``port``
    until the block ends.

    Args:
        routes: aiohttp route paths (``/hook``, ``/{tail:.*}``) and their handlers.
        host: the address to listen on (Linux answers the whole of 127/8).
        port: the TCP port; 0 lets the system choose a free one.
        method: the HTTP method the routes answer.

    Yields:
        The port listened on.
    """
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


class PasswordLogin(asyncssh.SSHServer):
    """An SSH server's login: ``user`` with ``password``, nobody else (no keys, no anonymous
    login). Pass ``lambda: PasswordLogin(user, password)`` as asyncssh's ``server_factory``."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self.user and password == self.password
