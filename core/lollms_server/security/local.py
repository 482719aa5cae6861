"""Safe local access: who is the client, and may it skip the key because it is this machine?

A request is local only when the TCP peer is loopback AND the Host header names a loopback host
on the port the request arrived on (DNS rebinding sends a foreign Host) AND, for state-changing
methods, the browser says it is same-origin (a page elsewhere cannot drive the local server).
Forwarding headers are read only from configured trusted proxies. A request that carries any
forwarding header (`FORWARDING_HEADERS`), or speaks HTTP/1.0 like nginx's bare `proxy_pass`,
came through a proxy and is never local, trusted proxy or not: a reverse proxy on this machine
connects from loopback on behalf of remote clients.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import HttpVersion11, web

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
FORWARDING_HEADERS = (
    "Forwarded",
    "X-Forwarded-For",
    "X-Real-IP",
    "Via",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
)
_FORWARDED_HTTPS = re.compile(r'(?:^|;)\s*proto\s*=\s*"?https"?\s*(?:;|$)', re.IGNORECASE)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Parse trusted proxy addresses or CIDR ranges."""
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


@functools.lru_cache(maxsize=4096)  # a handful of peers and hosts: parse each once
def _ip(value: str | None) -> Address | None:
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def peer_address(request: web.Request) -> str:
    """The TCP peer's address ('' when unknown)."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if peer else ""


def is_trusted_proxy(request: web.Request, proxies: tuple[Network, ...]) -> bool:
    """True when the TCP peer is one of the configured trusted proxies."""
    return _is_trusted(_ip(peer_address(request)), proxies)


def is_proxy_itself(request: web.Request, proxies: tuple[Network, ...]) -> bool:
    """True for a trusted proxy's own request (its health check): it forwards no client."""
    return "X-Forwarded-For" not in request.headers and is_trusted_proxy(request, proxies)


def _is_trusted(address: Address | None, proxies: tuple[Network, ...]) -> bool:
    """True when `address` (the peer's, parsed once by the caller) is a trusted proxy's."""
    return address is not None and any(address in network for network in proxies)


def client_address(request: web.Request, proxies: tuple[Network, ...]) -> str:
    """The client's address: the peer, or the nearest untrusted X-Forwarded-For hop.

    Every X-Forwarded-For line counts, in order: HAProxy's `option forwardfor` adds its own
    line after the client's, so the first line alone is whatever the client wrote.
    """
    peer = peer_address(request)
    if not _is_trusted(_ip(peer), proxies):
        return peer
    lines = request.headers.getall("X-Forwarded-For", [])
    hops = [h.strip() for line in lines for h in line.split(",") if h.strip()]
    for hop in reversed(hops):
        address = _ip(hop) or _ip(_without_port(hop))
        if address is None:
            break
        if not any(address in network for network in proxies):
            return str(address)
    return peer


def _without_port(hop: str) -> str:
    """`1.2.3.4` of `1.2.3.4:5678`, `::1` of `[::1]:443` (how some load balancers write hops)."""
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else hop
    host, colon, port = hop.rpartition(":")
    return host if colon and port.isdigit() and "." in host and ":" not in host else hop


def is_proxied(request: web.Request) -> bool:
    """True when the request came through a proxy: one of `FORWARDING_HEADERS`, or HTTP/1.0
    (what nginx's bare `proxy_pass` speaks; browsers and HTTP clients speak 1.1 or later)."""
    if request.version < HttpVersion11:
        return True
    return any(name in request.headers for name in FORWARDING_HEADERS)


def is_https(request: web.Request, proxies: tuple[Network, ...]) -> bool:
    """True over TLS, or when a trusted proxy says the client used https (X-Forwarded-Proto,
    else the first element of Forwarded)."""
    if request.secure:
        return True
    if not is_trusted_proxy(request, proxies):
        return False
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if proto:
        return proto == "https"
    first = request.headers.get("Forwarded", "").split(",")[0]
    return _FORWARDED_HTTPS.search(first) is not None


@functools.lru_cache(maxsize=4096)
def _host_is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    address = _ip(host)
    return address is not None and address.is_loopback


@functools.lru_cache(maxsize=4096)
def _host_and_port(value: str) -> tuple[str, int | None]:
    parts = urlsplit(f"//{value}")
    try:
        return parts.hostname or "", parts.port
    except ValueError:
        return "", None


def _same_origin(request: web.Request, origin: str, proxies: tuple[Network, ...]) -> bool:
    parts = urlsplit(origin)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    host, host_port = _host_and_port(request.host)
    return (
        parts.scheme in ("http", "https")
        and (parts.hostname or "") == host
        and port == (host_port or (443 if is_https(request, proxies) else 80))
    )


def is_cross_site(request: web.Request, proxies: tuple[Network, ...]) -> bool:
    """True when a browser says another site sent this request: Sec-Fetch-Site, and Origin
    (else Referer) for browsers without Fetch Metadata. No such header: not a browser's."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    return origin is not None and not _same_origin(request, origin, proxies)


@functools.lru_cache(maxsize=4096)
def _local_peer(peer: str, proxies: tuple[Network, ...]) -> bool:
    """True when `peer` is a loopback address that is no trusted proxy's (`is_loopback` is
    worked out on every call by ipaddress: once per peer here)."""
    address = _ip(peer)
    return address is not None and address.is_loopback and not _is_trusted(address, proxies)


def is_local_request(request: web.Request, proxies: tuple[Network, ...]) -> bool:
    """True when the request may use local access without a key (see module docstring)."""
    if not _local_peer(peer_address(request), proxies):
        return False
    if is_proxied(request):
        return False
    host, port = _host_and_port(request.headers.get("Host", ""))
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not _host_is_loopback(host) or not sockname or (port or 80) != sockname[1]:
        return False
    return request.method in SAFE_METHODS or not is_cross_site(request, proxies)
