"""The SSRF guard of outgoing deliveries: resolve a tenant's host name, check every address.

Webhook URLs and SFTP hosts come from tenants. A name is resolved **at delivery time**, every
address it resolves to is checked, and the connection goes to an address that was checked
(no second lookup): :class:`GuardedResolver` is the resolver of the webhook's aiohttp
connector (aiohttp connects to the addresses its resolver returns), and
:func:`resolve_checked` gives SFTP the checked address to connect to.

An address is refused (:func:`refusal`) when Python's :mod:`ipaddress` says it is not a
public unicast address: ``not is_global`` (private, loopback, link-local, CGNAT
``100.64.0.0/10``, unspecified, documentation and the other special-purpose ranges of the
IANA registries), ``is_multicast``, ``is_reserved``, an IPv4-mapped IPv6 address, or a 6to4 /
Teredo address whose embedded IPv4 address would be refused. Cloud metadata endpoints
(``169.254.169.254``, ``fd00:ec2::254``, ``100.100.100.200``) fall in link-local, unique-local
and CGNAT ranges, so they are refused by the same rules. A name is refused if **any** of its
addresses is refused (a name that answers one public and one internal address is a
DNS-rebinding attempt, not a reachable receiver).

The only way round it is an explicit allow-list of networks (:class:`EgressPolicy`,
``WEDDING_DELIVERY_ALLOW_PRIVATE_NETWORKS``, empty by default): the tests' receivers listen on
loopback. This module may touch the network only through ``getaddrinfo``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from stream_app.errors import WeddingError
from stream_app.settings import IPNetwork, parse_networks

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_ENV = "WEDDING_DELIVERY_ALLOW_PRIVATE_NETWORKS"


class EgressRefusedError(WeddingError, OSError):
    """A delivery target resolves to an address deliveries may not reach.

    An :class:`OSError` so that aiohttp's connector passes it up (wrapped in a
    ``ClientConnectorError``) like any failed lookup. Never retriable: the same name asks for
    the same internal address again.

    Attributes:
        host: the host name or literal the target names.
        address: the refused address.
        reason: why it is refused (``loopback``, ``private``, ...).
    """

    retriable = False

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(
            f"refused: {host!r} resolves to {address} ({reason}); deliveries go to public"
            " addresses only"
        )
        self.host = host
        self.address = address
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Which addresses deliveries may connect to.

    Attributes:
        allow_networks: networks allowed although not public (for tests and for deployments
            with receivers on an internal network). Empty by default: **widening it lets
            tenants reach whatever listens there**, e.g. the workers' own HTTP API.
    """

    allow_networks: tuple[IPNetwork, ...] = ()

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused, or None when deliveries may connect to it."""
        if any(address in net for net in self.allow_networks):
            return None
        return refusal(address)


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address (see the module docstring), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "IPv4-mapped IPv6"
        inner = address.sixtofour
        if inner is not None and refusal(inner) is not None:
            return f"6to4 address of {inner}"
        if address.teredo is not None and refusal(address.teredo[1]) is not None:
            return f"Teredo address of {address.teredo[1]}"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (cloud metadata)"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if address in _CGNAT:
        return "shared address space (CGNAT)"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not globally routable"
    return None


_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # only to name the reason; is_global covers it


def parse_allow_networks(raw: str) -> tuple[IPNetwork, ...]:
    """``"127.0.0.0/8, ::1/128"`` → the networks (empty string → none).

    Raises:
        ValueError: an entry is not a network; the message names the variable.
    """
    return parse_networks(ALLOW_ENV, raw)


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` is written as (``[::1]`` included), or None for a name.

    Other spellings the C library accepts (``2130706433``, ``0x7f.1``) are not literals here:
    :func:`resolve_checked`, :class:`GuardedResolver` and :func:`check_url_host` turn them
    into the address that is then checked.
    """
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_address(policy: EgressPolicy, host: str, address: str) -> IPAddress:
    """``address`` (a resolved or literal address of ``host``), checked.

    Raises:
        EgressRefusedError: the policy refuses it (or it is not an address).
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise EgressRefusedError(host, address, "not an IP address") from None
    reason = policy.refusal(ip)
    if reason is not None:
        raise EgressRefusedError(host, address, reason)
    return ip


async def resolve_checked(policy: EgressPolicy, host: str, port: int) -> list[IPAddress]:
    """Every address of ``host`` (TCP), each checked; connect to one of these, not to ``host``.

    Raises:
        EgressRefusedError: an address is refused.
        OSError: the name does not resolve (``socket.gaierror``).
    """
    literal = literal_address(host)
    if literal is not None:
        return [check_address(policy, host, str(literal))]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise socket.gaierror(f"{host!r} has no address")
    return [check_address(policy, host, a) for a in addresses]


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses a name if any of its addresses is refused.

    aiohttp's ``TCPConnector`` connects to the addresses its resolver returns (and names the
    original host only for TLS and the ``Host`` header), so what is checked here is what is
    connected to. aiohttp skips the resolver for literal addresses: callers check those with
    :func:`check_address` first (see :func:`check_url_host`).
    """

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve with the system resolver, then check every address.

        Raises:
            EgressRefusedError: an address is refused.
            OSError: the name does not resolve.
        """
        results = await self._inner.resolve(host, port, family)
        for result in results:
            check_address(self.policy, host, result["host"])
        return results

    async def close(self) -> None:
        """Release the inner resolver."""
        await self._inner.close()


def url_host(url: str) -> str | None:
    """The host of ``url`` as aiohttp connects to it: yarl's IDNA-normalised host.

    Checking any other spelling is not enough: ``http://127。0。0。1/`` (ideographic full
    stops, U+3002; also U+FF0E, U+FF61) has no plain IPv4 host for ``urlsplit``, but yarl
    maps those dots to ``.`` and aiohttp connects to the literal ``127.0.0.1`` without asking
    any resolver. None when ``url`` has no host or cannot be parsed.
    """
    try:
        return yarl.URL(url).raw_host
    except (ValueError, TypeError, UnicodeError):
        return None


def check_url_host(policy: EgressPolicy, host: str) -> None:
    """Check a URL host that aiohttp would connect to without asking its resolver.

    aiohttp takes any host that contains ``:`` or is made of digits and dots for an address
    and hands it straight to the socket layer, which also reads legacy spellings
    (``2130706433``, ``0177.0.0.1``, ``127.1`` are all 127.0.0.1). Such a host is turned
    into its address(es) here with a numeric-only ``getaddrinfo`` (no DNS: the same answer
    the socket layer gets) and checked. Names are checked by :class:`GuardedResolver`.

    Raises:
        EgressRefusedError: the address is refused, or the host is not an address.
    """
    literal = literal_address(host)
    if literal is not None:
        check_address(policy, host, str(literal))
        return
    if ":" not in host and not host.replace(".", "").isdigit():
        return
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        raise EgressRefusedError(host, host, "not an IP address") from None
    for info in infos:
        check_address(policy, host, str(info[4][0]))
