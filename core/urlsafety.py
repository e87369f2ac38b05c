"""Provider base URLs must not point the gateway at its own network (SSRF).

The host is resolved, and every address it resolves to must be a public one: this catches
loopback, private ranges, link-local and metadata addresses in any spelling (decimal,
hex, IPv4-mapped IPv6) and DNS names that resolve to them. Operators who run providers on
their own network set ALLOW_PRIVATE_PROVIDER_URLS.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from core.errors import ValidationFailed


def _fail(message: str) -> ValidationFailed:
    return ValidationFailed.field("base_url", message)


def is_public(address: str) -> bool:
    """Whether an IP address (any spelling, IPv4-mapped included) is a global unicast one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve_public(host: str, port: int) -> list[str]:
    """The host's addresses, or a 400 when any is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise _fail(f"cannot resolve host {host!r}") from None
    # str() for typeshed: the address of an AF_INET/AF_INET6 result is always a str already
    addresses = sorted({str(info[4][0]) for info in infos})
    if not settings.ALLOW_PRIVATE_PROVIDER_URLS and not all(is_public(a) for a in addresses):
        raise _fail("must not point at a loopback, private, link-local or reserved address")
    return addresses


def check_base_url(url: str) -> str:
    """The URL without a trailing slash, or a ValidationFailed naming base_url."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise _fail("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise _fail("must not carry credentials; put the key in token")
    if parts.query or parts.fragment:
        raise _fail("must not have a query or fragment")
    resolve_public(parts.hostname, port)
    return url.rstrip("/")
