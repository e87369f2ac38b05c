"""The gateway benchmark: each case direct to the fake upstream, through our gateway and
through the peers (LiteLLM's proxy, Portkey's gateway: bench/peers.py installs them under
bench/.peers/ on first use), interleaved in one run with the same fake upstream and load
generator; ours on the production configuration (PostgreSQL, Redis, a Celery worker,
WEB_CONCURRENCY=2, a real API key with a usage limit and an IAM rule, logging on).

    make bench          # or: .venv/bin/python bench/run.py   (BENCH_PEERS=0: without the peers)
    .venv/bin/python bench/run.py metrics-cost [rounds]   # metrics on vs off, interleaved
    .venv/bin/python bench/run.py granian [rounds]        # uvicorn (as shipped) vs granian
    .venv/bin/python bench/clients.py                     # the upstream leg: aiohttp vs httpx vs httpx2
    .venv/bin/python bench/run.py streams                 # only the open-streams case
    .venv/bin/python bench/run.py pipeline [requests]     # only the usage-log pipeline
    .venv/bin/python bench/run.py serve                   # start the system and wait (profiling)
    .venv/bin/python bench/ingest.py [records]            # ingestion rows per worker-second

Settings: BENCH_SECONDS (5 per run), BENCH_ROUNDS (3), BENCH_WORKERS (2),
BENCH_OPEN_STREAMS (10,000), BENCH_DB, BENCH_REDIS_URL. Needs PostgreSQL and Redis on
127.0.0.1 (as CI has them), `wrk` and ApacheBench (Debian packages), and for the peers
Node.js with npm. Writes the table to stdout and to bench/results/latest.md.
"""

