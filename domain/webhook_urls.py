"""Which webhook URLs Provisio sends to: the rules for a URL, and the guard on its addresses.

A user's URL is called by the worker, from inside the network it runs in; unguarded, a user
could make it POST to the database, the Temporal frontend or a cloud's metadata service (SSRF).
So a receiver's addresses must be public ones unless `webhook_allow_private` says otherwise,
checked when the URL is set and again at every delivery, after DNS, on the very address the
delivery then connects to (a name that resolved to a public address once may not any more).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from domain.callback_tokens import MIN_SECRET_LENGTH

MAX_URL_LENGTH = 2048
SCHEMES = frozenset({"http", "https"})
RESOLVE_TIMEOUT_S = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookAddressError(Exception):
    """The receiver's host does not resolve, or resolves to an address it may not have."""


class UnresolvedHost(WebhookAddressError):
    """No address for the host (now: DNS may answer later)."""


class RefusedAddress(WebhookAddressError):
    """An address the receiver may not have: not public, and private ones are not allowed."""


class WebhookSettingsError(ValueError):
    """The global webhook is configured without a usable URL or secret."""


def url_problem(url: str) -> str | None:
    """What is wrong with a webhook URL's form, or None."""
    if len(url) > MAX_URL_LENGTH:
        return f"at most {MAX_URL_LENGTH} characters"
    if not url.isascii() or any(c.isspace() or ord(c) < 32 for c in url):
        return "must be ASCII without spaces (percent-encode the rest)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number or out of range
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in SCHEMES:
        return "must be an http or https URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password (the signature authenticates)"
    if not parts.hostname:
        return "must name a host"
    return None


def address_refused(address: IPAddress) -> bool:
    """Not a public unicast address: loopback, private, link-local, unspecified, shared (CGNAT),
    reserved, multicast; an IPv4-mapped IPv6 address counts as its IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve_receiver(url: str, *, allow_private: bool) -> list[IPAddress]:
    """The addresses of the URL's host, each allowed; else UnresolvedHost or RefusedAddress.
    Every address is checked, not only the first: a client may connect to any of them."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                RESOLVE_TIMEOUT_S,
            )
        except (OSError, TimeoutError):
            raise UnresolvedHost(f"the host {host!r} does not resolve") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise UnresolvedHost(f"the host {host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if address_refused(address):
                raise RefusedAddress(
                    f"the host {host!r} has a private, loopback or otherwise non-public address"
                )
    return addresses


def check_webhook_settings(url: str, secret: str, *, allow_private: bool) -> None:
    """At the worker's start: a global URL needs a well-formed URL and a secret of its own.
    A host given as an address is checked here too; a name is checked at each delivery."""
    if not url:
        return
    if problem := url_problem(url):
        raise WebhookSettingsError(f"PROVISIO_WEBHOOK_URL {problem}")
    if len(secret) < MIN_SECRET_LENGTH:
        raise WebhookSettingsError(
            f"PROVISIO_WEBHOOK_SECRET must be at least {MIN_SECRET_LENGTH} characters"
            " when PROVISIO_WEBHOOK_URL is set"
        )
    literal = literal_address(urlsplit(url).hostname or "")
    if literal is not None and not allow_private and address_refused(literal):
        raise WebhookSettingsError(
            "PROVISIO_WEBHOOK_URL has a non-public address; set PROVISIO_WEBHOOK_ALLOW_PRIVATE"
            " if the receiver is meant to be on the internal network"
        )
