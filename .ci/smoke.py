"""The production configuration from a fresh clone, as a new user runs it.

    .venv/bin/python .ci/smoke.py <clone> [--embedded]

`<clone>` is a fresh `git clone` of the repository. There, `make run` builds its own `.venv`
from `requirements.txt` alone and starts the whole system: with PostgreSQL, Redis and
`WEB_CONCURRENCY=2` (the production configuration), or with `--embedded` on the embedded
defaults (SQLite, in-process cache, file broker). This script (run from the developer venv,
which has the `openai` SDK and the fake upstream) then acts as a user: waits for /readyz,
signs up, makes a project and a key, adds credits with `manage.py addcredits` in the same
environment, sends one plain and one streamed request with the official `openai` SDK to a
fake OpenAI upstream, waits for both usage rows, stops everything with Ctrl-C (SIGINT to the
process group) and checks that no process is left.

Exit status 0 when every step passed; otherwise the failing step and the server's log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from openai import OpenAI  # noqa: E402

from tests.fake_upstream import FakeUpstream  # noqa: E402

DATABASE = "llmgateway_smoke"
REDIS_URL = "redis://127.0.0.1:6379/14"


class SmokeFailure(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_members(pgid: int) -> dict[int, str]:
    """Live processes of the process group: pid → command line."""
    members = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members[int(entry.name)] = cmdline
    return members


def call(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else {}


def expect(status: int, body: dict, wanted: int, step: str) -> dict:
    if status != wanted:
        raise SmokeFailure(f"{step}: expected {wanted}, got {status} {body}")
    return body


def environment(clone: Path, embedded: bool, port: int, fake: FakeUpstream) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "WEB_CONCURRENCY", "SECRET_KEY",
                 "ENCRYPTION_KEYS", "DJANGO_SETTINGS_MODULE", "DEBUG"):
        env.pop(name, None)
    env.update(
        DATA_DIR=str(clone / (".data-embedded" if embedded else ".data-production")),
        HOST="127.0.0.1",
        PORT=str(port),
        OPENAI_BASE_URL=fake.base_url("openai"),
        OPENAI_API_KEY="sk-smoke-gateway-key",
        PATH=f"{clone / '.venv' / 'bin'}:{os.environ['PATH']}",
    )
    if not embedded:
        env.update(
            DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
            REDIS_URL=REDIS_URL,
            WEB_CONCURRENCY="2",
        )
    return env


def fresh_stores(embedded: bool) -> None:
    """An empty database and Redis database for the production run."""
    if embedded:
        return
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DATABASE}"],
                   check=True, capture_output=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DATABASE], check=True)
    subprocess.run(["redis-cli", "-n", REDIS_URL.rsplit("/", 1)[1], "FLUSHDB"], check=True, capture_output=True)


def wait_ready(base: str, process: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SmokeFailure(f"make run exited with {process.returncode} before /readyz answered")
        try:
            status, body = call("GET", f"{base}/readyz")
            if status == 200:
                return body
            last = (status, body)
        except OSError as e:
            last = e
        time.sleep(0.5)
    raise SmokeFailure(f"/readyz not ready after {timeout:.0f} s: {last}")


def web_processes(pgid: int, concurrency: int) -> list[str]:
    """uvicorn itself with one worker; with more, the workers it spawns."""
    commands = group_members(pgid).values()
    if concurrency == 1:
        return [c for c in commands if "uvicorn" in c]
    return [c for c in commands if "multiprocessing.spawn" in c]


def user_session(base: str, clone: Path, env: dict, fake: FakeUpstream, concurrency: int) -> None:
    """Sign up, project, key, credits; one plain and one streamed request; both logged."""
    _, body = call("POST", f"{base}/api/v1/auth/signup",
                   {"email": "smoke@example.com", "password": "a smoke test password", "name": "Smoke"})
    token, organization = body["token"], body["organization"]["id"]
    project = expect(*call("POST", f"{base}/api/v1/projects",
                           {"name": "Smoke", "organizationId": organization, "mode": "credits"}, token),
                     201, "create project")["project"]
    key = expect(*call("POST", f"{base}/api/v1/api-keys",
                       {"projectId": project["id"], "description": "smoke", "usageLimit": "1.00"}, token),
                 201, "create API key")["apiKey"]
    # Operators' commands need the same environment (DATA_DIR, DATABASE_URL) as `make run`.
    subprocess.run([str(clone / ".venv/bin/python"), "manage.py", "addcredits", organization, "5"],
                   cwd=clone, env=env, check=True, capture_output=True, timeout=60)

    client = OpenAI(base_url=f"{base}/v1", api_key=key["token"], max_retries=0, timeout=20)
    fake.reply, fake.usage = "Hello from the smoke test.", (12, 7)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    if answer.choices[0].message.content != "Hello from the smoke test.":
        raise SmokeFailure(f"plain request answered {answer}")
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True},
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if text != "Hello from the smoke test." or chunks[-1].usage is None:
        raise SmokeFailure(f"streamed request sent {text!r}, last chunk {chunks[-1]}")

    deadline, logs = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        _, body = call("GET", f"{base}/api/v1/logs?projectId={project['id']}", token=token)
        logs = body.get("logs", [])
        if len(logs) == 2:
            break
        time.sleep(0.5)
    if sorted(log["streamed"] for log in logs) != [False, True] or any(log["statusCode"] != 200 for log in logs):
        raise SmokeFailure(f"expected two usage rows (plain and streamed), got {logs}")
    print(f"  two requests answered and logged; {concurrency} web process(es)")


def readme_block(heading: str, language: str) -> str:
    """The first ```language block after the README heading that starts with `heading`."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(f"## {heading}"):]
    start = section.index(f"```{language}\n") + len(f"```{language}\n")
    return section[start:section.index("```", start)]


