"""Redis dies under load and comes back (issue 7, item 6).

The test runs its own redis-server (append-only, synced on every write, as a production
broker runs) on its own port, and a gateway and a Celery worker that use it for spend
counters, the response cache, events and the broker. It kills Redis with SIGKILL while
streams are in flight, keeps sending while it is down, and starts it again on the same port.

While Redis is down: the response cache is a miss (requests no limit applies to are still
served); requests that a spend limit or credits must cover fail closed, fast, with a 503
that says why, and never reach the provider; usage records wait in the gateway. Once Redis is
back, without restarting anything: limits and the cache work again, every record is written
once, and every reservation made before the crash is settled.
"""

import asyncio
import threading
import time
from collections import Counter
from decimal import Decimal

import orjson

from apikeys.models import ApiKey
from core.hashing import sha256_hex
from gateway.pricing import to_nanos
from projects import services
from projects.models import Organization
from tests.reliability.conftest import RedisServer, eventually, send_all, wait_for_rows
from usage.models import CreditTransaction, UsageLog
from usage.services import credits_add

CACHED = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is Redis?"}]})


def fresh(n: int, stream: bool = False) -> bytes:
    return orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Question {n}"}],
                         "max_tokens": 50, **({"stream": True} if stream else {})})


def test_with_redis_killed_the_cache_misses_limits_fail_closed_and_everything_recovers_without_a_restart(
    processes, base_env, org, project, own_openai_key, key_for, fake_upstream
):
    # A key spending the organization's credits under a usage limit: it needs the counters.
    services.project_update(project=project, mode="credits", caching_enabled=True)
    credits_add(organization=org, amount="10")
    org.refresh_from_db()
    balance_before = org.credits
    limited = key_for(project, usage_limit=Decimal("5"))
    # A key of a project paying with the organization's own provider key, with no limit: it
    # needs the cache but no counter.
    open_project = services.project_create(organization=org, name="Open", mode="api-keys", caching_enabled=True)
    unlimited = key_for(open_project)

    redis = RedisServer(persistent=True).start()
    try:
        # A short visibility timeout: batches the worker held unacknowledged when Redis died
        # are handed out again within seconds, not a minute.
        env = processes.env(base_env, REDIS_URL=redis.url, CELERY_BROKER_URL=redis.url, CELERY_VISIBILITY_TIMEOUT="5")
        processes.worker(env)
        gw = processes.gateway(env)
        sent: list[str] = []

        def burst(prefix: str, requests: list[tuple[str, bytes]], **kwargs):
            batch = [(gw.url, token, f"{prefix}-{i}", raw) for i, (token, raw) in enumerate(requests)]
            sent.extend(r[2] for r in batch)
            return asyncio.run(send_all(batch, **kwargs))

        # Redis up: everything works, and CACHED is in the cache.
        up = burst("up", [(limited, fresh(i)) for i in range(10)] + [(unlimited, CACHED)])
        assert {a.status for a in up} == {200}
        time.sleep(0.3)
        hit = burst("up-hit", [(unlimited, CACHED)])[0]
        assert hit.headers["x-gateway-cache"] == "HIT"

        # Streams in flight when Redis dies: reserved before, settled after it is back.
        fake_upstream.chunk_delay = 0.1
        fake_upstream.stream_chunks = 20  # about 2 s each
        in_flight: list = []
        calls_so_far = len(fake_upstream.calls)
        streams = threading.Thread(target=lambda: in_flight.extend(
            burst("in-flight", [(limited, fresh(100 + i, stream=True)) for i in range(10)])))
        streams.start()
        fake_upstream.wait_for_calls(calls_so_far + 10, timeout=10)
        redis.kill()
        killed_at = time.monotonic()
        fake_upstream.chunk_delay = 0.0

        calls_before = len(fake_upstream.calls)
        refused = burst("down-limited", [(limited, fresh(200 + i, stream=i % 2 == 1)) for i in range(20)])
        missed = burst("down-cached", [(unlimited, CACHED) for _ in range(10)])
        streams.join(20)
        assert not streams.is_alive()
        down_for = time.monotonic() - killed_at

        # Fail closed, fast and clearly: a 503 that says to retry, and no call upstream.
        assert Counter((a.status, a.code) for a in refused) == {(503, "service_unavailable"): 20}
        assert all(a.headers.get("retry-after") for a in refused)
        assert max(a.seconds for a in refused) < 2, [round(a.seconds, 2) for a in refused]
        # The cache degrades to misses: served from upstream, promptly.
        assert Counter((a.status, a.headers.get("x-gateway-cache")) for a in missed) == {(200, "MISS"): 10}
        assert max(a.seconds for a in missed) < 2, [round(a.seconds, 2) for a in missed]
        assert len(fake_upstream.calls) - calls_before == 10  # only the unlimited key's
        # Streams admitted before the crash finish normally.
        assert all(a.completed for a in in_flight), [(a.status, a.text[-300:]) for a in in_flight]

        # Redis back on the same port; the gateway and worker are the same processes.
        redis.start()
        restarted_at = time.monotonic()
        recovered = eventually(
            lambda: burst("probe", [(limited, fresh(300 + len(sent)))])[0].status == 200, timeout=15, interval=0.5)
        assert recovered, "limits did not work again after Redis came back"
        assert time.monotonic() - restarted_at < 15
        after = burst("after-limited", [(limited, fresh(400 + i, stream=i % 2 == 1)) for i in range(20)])
        assert all(a.completed for a in after)
        assert burst("after-cached", [(unlimited, CACHED)])[0].headers["x-gateway-cache"] == "HIT"
        assert gw.alive

        # Every request has its one row, those buffered during the outage included.
        assert wait_for_rows(sent, timeout=40) == Counter({rid: 1 for rid in sent})
        logs = list(UsageLog.objects.filter(request_id__in=sent))
        assert all(log.cost == 0 for log in logs if log.request_id.startswith("down-limited"))
        key = ApiKey.objects.get(token_hash=sha256_hex(limited))
        billed = sum((log.cost for log in logs if log.api_key_id == key.id), Decimal(0))
        assert billed > 0 and key.usage == billed <= key.usage_limit
        org = Organization.objects.get(pk=org.pk)
        debits = CreditTransaction.objects.filter(organization=org, kind=CreditTransaction.Kind.USAGE)
        assert -sum((t.amount for t in debits), Decimal(0)) == billed == balance_before - org.credits
        # Nothing stays reserved: the settlements that failed while Redis was down were sent
        # again, and Redis's counters agree with the bill to the nano.
        spend = redis.client()
        assert eventually(lambda: int(spend.get(f"llmgw:spend:res:{key.id}") or 0) == 0, timeout=5)
        assert int(spend.get(f"llmgw:spend:cres:{org.id}") or 0) == 0
        assert int(spend.get(f"llmgw:spend:usage:{key.id}")) == to_nanos(billed)
        # Batches delivered again after the crash are stored once all the same.
        assert eventually(redis.broker_idle, timeout=30)
        assert wait_for_rows(sent) == Counter({rid: 1 for rid in sent})
        assert ApiKey.objects.get(pk=key.id).usage == billed
        assert down_for < 30
    finally:
        processes.stop()
        redis.stop()


