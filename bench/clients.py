"""The upstream leg's HTTP client, compared: the CPU time this process spends per request when
it makes `requests` chat calls (keep-alive, `concurrency` at once, uvloop) to the benchmark's
fake upstream, with aiohttp (what the gateway uses), httpx and httpx2, in alternating rounds.

    .venv/bin/python bench/clients.py [requests] [concurrency] [rounds]

Prints a table of medians; the figure that matters is CPU ms per request (the fake upstream
answers at once, so the client's own work is what is measured).
"""

import asyncio
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import httpx2  # installed with genai-prices: httpx's successor, same API
import uvloop

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}],"max_tokens":32}'
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}


async def with_aiohttp(url: str, requests: int, concurrency: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker(count: int) -> None:
            for _ in range(count):
                async with session.post(url, data=BODY, headers=HEADERS) as response:
                    await response.read()

        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))


async def with_httpx(url: str, requests: int, concurrency: int, module=httpx) -> None:
    limits = module.Limits(max_connections=None, max_keepalive_connections=concurrency)
    async with module.AsyncClient(limits=limits) as client:

        async def worker(count: int) -> None:
            for _ in range(count):
                response = await client.post(url, content=BODY, headers=HEADERS)
                response.read()

        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))


async def with_httpx2(url: str, requests: int, concurrency: int) -> None:
    await with_httpx(url, requests, concurrency, httpx2)


CLIENTS = {f"aiohttp {aiohttp.__version__}": with_aiohttp, f"httpx {httpx.__version__}": with_httpx,
           f"httpx2 {httpx2.__version__}": with_httpx2}


def measure(run, url: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(CPU ms per request, requests per second) of one run in this process."""
    cpu, wall = time.process_time(), time.perf_counter()
    uvloop.run(run(url, requests, concurrency))
    return (time.process_time() - cpu) * 1000 / requests, requests / (time.perf_counter() - wall)


def main(requests: int = 20000, concurrency: int = 32, rounds: int = 5) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    upstream = subprocess.Popen([sys.executable, str(Path(__file__).parent / "upstream.py"), str(port)])
    try:
        time.sleep(1)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in CLIENTS}
        for _ in range(rounds):
            for name, run in CLIENTS.items():
                results[name].append(measure(run, url, requests, concurrency))
        print(f"{requests} requests, concurrency {concurrency}, keep-alive, {rounds} alternating rounds (medians)\n")
        print("| client | CPU ms per request | requests/s |\n|---|---|---|")
        for name, runs in results.items():
            print(f"| {name} | {statistics.median(r[0] for r in runs):.3f} | {statistics.median(r[1] for r in runs):.0f} |")
    finally:
        upstream.terminate()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
