"""Which http(s) hosts intake may download from, and a GET that keeps to them.

A dataset URL is chosen by whoever starts a run, and the worker fetches it from inside the
network: without a check it could read internal services and cloud metadata (SSRF). So every
host is resolved once, every address it resolves to is checked, and the connection goes to
that checked address (the Host header and TLS SNI keep the name), so a DNS answer that changes
between the check and the connect (rebinding) changes nothing. Redirects are followed here, one
hop at a time, each hop checked the same way. Numeric spellings (`2130706433`, `0177.0.0.1`,
`0x7f000001`, `127.1`) need no special case: the system resolver turns them into the address
that is then checked, and IPv6 forms that embed an IPv4 address are judged by that address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata hands out cloud credentials; no allow-list entry opens these.
CLOUD_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
CLOUD_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
MAX_REDIRECTS = 5


class AddressRefused(Exception):
    """The URL (or a redirect) leads to an address intake does not fetch from."""


class HostUnresolvable(Exception):
    """DNS gave no address for the host (possibly a passing failure)."""


class TooManyRedirects(Exception):
    pass


@dataclass(frozen=True)
class HostAllowList:
    """DATASET_ALLOWED_HOSTS: host names, addresses and CIDRs let through although internal."""

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> HostAllowList:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part.strip("[]"), strict=False))
            except ValueError:
                names.add(_normal_name(part))
        return cls(frozenset(names), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        if _normal_name(host) in self.names:
            return True
        judged = _embedded_ipv4(address) or address
        return any(judged in network or address in network for network in self.networks)


def _normal_name(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_metadata(address: IPAddress) -> bool:
    return (
        address in CLOUD_METADATA_ADDRESSES or _embedded_ipv4(address) in CLOUD_METADATA_ADDRESSES
    )


def refusal_reason(address: IPAddress) -> str | None:
    """Why intake does not fetch from this address (None for a public one)."""
    if _is_metadata(address):
        return "a cloud metadata address"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        reason = refusal_reason(embedded)
        if reason is not None:
            return reason
    for reason, applies in (
        ("an unspecified address", address.is_unspecified),
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("a multicast address", address.is_multicast),
        ("a reserved address", address.is_reserved),
        ("a private address", address.is_private),
        # Shared (carrier-grade NAT), documentation and other special-purpose ranges.
        ("a non-public address", not address.is_global),
    ):
        if applies:
            return reason
    return None


async def resolve_allowed(host: str, port: int, allow: HostAllowList) -> IPAddress:
    """Resolve host once and check every address; the first one is where to connect."""
    if _normal_name(host) in CLOUD_METADATA_HOSTS:
        raise AddressRefused(f"{host} is a cloud metadata service, which intake never fetches from")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise HostUnresolvable(f"could not resolve the dataset host {host!r}: {error}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])  # drop an IPv6 zone
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise HostUnresolvable(f"the dataset host {host!r} has no address")
    for address in addresses:
        reason = refusal_reason(address)
        if reason is None:
            continue
        if _is_metadata(address):
            raise AddressRefused(
                f"{host} resolves to {address}, {reason}, which intake never fetches from"
            )
        if not allow.allows(host, address):
            # Every address must pass: a name with one public and one internal address could
            # otherwise be steered to the internal one.
            raise AddressRefused(
                f"{host} resolves to {address}, {reason}; intake does not fetch datasets from "
                "internal addresses. To allow this host on purpose, add it (or its address or "
                "network) to DATASET_ALLOWED_HOSTS"
            )
    return addresses[0]


@asynccontextmanager
async def guarded_get(
    client: httpx.AsyncClient, url: str, allow: HostAllowList
) -> AsyncIterator[httpx.Response]:
    """GET url, following up to MAX_REDIRECTS redirects, each hop's address checked and pinned.

    Yields the final response, streaming. User info in the URL is sent as basic auth, and only
    to the origin it was written for.
    """
    first = urlsplit(url)
    credentials = (
        (unquote(first.username), unquote(first.password or "")) if first.username else None
    )
    current = first
    for _ in range(MAX_REDIRECTS + 1):
        request = await _pinned_request(client, current, allow)
        same_origin = _origin(current) == _origin(first)
        auth = httpx.BasicAuth(*credentials) if credentials and same_origin else None
        response = await client.send(request, stream=True, auth=auth)
        if not response.has_redirect_location:
            try:
                yield response
            finally:
                await response.aclose()
            return
        location = response.headers["location"]
        await response.aclose()
        base = current._replace(netloc=current.netloc.rpartition("@")[2], fragment="")
        current = urlsplit(urljoin(base.geturl(), location))
        if current.scheme.lower() not in ("http", "https"):
            raise AddressRefused("the dataset URL redirects to a scheme other than http(s)")
    raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")


def _origin(parts: SplitResult) -> tuple[str, str | None, int | None]:
    return parts.scheme.lower(), parts.hostname, _port(parts)


def _port(parts: SplitResult) -> int:
    try:
        port = parts.port
    except ValueError:
        raise AddressRefused("the dataset URL has an invalid port") from None
    return port or (443 if parts.scheme.lower() == "https" else 80)


async def _pinned_request(
    client: httpx.AsyncClient, parts: SplitResult, allow: HostAllowList
) -> httpx.Request:
    """A request to the checked address of the URL's host, still naming the host to the server.

    The URL is taken apart with urllib, not httpx, so that spellings httpx would refuse to
    parse (an octal address) still reach the address check and are refused for what they are.
    """
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host:
        raise AddressRefused("the dataset URL must be http(s) with a host name")
    port = _port(parts)
    address = await resolve_allowed(host, port, allow)
    shown = f"[{address}]" if address.version == 6 else str(address)
    target = f"{scheme}://{shown}:{port}{parts.path or '/'}"
    if parts.query:
        target += f"?{parts.query}"
    host_header = parts.netloc.rpartition("@")[2]
    if not host_header.isascii():
        host_header = host_header.encode("idna").decode("ascii")
    extensions: dict[str, object] = {}
    if scheme == "https" and not _is_address(host):
        # The certificate is checked against the name, not the address we connect to.
        extensions["sni_hostname"] = host.encode("idna").decode("ascii")
    return client.build_request("GET", target, headers={"Host": host_header}, extensions=extensions)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