import asyncio
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peers

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DB = os.environ.get("BENCH_DB", "llmgateway_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
DURATION = int(os.environ.get("BENCH_SECONDS", "5"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))  # our gateway's worker processes (WEB_CONCURRENCY)
BODY = '{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}],"max_tokens":32}'
STREAM_BODY = BODY[:-1] + ',"stream":true}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


class System:
    """The fake upstream, the gateway (WORKERS workers) and a Celery worker, as subprocesses."""

    def __init__(self):
        self.data_dir = tempfile.mkdtemp(prefix="llmgw-bench-")
        self.upstream_port, self.gateway_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATA_DIR": self.data_dir,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
            "REDIS_URL": REDIS_URL,
            "WEB_CONCURRENCY": str(WORKERS),
            "OPENAI_BASE_URL": f"http://127.0.0.1:{self.upstream_port}/v1",
            "LOG_LEVEL": "WARNING",
            "ALLOW_PRIVATE_PROVIDER_URLS": "true",  # the idle-stream upstream is a custom provider on loopback
            # Metrics on, as bin/run runs them: each role writes its files under DATA_DIR/metrics/<role>.
            "PROMETHEUS_MULTIPROC_DIR": str(Path(self.data_dir) / "metrics" / "web"),
        }
        for role in ("web", "worker"):
            (Path(self.data_dir) / "metrics" / role).mkdir(parents=True)
        self.processes: list[subprocess.Popen] = []
        self.key = ""

    def start(self, *args, log: str, **env: str) -> subprocess.Popen:
        process = subprocess.Popen(
            args, cwd=ROOT, env={**self.env, **env}, stdout=open(Path(self.data_dir) / log, "w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def setup(self) -> str:
        # An open stream holds a socket here, two in the gateway and one in the upstream: the
        # open-files limit goes up to its hard limit, for this process and those it starts.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB], stderr=subprocess.DEVNULL)
        subprocess.run([str(BIN / "python"), "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env, check=True)
        subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], stdout=subprocess.DEVNULL, check=True)
        self.upstream = self.start(str(BIN / "python"), "bench/upstream.py", str(self.upstream_port), log="upstream.log")
        self.worker = self.start(str(BIN / "celery"), "-A", "config", "worker", "--concurrency=1", "--loglevel=WARNING",
                                 "--without-gossip", "--without-mingle", log="worker.log",
                                 PROMETHEUS_MULTIPROC_DIR=str(Path(self.data_dir) / "metrics" / "worker"))
        self.gateway = self.start(
            str(BIN / "uvicorn"), "config.asgi:application", "--host", "127.0.0.1", "--port", str(self.gateway_port),
            "--workers", str(WORKERS), "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--lifespan", "on",
            "--log-level", "warning", "--backlog", "4096", log="gateway.log",
        )
        wait_port(self.upstream_port)
        wait_port(self.gateway_port)
        return self.make_key()

    def make_key(self) -> str:
        """An organization with an OpenAI key and a custom provider for the idle streams; a
        project with a limited, IAM-ruled API key; a caching project with another key."""
        script = f"""
import django; django.setup()
from apikeys import services as keys
from projects import services
user, org = services.user_signup(email=f"bench{{__import__('time').time_ns()}}@example.com", password="a long enough password")
services.organization_update(organization=org, name="Bench")
org.project_limit = 50; org.save()
project = services.project_create(organization=org, name="Bench", mode="api-keys")
cached = services.project_create(organization=org, name="Bench cached", mode="api-keys", caching_enabled=True, cache_duration_seconds=3600)
keys.provider_key_create(organization=org, provider="openai", token="sk-bench-upstream", validate=False)
keys.provider_key_create(organization=org, provider="custom", name="idle", token="sk-bench-idle",
                         base_url="http://127.0.0.1:{self.upstream_port}/idle/v1", validate=False)
token, key = keys.api_key_create(project=project, description="bench", usage_limit=1000000)
keys.iam_rule_create(api_key=key, rule_type="allow_providers", rule_value={{"providers": ["openai", "idle"]}})
cache_token, cache_key = keys.api_key_create(project=cached, description="bench cache", usage_limit=1000000)
pipe_token, pipe_key = keys.api_key_create(project=project, description="bench pipeline", usage_limit=1000000)
print(token, key.id, cache_token, cache_key.id, pipe_token, pipe_key.id)
"""
        out = subprocess.run([str(BIN / "python"), "-c", script], cwd=ROOT, env=self.env, check=True,
                             capture_output=True, text=True).stdout.split()
        self.key_id, self.cache_token, self.cache_key_id = out[1], out[2], out[3]
        self.pipeline_token, self.pipeline_key_id = out[4], out[5]
        return out[0]

    @property
    def redis_pid(self) -> int:
        """The Redis server's process (for its CPU time per request)."""
        info = subprocess.run(["redis-cli", "-u", REDIS_URL, "info", "server"], capture_output=True, text=True,
                              check=True).stdout
        return int(re.search(r"process_id:(\d+)", info).group(1))

    def start_peers(self) -> None:
        """Installs (once) and starts LiteLLM and Portkey against the same fake upstream."""
        self.peer_ports: dict[str, int] = {}
        self.peer_processes: dict[str, subprocess.Popen] = {}
        for name in peers.PEERS:
            peers.install(name)
            self.peer_ports[name] = free_port()
            self.peer_processes[name] = peers.start(name, self.upstream_port, self.peer_ports[name], self.data_dir,
                                                    self.start)
        for port in self.peer_ports.values():
            wait_port(port, timeout=180)  # LiteLLM takes 10-20 s to start, more on a busy machine

    def worker_pids(self) -> list[int]:
        """The gateway's worker processes (children of uvicorn's supervisor)."""
        children = Path(f"/proc/{self.gateway.pid}/task/{self.gateway.pid}/children").read_text().split()
        return [int(pid) for pid in children if "multiprocessing.resource_tracker" not in _cmdline(int(pid))]

    def peak_rss_mb(self) -> list[float]:
        peaks = []
        for pid in self.worker_pids():
            status = Path(f"/proc/{pid}/status").read_text()
            peaks.append(int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024)
        return peaks

    def rss_mb(self) -> list[float]:
        values = []
        for pid in self.worker_pids():
            status = Path(f"/proc/{pid}/status").read_text()
            values.append(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024)
        return values

    def log_rows(self, key_id: str) -> tuple[int, int]:
        """(rows, distinct request ids) of a key's usage log."""
        sql = f"SELECT count(*), count(DISTINCT request_id) FROM usage_usagelog WHERE api_key_id = '{key_id}'"
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", DB, "-tAc", sql],
                             capture_output=True, text=True, check=True).stdout.strip()
        rows, distinct = out.split("|")
        return int(rows), int(distinct)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def wrk(url: str, body: str, key: str | None, connections: int, seconds: int = DURATION,
        headers: dict[str, str] | None = None, close: bool = False) -> dict:
    """wrk POSTing `body` to `url` for `seconds`: requests/s, latency p50/p99 (ms), the count
    of answers and of errors. `close`: a new connection per request (Connection: close)."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    headers = dict(headers or {"Content-Type": "application/json"})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if close:
        headers["Connection"] = "close"
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    script.unlink()
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "errors": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0,
        "socket_errors": sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out)),
    }


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]




async def open_streams(url: str, key: str | None, count: int, body: str) -> dict:
    """`count` streams started at once: errors, time to first byte, and how many were open at
    the same moment (first byte received, end not yet)."""
    import aiohttp

    ttfb, errors, open_now, most_open = [], 0, 0, 0
    connector = aiohttp.TCPConnector(limit=0)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=180)) as session:

        async def one():
            nonlocal errors, open_now, most_open
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    first = await response.content.readany()
                    ttfb.append((time.perf_counter() - start) * 1000)
                    open_now += 1
                    most_open = max(most_open, open_now)
                    try:
                        answer = first + await response.read()
                    finally:
                        open_now -= 1
                    if response.status != 200 or b"[DONE]" not in answer:
                        errors += 1
            except Exception as e:
                errors += 1
                kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1

        kinds: dict[str, int] = {}
        await asyncio.gather(*(one() for _ in range(count)))
        if kinds:
            print(f"stream errors: {kinds}", file=sys.stderr)
    ttfb.sort()
    return {"errors": errors, "ttfb_p99": ttfb[int(len(ttfb) * 0.99) - 1] if ttfb else None, "done": len(ttfb),
            "most_open": most_open}


def serve() -> None:
    """Starts the system and waits: for profiling by hand (`python bench/run.py serve`)."""
    system = System()
    try:
        key = system.setup()
        print(f"gateway http://127.0.0.1:{system.gateway_port}  upstream http://127.0.0.1:{system.upstream_port}")
        print(f"key {key}  gateway pid {system.gateway.pid}", flush=True)
        # Blocked first, so that the signal wakes sigwait instead of killing us before cleanup.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        system.stop()


def ab(url: str, body: str, key: str, requests: int, connections: int, keep_alive: bool = False) -> int:
    """Exactly `requests` requests (ApacheBench waits for every answer): the pipeline's count."""
    body_file = Path(tempfile.mkstemp(suffix=".json")[1])
    body_file.write_text(body)
    out = subprocess.run(
        ["ab", "-q", *(["-k"] if keep_alive else []), "-n", str(requests), "-c", str(connections), "-p", str(body_file),
         "-T", "application/json",
         "-H", f"Authorization: Bearer {key}", url], capture_output=True, text=True, check=True,
    ).stdout
    body_file.unlink()
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx responses:\s+(\d+)", out)) else 0
    return requests - failed - non2xx


def pipeline_case(system: "System", url: str, requests: int = 20000, keep_alive: bool = False) -> dict:
    """Sends an exact number of requests at full rate with a key of its own, then waits for
    the usage log to hold them all."""
    key_id = system.pipeline_key_id
    before, _ = system.log_rows(key_id)
    worker_cpu, postgres_cpu = _tree_cpu_seconds(system.worker.pid), _postgres_cpu_seconds()
    started = time.monotonic()
    ok = ab(url, BODY, system.pipeline_token, requests, 32, keep_alive)
    sent_done = time.monotonic()
    rows = before
    deadline = sent_done + 120
    while time.monotonic() < deadline:
        rows, distinct = system.log_rows(key_id)
        if rows - before >= requests:
            break
        time.sleep(0.2)
    drained = time.monotonic()
    stored = max(rows - before, 1)
    worker_ms = (_tree_cpu_seconds(system.worker.pid) - worker_cpu) * 1000 / stored
    postgres_ms = (_postgres_cpu_seconds() - postgres_cpu) * 1000 / stored
    time.sleep(2)  # anything delivered twice would land by now
    rows, distinct = system.log_rows(key_id)
    return {"requests": requests, "ok": ok, "rows": rows - before, "duplicates": rows - distinct,
            "rows_per_s": (rows - before) / (drained - started), "lag_s": drained - sent_done,
            "keep_alive": keep_alive, "rps": requests / (sent_done - started),
            "worker_cpu_ms": worker_ms, "postgres_cpu_ms": postgres_ms}


def streams_only() -> None:
    """`python bench/run.py streams`: only the open-streams case."""
    system = System()
    try:
        system.key = system.setup()
        print(open_streams_case(system), flush=True)
    finally:
        system.stop()


def pipeline_only(requests: int = 20000) -> None:
    """`python bench/run.py pipeline [requests]`: only the usage-log pipeline cases."""
    system = System()
    try:
        system.setup()
        url = f"http://127.0.0.1:{system.gateway_port}/v1/chat/completions"
        for keep_alive in (False, True):
            print(pipeline_case(system, url, requests, keep_alive), flush=True)
    finally:
        system.stop()


TARGETS = ("direct", "ours", *peers.PEERS)
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
IDLE_BODY = '{"model":"idle/gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}],"stream":true}'
OPEN_STREAMS = int(os.environ.get("BENCH_OPEN_STREAMS", "10000"))
# (name, body, concurrency, a new connection per request)
CASES = [
    ("non-streaming, concurrency 1", BODY, 1, False),
    ("non-streaming, concurrency 32", BODY, 32, False),
    ("streaming, concurrency 32", STREAM_BODY, 32, False),
    ("non-streaming, concurrency 32, connection per request", BODY, 32, True),
]


def target_request(system: "System", target: str, body: str) -> tuple[str, dict[str, str], str, int]:
    """(url, headers, body, pid whose process tree serves it) for one target of a case."""
    json_only = {"Content-Type": "application/json"}
    if target == "direct":
        return f"http://127.0.0.1:{system.upstream_port}/v1/chat/completions", json_only, body, system.upstream.pid
    if target == "ours":
        return (f"http://127.0.0.1:{system.gateway_port}/v1/chat/completions",
                {**json_only, "Authorization": f"Bearer {system.key}"}, body, system.gateway.pid)
    path, headers, peer_body = peers.request(target, system.upstream_port, body, '"stream":true' in body)
    return f"http://127.0.0.1:{system.peer_ports[target]}{path}", headers, peer_body, system.peer_processes[target].pid


def measure(system: "System", target: str, body: str, connections: int, close: bool) -> dict:
    """One wrk run against a target, with the CPU its processes spent per answered request."""
    url, headers, body, pid = target_request(system, target, body)
    cpu, redis_cpu = _tree_cpu_seconds(pid), _tree_cpu_seconds(system.redis_pid)
    result = wrk(url, body, None, connections, headers=headers, close=close)
    answered = max(result["requests"], 1)
    result["cpu_ms"] = (_tree_cpu_seconds(pid) - cpu) * 1000 / answered
    result["redis_cpu_ms"] = (_tree_cpu_seconds(system.redis_pid) - redis_cpu) * 1000 / answered
    return result


def main() -> None:
    """Every case against every target, interleaved: ROUNDS rounds, each running each case
    for every target in turn (the order rotating), so that all see the same machine; the
    table gives medians. Then what only ours has: cache hits, open streams, the usage log."""
    with_peers = os.environ.get("BENCH_PEERS", "1") != "0"
    targets = [t for t in TARGETS if with_peers or t not in peers.PEERS]
    system = System()
    try:
        system.key = system.setup()
        if with_peers:
            system.start_peers()
        for target in targets:  # warm up: keys, pools, connections, JIT-less caches
            measure(system, target, BODY, 8, False)
        streams = open_streams_case(system)
        results: dict[tuple[str, str], list[dict]] = {}
        for n in range(ROUNDS):
            for name, body, connections, close in CASES:
                order = targets[n % len(targets):] + targets[:n % len(targets)]
                for target in order:
                    result = measure(system, target, body, connections, close)
                    results.setdefault((name, target), []).append(result)
                    print(f"round {n + 1} {name} {target}: {result['rps']:.0f} req/s, p50 {result['p50']:.2f} ms, "
                          f"{result['cpu_ms']:.3f} CPU ms/req, errors {result['errors'] + result['socket_errors']}",
                          flush=True)
        through = f"http://127.0.0.1:{system.gateway_port}/v1/chat/completions"
        wrk(through, BODY, system.cache_token, 1, seconds=1)  # the first call stores the answer
        cache = (wrk(f"http://127.0.0.1:{system.upstream_port}/v1/chat/completions", BODY, None, 32),
                 wrk(through, BODY, system.cache_token, 32))
        pipelines = [pipeline_case(system, through, 20000, keep_alive) for keep_alive in (True, False)]
        report = render(results, targets, cache, streams, pipelines)
        print(report)
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        (out / "latest.md").write_text(f"# Benchmark {stamp}\n\n{machine(with_peers)}\n\n{report}\n")
    finally:
        system.stop()


def open_streams_case(system: "System") -> dict:
    """OPEN_STREAMS streams started at once, each 20 s long with a chunk a second, direct and
    through ours; then the gateway workers' peak memory."""
    idle = f"http://127.0.0.1:{system.upstream_port}/idle/v1/chat/completions"
    direct = asyncio.run(open_streams(idle, None, OPEN_STREAMS, STREAM_BODY))
    ours = asyncio.run(open_streams(f"http://127.0.0.1:{system.gateway_port}/v1/chat/completions", system.key,
                                    OPEN_STREAMS, IDLE_BODY))
    return {"direct": direct, "ours": ours, "peak_rss_mb": system.peak_rss_mb()}


def machine(with_peers: bool = False) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    peer_text = (f"; LiteLLM {peers.LITELLM_VERSION} proxy (2 workers, no database) and Portkey gateway "
                 f"{peers.PORTKEY_VERSION} (one Node process: it has no worker option)" if with_peers else "")
    return (f"{os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}, loopback; ours: uvicorn "
            f"(uvloop, httptools) with {WORKERS} workers, PostgreSQL, Redis, 1 Celery worker{peer_text}; "
            f"the same fake upstream for all; load: wrk, ApacheBench, aiohttp")


def render(results: dict[tuple[str, str], list[dict]], targets: list[str], cache: tuple[dict, dict], streams: dict,
           pipelines: list[dict]) -> str:
    lines = [f"Medians of {ROUNDS} interleaved runs of {DURATION} s per case and target. CPU ms/req: the "
             "target's processes' CPU time per answered request (the fake upstream's for direct). "
             "Redis CPU ms/req: the Redis server's, for ours (the peers use none). ours ÷: our requests/s "
             "over the target's.", "",
             "| case | target | RPS | p50 ms | p99 ms | added p50 ms | CPU ms/req | Redis CPU ms/req | errors | ours ÷ |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, *_ in CASES:
        direct_p50 = _median([r["p50"] for r in results[(name, "direct")]])
        ours_rps = _median([r["rps"] for r in results[(name, "ours")]])
        for target in targets:
            runs = results[(name, target)]
            rps, p50 = _median([r["rps"] for r in runs]), _median([r["p50"] for r in runs])
            added = "" if target == "direct" else f"{p50 - direct_p50:.2f}"
            ratio = "" if target in ("direct", "ours") else f"{ours_rps / rps:.1f}×"
            errors = sum(r["errors"] + r["socket_errors"] for r in runs)
            redis = f"{_median([r['redis_cpu_ms'] for r in runs]):.3f}" if target == "ours" else ""
            lines.append(f"| {name} | {target} | {rps:.0f} | {p50:.2f} | {_median([r['p99'] for r in runs]):.2f} | "
                         f"{added} | {_median([r['cpu_ms'] for r in runs]):.3f} | {redis} | {errors} | {ratio} |")
    direct, ours = cache
    d, o = streams["direct"], streams["ours"]
    lines += [
        "", "| cache hits, concurrency 32 | RPS | p50 ms | p99 ms | errors |", "|---|---|---|---|---|",
        f"| direct (no cache) | {direct['rps']:.0f} | {direct['p50']:.2f} | {direct['p99']:.2f} | {direct['errors']} |",
        f"| ours, every answer from the response cache | {ours['rps']:.0f} | {ours['p50']:.2f} | {ours['p99']:.2f} | "
        f"{ours['errors'] + ours['socket_errors']} |",
        "",
        f"| {OPEN_STREAMS:,} streams started at once (20 s each, a chunk a second) | errors | completed | "
        "most open at once | TTFB p99 ms |",
        "|---|---|---|---|---|",
        f"| direct | {d['errors']} | {d['done']} | {d['most_open']} | {d['ttfb_p99'] or 0:.0f} |",
        f"| through ours | {o['errors']} | {o['done']} | {o['most_open']} | {o['ttfb_p99'] or 0:.0f} |",
        "",
        "peak RSS per gateway worker after the open streams: "
        + ", ".join(f"{m:.0f} MB" for m in streams["peak_rss_mb"]),
        "",
        "| usage-log pipeline, 20,000 requests at full rate (ApacheBench, concurrency 32) | answered 2xx | RPS | rows | "
        "duplicates | rows complete after the last answer s | Celery worker CPU ms/row | PostgreSQL CPU ms/row |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pipeline in pipelines:
        kind = "keep-alive" if pipeline["keep_alive"] else "connection per request"
        lines.append(f"| {kind} | {pipeline['ok']} | {pipeline['rps']:.0f} | {pipeline['rows']} | "
                     f"{pipeline['duplicates']} | {pipeline['lag_s']:.1f} | {pipeline['worker_cpu_ms']:.3f} | "
                     f"{pipeline['postgres_cpu_ms']:.3f} |")
    return "\n".join(lines)


# A/B variants: (the other gateway's ASGI app, its HTTP protocol, what it lacks, the results file).
def _uvicorn(app: str, protocol: str):
    return lambda port: [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS),
                         "--loop", "uvloop", "--http", protocol, "--no-access-log", "--lifespan", "on",
                         "--log-level", "warning", "--backlog", "4096"]


def _granian(port: int) -> list[str]:
    return [str(BIN / "granian"), "--interface", "asgi", "--workers", str(WORKERS), "--loop", "uvloop", "--host",
            "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning", "--backlog", "4096",
            "config.asgi:application"]


# A/B variants: (the other gateway's command for a port, what "on" has that it lacks, the results file).
VARIANTS = {
    "metrics-cost": (_uvicorn("bench.nometrics:application", "httptools"), "metrics", "metrics-cost.md"),
    "granian": (_granian, "uvicorn (off: granian)", "granian.md"),
}


def metrics_cost(rounds: int = 10, variant: str = "metrics-cost") -> None:
    """An A/B of one change on the hot path: the non-streaming chat case at concurrency 32
    against two gateways of the same system, one as shipped ("on") and one without the change
    ("off"): for metrics-cost, metric updates that are no-ops (bench/nometrics.py); for
    granian, the granian ASGI server instead of uvicorn.
    Alternating runs of DURATION seconds, so that both see the same machine. Besides
    throughput, the CPU time the gateway's worker processes spent per request (from /proc),
    which other load on the machine disturbs far less than requests per second."""
    command, change, results_file = VARIANTS[variant]
    system = System()
    try:
        key = system.setup()
        off_port = free_port()
        (Path(system.data_dir) / "metrics" / "off").mkdir()
        off = system.start(*command(off_port), log="gateway-off.log",
                           PROMETHEUS_MULTIPROC_DIR=str(Path(system.data_dir) / "metrics" / "off"))
        wait_port(off_port)
        gateways = {"on": (f"http://127.0.0.1:{system.gateway_port}/v1/chat/completions", system.gateway.pid),
                    "off": (f"http://127.0.0.1:{off_port}/v1/chat/completions", off.pid)}
        for url, _ in gateways.values():
            wrk(url, BODY, key, 8, seconds=3)  # warm up: keys, pools, connections
        results: dict[str, list[dict]] = {"on": [], "off": []}
        for n in range(rounds):
            for name in (("on", "off") if n % 2 == 0 else ("off", "on")):
                url, supervisor = gateways[name]
                cpu = _tree_cpu_seconds(supervisor)
                result = wrk(url, BODY, key, 32)
                result["cpu_ms"] = (_tree_cpu_seconds(supervisor) - cpu) * 1000 / max(result["requests"], 1)
                results[name].append(result)
                print(f"round {n + 1} {change} {name}: {result['rps']:.0f} req/s, p50 {result['p50']:.2f} ms, "
                      f"p99 {result['p99']:.2f} ms, {result['cpu_ms']:.3f} CPU ms per request, "
                      f"errors {result['errors'] + result['socket_errors']}", flush=True)
        report = render_cost(results, rounds, change)
        print(report)
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        (Path(__file__).parent / "results" / results_file).write_text(
            f"# {change.capitalize()}: on vs off, {stamp}\n\n{machine()}\n\n{report}\n")
    finally:
        system.stop()


def _postgres_cpu_seconds() -> float:
    """CPU time so far of every PostgreSQL process on this machine (the server and its
    backends: the benchmark's database is the only busy one)."""
    pids = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and _cmdline(int(e.name)).startswith("postgres")]
    return _cpu_of(pids)


def _tree_cpu_seconds(root: int) -> float:
    """User + system CPU time so far of a process and all its descendants (a uvicorn
    supervisor and its workers, LiteLLM's, Node's)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return _cpu_of(tree)


def _cpu_of(pids) -> float:
    """User + system CPU seconds so far of these processes (those that ended count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def render_cost(results: dict[str, list[dict]], rounds: int, change: str = "metrics") -> str:
    lines = [f"non-streaming chat, concurrency 32, {rounds} alternating runs of {DURATION} s each (medians):", "",
             f"| {change} | RPS | p50 ms | p99 ms | gateway CPU ms per request | RPS of each run |",
             "|---|---|---|---|---|---|"]
    for name in ("off", "on"):
        runs = results[name]
        each = ", ".join(f"{r['rps']:.0f}" for r in runs)
        lines.append(f"| {name} | {_median([r['rps'] for r in runs]):.0f} | {_median([r['p50'] for r in runs]):.2f} | "
                     f"{_median([r['p99'] for r in runs]):.2f} | {_median([r['cpu_ms'] for r in runs]):.3f} | {each} |")
    on, off = results["on"], results["off"]
    rps = _median([a["rps"] / b["rps"] for a, b in zip(on, off, strict=True)])
    cpu = _median([a["cpu_ms"] / b["cpu_ms"] for a, b in zip(on, off, strict=True)])
    lines += ["", f"{change} on vs off, median of the rounds' ratios: throughput {100 * (rps - 1):+.1f}%, "
                  f"gateway CPU per request {100 * (cpu - 1):+.1f}%"]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] and sys.argv[1] in VARIANTS:
        metrics_cost(*(int(a) for a in sys.argv[2:3]), variant=sys.argv[1])
    elif sys.argv[1:2] == ["streams"]:
        streams_only()
    elif sys.argv[1:2] == ["pipeline"]:
        pipeline_only(*(int(a) for a in sys.argv[2:3]))
    else:
        serve() if sys.argv[1:] == ["serve"] else main()
