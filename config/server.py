"""uvicorn's httptools protocol with one change: what a connection writes in one turn of the
event loop leaves in one write() system call.

uvicorn writes the status line and headers when the app sends `http.response.start`, and the
body when it sends `http.response.body`: two write() calls per answer, each of which, on
loopback and in most kernels' TCP paths, costs as much as a few hundred lines of our Python.
An app sends both messages without waiting in between (gateway/http.py's send_json), so
joining the writes of one loop turn makes them one; a stream's events that one upstream read
held go out together too. Nothing is held longer than the current turn: the data is written
before the loop next waits for I/O.

Used with `uvicorn --http config.server:HttpToolsProtocol` (bin/run, the tests, bench/).
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol


class JoinedWrites:
    """A transport that gathers the writes of one loop turn and writes them as one, before
    the loop polls again (call_soon runs within the same iteration's ready queue). Closing
    writes what is gathered first. Everything else is the wrapped transport's."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpToolsProtocol(_HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) writing through JoinedWrites."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # FlowControl keeps the real transport (pausing reads); answers go through the joiner.
        self.transport = JoinedWrites(transport, self.loop)  # type: ignore[assignment]