# --- a reply lost on its way back from Redis --------------------------------------------------------------


class LossyProxy:
    """A TCP proxy to Redis that can lose one reply: the next request carrying `marker` goes
    through and Redis runs it, but the client's connection is then reset instead of answered,
    as when the network or a failover drops a connection at the wrong moment. The client cannot
    tell whether its command ran."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = 0
        self.marker: bytes | None = None
        self.lost = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lossy-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "LossyProxy":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(5)
        return self

    def stop(self) -> None:
        async def close():
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def lose_reply_to(self, marker: bytes) -> None:
        self.marker = marker

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer) -> None:
        import socket
        import struct

        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def replies():
            try:
                while data := await upstream_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (OSError, asyncio.CancelledError):
                pass

        relaying = asyncio.create_task(replies())
        try:
            while data := await reader.read(65536):
                lose = self.marker is not None and self.marker in data
                if lose:
                    self.marker = None
                    relaying.cancel()  # this reply will not be passed back
                upstream_writer.write(data)
                await upstream_writer.drain()
                if lose:
                    await asyncio.sleep(0.3)  # Redis runs the command meanwhile
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    self.lost += 1
                    break
        except OSError:
            pass
        finally:
            relaying.cancel()
            upstream_writer.close()


def script_sha(source: str) -> bytes:
    import hashlib

    return hashlib.sha1(source.encode()).hexdigest().encode()


def test_a_spend_script_whose_reply_is_lost_is_neither_applied_twice_nor_left_holding_a_reservation(
    processes, base_env, project, own_openai_key, key_for, fake_upstream
):
    from gateway import store

    services.project_update(project=project, mode="api-keys")
    token = key_for(project, usage_limit=Decimal("5"))
    key_id = ApiKey.objects.get(token_hash=sha256_hex(token)).id
    redis = RedisServer().start()
    proxy = LossyProxy(redis.port).start()
    try:
        # Spend counters go through the proxy; the broker does not.
        env = processes.env(base_env, REDIS_URL=proxy.url, CELERY_BROKER_URL=redis.url)
        processes.worker(env)
        gw = processes.gateway(env)
        spend = redis.client()
        sent: list[str] = []

        def one(name: str):
            sent.append(name)
            return asyncio.run(send_all([(gw.url, token, name, fresh(len(sent)))]))[0]

        def counters_match_the_bill() -> bool:
            wait_for_rows(sent)
            billed = sum((log.cost for log in UsageLog.objects.filter(request_id__in=sent)), Decimal(0))
            reserved = int(spend.get(f"llmgw:spend:res:{key_id}") or 0)
            usage = int(spend.get(f"llmgw:spend:usage:{key_id}") or 0)
            assert (reserved, usage) == (0, to_nanos(billed)), (reserved, usage, to_nanos(billed))
            return True

        assert one("before").completed
        # The settlement runs in Redis, its reply is lost: the gateway keeps it to send again.
        proxy.lose_reply_to(script_sha(store._SETTLE))
        assert one("settle-reply-lost").completed
        assert eventually(lambda: proxy.lost == 1, timeout=5)
        assert one("after-settle").completed  # sends the kept settlement along
        assert counters_match_the_bill()

        # The reservation runs in Redis, its reply is lost: the request is refused (503).
        proxy.lose_reply_to(script_sha(store._RESERVE))
        refused = one("reserve-reply-lost")
        assert (refused.status, refused.code) == (503, "service_unavailable")
        assert proxy.lost == 2
        assert one("after-reserve").completed
        assert counters_match_the_bill()
        assert eventually(redis.broker_idle, timeout=10)
    finally:
        processes.stop()
        proxy.stop()
        redis.stop()
