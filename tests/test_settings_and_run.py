"""Settings on a fresh machine (secrets generated once into DATA_DIR) and `bin/run`, the
program `make run` ends in: web server, Celery worker and beat up together, down on Ctrl-C.

These run real subprocesses on the embedded defaults (SQLite, in-process cache, broker in
files), whatever DATABASE_URL and REDIS_URL the test run itself uses.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")

PRINT_SECRETS = (
    "import django, json, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; django.setup(); "
    "from django.conf import settings; "
    "print(json.dumps({'SECRET_KEY': settings.SECRET_KEY, 'ENCRYPTION_KEYS': settings.ENCRYPTION_KEYS}))"
)


def _env(data_dir: Path, **extra) -> dict:
    """This process's environment on the embedded defaults, with DATA_DIR and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    for name in (
        "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECRET_KEY", "ENCRYPTION_KEYS",
        "DEBUG", "DJANGO_SETTINGS_MODULE", "HOST", "PORT", "WEB_CONCURRENCY",
    ):
        env.pop(name, None)
    env["DATA_DIR"] = str(data_dir)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def _settings_of(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-c", PRINT_SECRETS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def _secrets_of(env: dict) -> dict:
    result = _settings_of(env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- secrets --------------------------------------------------------------------------------------


def test_secrets_are_generated_into_data_dir_once_and_reused_by_the_next_process(tmp_path):
    data_dir = tmp_path / "data"

    first = _secrets_of(_env(data_dir))
    second = _secrets_of(_env(data_dir))

    assert len(first["SECRET_KEY"]) >= 40
    assert first["ENCRYPTION_KEYS"] and all(len(k) == 44 for k in first["ENCRYPTION_KEYS"])  # Fernet keys
    assert second == first
    assert (data_dir / "secret_key").read_text().strip() == first["SECRET_KEY"]
    assert (data_dir / "encryption_keys").read_text().strip() == ",".join(first["ENCRYPTION_KEYS"])
    # Other users of the machine cannot read them.
    assert (data_dir / "secret_key").stat().st_mode & 0o077 == 0
    assert (data_dir / "encryption_keys").stat().st_mode & 0o077 == 0


def test_each_fresh_data_dir_gets_its_own_secrets(tmp_path):
    one = _secrets_of(_env(tmp_path / "one"))
    two = _secrets_of(_env(tmp_path / "two"))

    assert one["SECRET_KEY"] != two["SECRET_KEY"]
    assert one["ENCRYPTION_KEYS"] != two["ENCRYPTION_KEYS"]


def test_environment_values_win_over_the_generated_files(tmp_path):
    from cryptography.fernet import Fernet

    data_dir = tmp_path / "data"
    generated = _secrets_of(_env(data_dir))
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()

    given = _secrets_of(_env(data_dir, SECRET_KEY="secret-from-the-environment", ENCRYPTION_KEYS=f"{new}, {old}"))

    assert given == {"SECRET_KEY": "secret-from-the-environment", "ENCRYPTION_KEYS": [new, old]}
    # The files are left alone, so unsetting the variables goes back to them.
    assert (data_dir / "secret_key").read_text().strip() == generated["SECRET_KEY"]
    assert _secrets_of(_env(data_dir)) == generated


def test_an_unwritable_data_dir_without_secret_key_fails_naming_secret_key(tmp_path):
    # Root can write anywhere, but not below a regular file.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    result = _settings_of(_env(blocker / "data"))

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert "ImproperlyConfigured" in result.stderr


def test_an_unwritable_data_dir_without_encryption_keys_fails_naming_encryption_keys(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    result = _settings_of(_env(blocker / "data", SECRET_KEY="given"))

    assert result.returncode != 0
    assert "ENCRYPTION_KEYS" in result.stderr


def test_an_unwritable_data_dir_is_fine_when_both_secrets_come_from_the_environment(tmp_path):
    from cryptography.fernet import Fernet

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    key = Fernet.generate_key().decode()

    assert _secrets_of(_env(blocker / "data", SECRET_KEY="given", ENCRYPTION_KEYS=key)) == {
        "SECRET_KEY": "given", "ENCRYPTION_KEYS": [key],
    }


# --- make run -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_members(pgid: int) -> dict[int, str]:
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
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            members[int(entry.name)] = cmdline
    return members


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture
def running_gateway(tmp_path):
    """`bin/run` on a fresh DATA_DIR and a free port, in a process group of its own."""
    data_dir = tmp_path / "data"
    port = _free_port()
    env = _env(data_dir, PORT=str(port), HOST="127.0.0.1")
    migrated = subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr
    log = open(tmp_path / "run.log", "w+")
    process = subprocess.Popen(
        ["bin/run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield process, port, data_dir, log
    finally:
        if process.poll() is None or _group_members(process.pid):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(10)
        log.close()


def _log(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-4000:]


def test_bin_run_starts_web_worker_and_beat_and_ctrl_c_stops_them_all(running_gateway):
    process, port, data_dir, log = running_gateway
    pgid = process.pid

    # The web server answers /readyz with every dependency ready.
    deadline, status, body = time.monotonic() + 30, None, {}
    while time.monotonic() < deadline:
        assert process.poll() is None, f"bin/run exited with {process.returncode}:\n{_log(log)}"
        try:
            status, body = _get(f"http://127.0.0.1:{port}/readyz")
            if status == 200:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    assert status == 200, f"/readyz answered {status} {body}:\n{_log(log)}"
    assert body["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}
    assert _get(f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})

    # A Celery worker and Celery beat run beside it, in the same process group.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        commands = list(_group_members(pgid).values())
        worker = [c for c in commands if "celery" in c and " worker" in c]
        beat = [c for c in commands if "celery" in c and " beat" in c]
        web = [c for c in commands if "uvicorn" in c]
        schedule = list(data_dir.glob("celerybeat-schedule*"))
        if worker and beat and web and schedule:
            break
        time.sleep(0.3)
    assert worker, f"no celery worker in {commands}"
    assert beat, f"no celery beat in {commands}"
    assert web, f"no uvicorn in {commands}"
    assert schedule, f"beat wrote no schedule into {data_dir}: {sorted(p.name for p in data_dir.iterdir())}"
    assert "LLM gateway on http://127.0.0.1:" in _log(log)

    # Ctrl-C reaches the whole foreground group; nothing of it may survive.
    os.killpg(pgid, signal.SIGINT)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bin/run still running 20 s after Ctrl-C: {_group_members(pgid)}")
    deadline = time.monotonic() + 20
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group_members(pgid) == {}, "processes left behind after Ctrl-C"
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{port}/healthz")


def test_bin_run_stops_everything_when_one_part_dies(running_gateway):
    process, port, data_dir, log = running_gateway
    pgid = process.pid

    deadline, web = time.monotonic() + 30, []
    while time.monotonic() < deadline and not web:
        assert process.poll() is None, _log(log)
        web = [pid for pid, c in _group_members(pgid).items() if "uvicorn" in c]
        time.sleep(0.2)
    assert web, _log(log)
    os.kill(web[0], signal.SIGKILL)

    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bin/run kept running without its web server: {_group_members(pgid)}")
    deadline = time.monotonic() + 20
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group_members(pgid) == {}, "the worker or beat outlived the web server"



def test_bin_run_refuses_an_unknown_role_before_starting_anything(tmp_path):
    result = subprocess.run(["bin/run", "web", "scheduler"], cwd=ROOT, env=_env(tmp_path / "data"),
                            capture_output=True, text=True, timeout=30)

    assert result.returncode == 2
    assert "unknown role 'scheduler' (web, worker or beat)" in result.stderr


def _failed_logins_from_forwarded_addresses(port: int, times: int) -> list[int]:
    """Wrong passwords, each claiming another client address in X-Forwarded-For."""
    statuses = []
    for i in range(times):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/auth/login", method="POST",
            data=json.dumps({"email": "proxy@example.com", "password": "wrong"}).encode(),
            headers={"Content-Type": "application/json", "X-Forwarded-For": f"198.51.100.{i + 1}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as e:
            statuses.append(e.code)
    return statuses


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_forwarded_addresses_are_believed_only_from_trusted_proxies(tmp_path, trusted):
    data_dir, port = tmp_path / "data", _free_port()
    env = _env(data_dir, PORT=str(port), HOST="127.0.0.1", TRUSTED_PROXIES=trusted)
    migrated = subprocess.run([PYTHON, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    process = subprocess.Popen(["bin/run", "web"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if _get(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)

        statuses = _failed_logins_from_forwarded_addresses(port, 12)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)

    if trusted:  # a trusted proxy's forwarded addresses are twelve clients: none is locked out
        assert statuses == [401] * 12
    else:  # a stranger's header is ignored: one address, locked out at the tenth failure
        assert statuses[:9] == [401] * 9 and statuses[9:] == [429] * 3
