"""config/server.py: the writes of one event-loop turn leave as one write() system call."""

import asyncio

from config.server import JoinedWrites


class Transport:
    """Records each write() the joiner makes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 8000) if name == "sockname" else None


def test_the_writes_of_one_turn_leave_together_and_in_order():
    async def run() -> list[bytes]:
        transport = Transport()
        joined = JoinedWrites(transport, asyncio.get_running_loop())
        joined.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        joined.write(b"")
        joined.write(b"{}")
        assert transport.writes == []  # not yet: the turn is not over
        await asyncio.sleep(0)
        joined.write(b"next")
        await asyncio.sleep(0)
        return transport.writes

    assert asyncio.run(run()) == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"next"]


def test_closing_writes_what_is_gathered_first_and_nothing_goes_to_a_closed_transport():
    async def run() -> Transport:
        transport = Transport()
        joined = JoinedWrites(transport, asyncio.get_running_loop())
        joined.write(b"last answer")
        joined.close()
        joined.write(b"too late")
        await asyncio.sleep(0)
        return transport

    transport = asyncio.run(run())
    assert transport.writes == [b"last answer"] and transport.closed


def test_everything_else_is_the_transports():
    async def run() -> object:
        return JoinedWrites(Transport(), asyncio.get_running_loop()).get_extra_info("sockname")

    assert asyncio.run(run()) == ("127.0.0.1", 8000)
