"""Calls to providers: one pooled aiohttp session per process, with the three timeouts
(connect, first byte, idle between chunks), and errors sorted into retryable or final.

Nothing from here reaches a client with a provider key or an upstream URL in it.
"""

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from django.conf import settings

from core.redaction import redact
from core.urlsafety import is_public
from gateway.errors import GatewayError
from gateway.wire.base import UpstreamCall, WireFormat

_sessions: dict[tuple[asyncio.AbstractEventLoop, bool], aiohttp.ClientSession] = {}


class NonPublicAddress(OSError):
    """A provider-key URL's host resolves to an address the gateway must not call."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves a host and refuses it when any of its addresses is not public (loopback,
    private, link-local, metadata...). The connection then goes to the addresses checked
    here, so a DNS answer that changes between a check and the connect (rebinding) cannot
    point the gateway at its own network."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        if not results or not all(is_public(r["host"]) for r in results):
            raise NonPublicAddress(f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._resolver.close()


def session(public_only: bool = False) -> aiohttp.ClientSession:
    """The process's pooled client for this event loop: one for the operator's provider URLs,
    one (`public_only`) for base URLs organizations gave, which connect to public addresses
    only (unless ALLOW_PRIVATE_PROVIDER_URLS)."""
    public_only = public_only and not settings.ALLOW_PRIVATE_PROVIDER_URLS
    loop = asyncio.get_running_loop()
    current = _sessions.get((loop, public_only))
    if current is None or current.closed:
        resolver = PublicOnlyResolver() if public_only else None
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True, resolver=resolver)
        # Read timeouts are applied per step (first byte, then each chunk) with wait_for.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.UPSTREAM_CONNECT_TIMEOUT, sock_read=None)
        current = aiohttp.ClientSession(
            connector=connector, timeout=timeout, json_serialize=lambda o: orjson.dumps(o).decode(),
            auto_decompress=True, skip_auto_headers=["User-Agent"],
        )
        _sessions[(loop, public_only)] = current
    return current


def _literal_address_refused(url: str) -> bool:
    """An IP literal never goes through the resolver: checked here instead."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return not is_public(host)


async def close_sessions() -> None:
    for s in list(_sessions.values()):
        await s.close()
    _sessions.clear()


def _scrub(message: str, token: str, url: str) -> str:
    """A provider's words without its key or the address the gateway called."""
    host = urlsplit(url).netloc
    message = redact(message, token)
    return message.replace(host, "[upstream]") if len(host) >= 4 else message


_PRIVATE = GatewayError(
    502, "The provider key's base URL resolves to a private address; refusing to call it.", "upstream_error"
)


class UpstreamFailure(Exception):
    """A call that failed before its first byte reached the client. `status`: the provider's
    HTTP status when it answered; `unreachable`: it did not (no connection, or no answer in
    time), which says something about the provider's health (gateway/health.py)."""

    def __init__(self, error: GatewayError, *, retryable: bool, status: int | None = None, unreachable: bool = False):
        super().__init__(error.message)
        self.error = error
        self.retryable = retryable
        self.status = status
        self.unreachable = unreachable


def _failure_for_status(status: int, message: str, retry_after: str | None) -> UpstreamFailure:
    if status == 429:
        headers = {"Retry-After": retry_after} if retry_after else {}
        return UpstreamFailure(GatewayError(429, f"The provider is rate limiting: {message}", "rate_limited", headers=headers),
                               retryable=True, status=status)
    if status in (401, 403):
        # The provider refused our key: the next key or provider may take the request.
        return UpstreamFailure(GatewayError(502, "The provider refused the credentials for this request.", "upstream_error"),
                               retryable=True, status=status)
    if status >= 500:
        return UpstreamFailure(GatewayError(502, f"The provider failed (HTTP {status}): {message}", "upstream_error"),
                               retryable=True, status=status)
    if 300 <= status < 400:
        return UpstreamFailure(GatewayError(502, "The provider answered with a redirect, which the gateway does not follow.", "upstream_error"),
                               retryable=True, status=status)
    if status == 408:
        return UpstreamFailure(GatewayError(504, "The provider timed out.", "upstream_timeout"), retryable=True, status=status)
    # Any other 4xx is about the request itself; another provider would refuse it too.
    return UpstreamFailure(GatewayError(400, message, "invalid_request_error"), retryable=False, status=status)