def readme_walk_through(base: str, clone: Path) -> None:
    """The README's curl walk-through and its SDK snippet, run as written, then the three
    requests they made in the logs."""
    env = {**os.environ, "B": base, "OPENAI_KEY": "sk-smoke-organization-key"}
    script = clone / "walk-through.sh"
    script.write_text(readme_block("Walk-through", "sh"))
    result = subprocess.run(["bash", "-e", "-o", "pipefail", str(script)], env=env, capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        raise SmokeFailure(f"the README walk-through failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")
    # The script ends by echoing the names it made (after a JSON answer with no newline).
    names = dict(re.findall(r"(LLMGW_KEY|PROJ|TOKEN)=(\S+)", result.stdout.strip().splitlines()[-1]))
    snippet = clone / "sdk-snippet.py"
    snippet.write_text(readme_block("The gateway with the OpenAI SDK", "python"))
    result = subprocess.run([sys.executable, str(snippet)], env={**env, "LLMGW_KEY": names["LLMGW_KEY"]},
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0 or "Hello from the smoke test." not in result.stdout:
        raise SmokeFailure(f"the README's SDK snippet failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    deadline, logs = time.monotonic() + 30, []
    while time.monotonic() < deadline and len(logs) < 3:
        logs = call("GET", f"{base}/api/v1/logs?projectId={names['PROJ']}", token=names["TOKEN"])[1].get("logs", [])
        time.sleep(0.5)
    if len(logs) != 3 or any(log["statusCode"] != 200 or log["usedMode"] != "api-keys" for log in logs):
        raise SmokeFailure(f"expected the walk-through's three requests logged, paid by the provider key: {logs}")
    print("  the README walk-through and SDK snippet ran as written; three requests logged")


def requirements_pinned(clone: Path) -> None:
    """Every package in the clone's runtime venv is pinned, at that version, in requirements.txt."""
    pinned = {}
    for line in (clone / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pinned[canonical(name.split("[", 1)[0])] = version.strip()
    frozen = subprocess.run([str(clone / ".venv/bin/pip"), "freeze", "--all"], capture_output=True, text=True,
                            check=True).stdout.split()
    loose = [line for line in frozen if "==" in line and canonical(line.split("==")[0]) not in ("pip", "setuptools")
             and pinned.get(canonical(line.split("==")[0])) != line.split("==")[1]]
    if loose:
        raise SmokeFailure(f"installed but not pinned at that version in requirements.txt: {loose}")
    print(f"  {len(frozen)} installed packages, every one pinned in requirements.txt")


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C to the whole group, as a terminal sends it; nothing may be left running."""
    pgid = process.pid
    os.killpg(pgid, signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        raise SmokeFailure(f"make run still running 30 s after Ctrl-C: {group_members(pgid)}") from None
    deadline = time.monotonic() + 20
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if group_members(pgid):
        raise SmokeFailure(f"processes left after Ctrl-C: {group_members(pgid)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clone", type=Path)
    parser.add_argument("--embedded", action="store_true", help="run on the embedded defaults")
    args = parser.parse_args()
    clone = args.clone.resolve()
    name = "embedded defaults" if args.embedded else "production configuration (PostgreSQL, Redis, 2 web processes)"
    print(f"== smoke: make run from a fresh clone, {name}")

    fake = FakeUpstream().start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = environment(clone, args.embedded, port, fake)
    fresh_stores(args.embedded)
    log_path = clone / ("smoke-embedded.log" if args.embedded else "smoke-production.log")
    started = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            checks = wait_ready(base, process, timeout=600)
            if checks.get("checks") != {"database": "ok", "cache": "ok", "broker": "ok"}:
                raise SmokeFailure(f"/readyz: {checks}")
            print(f"  ready after {time.monotonic() - started:.0f} s")
            requirements_pinned(clone)
            concurrency = 1 if args.embedded else 2
            deadline = time.monotonic() + 30
            while len(web_processes(process.pid, concurrency)) < concurrency and time.monotonic() < deadline:
                time.sleep(0.3)
            if len(web_processes(process.pid, concurrency)) != concurrency:
                raise SmokeFailure(f"expected {concurrency} web worker processes: {group_members(process.pid)}")
            user_session(base, clone, env, fake, concurrency)
            readme_walk_through(base, clone)
            stop(process)
            print("  Ctrl-C stopped every process")
        except BaseException as e:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            log.flush()
            print(f"SMOKE FAILED: {e}\n--- make run's output (last 6000 characters):")
            print(log_path.read_text()[-6000:])
            return 1
        finally:
            fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
