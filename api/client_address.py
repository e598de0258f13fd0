"""The address a request comes from, as far as this API can vouch for it.

The peer's address, unless the peer is one of the configured trusted proxies: then
X-Forwarded-For is read from the right (each proxy appends the address it saw), skipping trusted
hops, and the first address that is not a trusted proxy is the client. Entries left of it were
written by the client itself and are never believed; X-Forwarded-For from any other peer is
ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from fastapi import Request

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

MAX_LENGTH = 64  # the width of login_failures.client


def request_client_address(request: Request, trusted_proxies: Sequence[IPNetwork]) -> str:
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.getlist("x-forwarded-for"), trusted_proxies)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted_proxies: Sequence[IPNetwork]
) -> str:
    nearest = _parse(peer)
    if nearest is None:  # not an IP peer (a Unix socket, a test client): take it as it is
        return (peer or "unknown")[:MAX_LENGTH]
    if not _trusted(nearest, trusted_proxies):
        return str(nearest)[:MAX_LENGTH]
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            # A trusted proxy wrote no address: stop at the last one we can vouch for.
            break
        nearest = address
        if not _trusted(address, trusted_proxies):
            break
    return str(nearest)[:MAX_LENGTH]


def _trusted(address: IPAddress, trusted_proxies: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted_proxies)


def _parse(value: str | None) -> IPAddress | None:
    """An address as proxies write it: bare, `v4:port` or `[v6]:port`; IPv4-mapped IPv6 as IPv4."""
    if not value:
        return None
    text = value.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