async def open_response(call: UpstreamCall, wire: WireFormat, token: str, *, public_only: bool = False) -> aiohttp.ClientResponse:
    """The provider's response once its headers arrived with a 2xx status. `public_only`: the
    URL came from an organization's provider key, and may reach public addresses only."""
    if public_only and not settings.ALLOW_PRIVATE_PROVIDER_URLS and _literal_address_refused(call.url):
        raise UpstreamFailure(_PRIVATE, retryable=True)
    try:
        async with asyncio.timeout(settings.UPSTREAM_FIRST_BYTE_TIMEOUT):
            response = await session(public_only).post(call.url, data=call.body, headers=call.headers, allow_redirects=False)
    except TimeoutError:
        raise UpstreamFailure(GatewayError(504, "The provider did not answer in time.", "upstream_timeout"), retryable=True,
                              unreachable=True) from None
    except aiohttp.ClientConnectorError as e:
        if isinstance(e.os_error, NonPublicAddress):
            raise UpstreamFailure(_PRIVATE, retryable=True) from None
        raise UpstreamFailure(
            GatewayError(502, f"Could not reach the provider ({type(e).__name__}).", "upstream_error"), retryable=True,
            unreachable=True,
        ) from None
    except (aiohttp.ClientError, OSError, socket.gaierror) as e:
        raise UpstreamFailure(
            GatewayError(502, f"Could not reach the provider ({type(e).__name__}).", "upstream_error"), retryable=True,
            unreachable=True,
        ) from None
    if 200 <= response.status < 300:
        return response
    try:
        async with asyncio.timeout(settings.UPSTREAM_IDLE_TIMEOUT):
            raw = await response.content.read(64 * 1024)
        data = orjson.loads(raw) if raw else None
    except (orjson.JSONDecodeError, TimeoutError, aiohttp.ClientError):
        data = None
    finally:
        response.release()
    message = _scrub(wire.error_message(response.status, data), token, call.url)
    raise _failure_for_status(response.status, message, response.headers.get("Retry-After"))


async def read_json(response: aiohttp.ClientResponse, token: str) -> Any:
    """The whole body of a non-streaming answer, capped, as parsed JSON."""
    limit = settings.UPSTREAM_MAX_RESPONSE_BYTES
    chunks, size = [], 0
    try:
        # read(n) returns what has arrived so far (at most n), not n bytes: an answer that
        # comes in several pieces is read piece by piece until its end, or past the cap.
        # The idle timeout applies to each piece, as for a stream.
        while size <= limit:
            async with asyncio.timeout(settings.UPSTREAM_IDLE_TIMEOUT):
                chunk = await response.content.read(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        raw = b"".join(chunks)
    except TimeoutError:
        raise GatewayError(504, "The provider stopped answering.", "upstream_timeout") from None
    except aiohttp.ClientError:
        raise GatewayError(502, "The provider's connection broke.", "upstream_error") from None
    finally:
        response.release()
    if len(raw) > limit:
        raise GatewayError(502, "The provider's answer was too large.", "upstream_error")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError(502, "The provider's answer was not valid JSON.", "upstream_error") from None


async def read_chunk(response: aiohttp.ClientResponse) -> bytes:
    """The next bytes of a stream (b"" at its end), within the idle timeout."""
    try:
        async with asyncio.timeout(settings.UPSTREAM_IDLE_TIMEOUT):
            return await response.content.readany()
    except TimeoutError:
        raise GatewayError(504, "The provider went silent mid-stream.", "upstream_timeout") from None
    except (aiohttp.ClientError, OSError):
        raise GatewayError(502, "The provider's connection broke mid-stream.", "upstream_error") from None
