"""Peer gateways for the benchmark: LiteLLM's proxy and Portkey's gateway, installed under
bench/.peers/ and started against the same fake upstream as ours, so that bench/run.py can
measure them the same way.

    install("litellm")                  # once; a stamp file makes it a no-op afterwards
    process = start("litellm", upstream_port, port, data_dir, system.start)
    path, headers, body = request("litellm", upstream_port, BODY, stream=False)

LiteLLM runs in its own venv (pip `litellm[proxy]`), with its own CLI on uvicorn with 2
worker processes like ours, no database, a master key, logging at ERROR and the bundled
model cost map (no fetch from GitHub at start). Portkey runs from npm on Node with its own
start script; it has no worker or cluster option, so it is one process.
"""

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

PEERS = ("litellm", "portkey")
LITELLM_VERSION = "1.106.0"
PORTKEY_VERSION = "1.15.2"
# Portkey's streaming answers 500 with newer @hono/node-server releases: pinned through npm overrides.
HONO_NODE_SERVER_VERSION = "1.14.1"
HONO_NODE_WS_VERSION = "1.2.0"
VERSIONS = {"litellm": LITELLM_VERSION, "portkey": PORTKEY_VERSION}

HOME = Path(__file__).resolve().parent / ".peers"
UPSTREAM_KEY = "sk-bench-upstream"  # the fake upstream accepts any key
LITELLM_MASTER_KEY = "sk-bench-litellm-master"
WORKERS = 2  # as our gateway's WEB_CONCURRENCY
# Our gateway's settings in bench/run.py's environment that a peer must not see: LiteLLM would
# otherwise connect to our PostgreSQL (DATABASE_URL) and write Prometheus files into our metrics dir.
FOREIGN_ENV = ("DATABASE_URL", "DIRECT_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR", "OPENAI_BASE_URL",
               "WEB_CONCURRENCY", "LOG_LEVEL", "DATA_DIR", "DJANGO_SETTINGS_MODULE")


def install(name: str) -> None:
    """Installs a peer under bench/.peers/<name>, unless its stamp says this version is there.
    Raises RuntimeError, with the installer's last output lines, when installing fails."""
    directory = HOME / name
    stamp = directory / ".installed"
    wanted = _stamp_text(name)
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if directory.exists():
        shutil.rmtree(directory)  # a half-done or older install: start afresh
    directory.mkdir(parents=True)
    if name == "litellm":
        python = Path(sys.base_prefix) / "bin" / "python3"  # the interpreter that made .venv, not .venv's
        _run([str(python), "-m", "venv", str(directory)], name)
        _run([str(directory / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
              f"litellm[proxy]=={LITELLM_VERSION}"], name)
    elif name == "portkey":
        if not shutil.which("npm"):
            raise RuntimeError("installing portkey needs Node.js and npm on PATH")
        package = {
            "name": "bench-portkey", "private": True,
            "dependencies": {"@portkey-ai/gateway": PORTKEY_VERSION},
            "overrides": {"@hono/node-server": HONO_NODE_SERVER_VERSION, "@hono/node-ws": HONO_NODE_WS_VERSION},
        }
        (directory / "package.json").write_text(json.dumps(package, indent=2) + "\n")
        # --ignore-scripts: its one script, patch-package, has no patches to apply in the published package.
        _run(["npm", "install", "--no-audit", "--no-fund", "--omit=dev", "--ignore-scripts"], name, cwd=directory)
    else:
        raise ValueError(f"unknown peer {name!r}: one of {PEERS}")
    stamp.write_text(wanted)


def start(name: str, upstream_port: int, port: int, data_dir: str,
          popen: Callable[..., subprocess.Popen]) -> subprocess.Popen:
    """Starts an installed peer on 127.0.0.1:`port`, its model pointed at the fake upstream on
    `upstream_port`, through `popen(*args, log=..., **env)` (bench/run.py's System.start); its
    files (config, log) go to `data_dir`. Returns at once: wait for the port to open (LiteLLM
    takes 10-20 s, more on a busy machine; requests sent meanwhile wait in its backlog)."""
    directory = HOME / name
    if not (directory / ".installed").exists():
        raise RuntimeError(f"{name} is not installed: call install({name!r}) first")
    unset = [arg for variable in FOREIGN_ENV for arg in ("-u", variable)]
    if name == "litellm":
        config = Path(data_dir) / "litellm-config.yaml"
        config.write_text(json.dumps(_litellm_config(upstream_port), indent=2))  # JSON is YAML
        return popen(
            "env", *unset, str(directory / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", str(WORKERS), log="litellm.log",
            LITELLM_LOG="ERROR",  # also the uvicorn log level, so no access log
            LITELLM_LOCAL_MODEL_COST_MAP="True",  # else each start fetches the cost map from GitHub
            LITELLM_MODE="PRODUCTION",  # no .env loading
        )
    if name == "portkey":
        server = directory / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
        # The port flag takes `=` only (`--port P` is ignored: 8787); --headless drops the log UI.
        return popen("env", *unset, "node", str(server), f"--port={port}", "--headless", log="portkey.log",
                     NODE_ENV="production")
    raise ValueError(f"unknown peer {name!r}: one of {PEERS}")


def request(name: str, upstream_port: int, body: str, stream: bool) -> tuple[str, dict[str, str], str]:
    """(path, headers, body) a load generator sends to a peer for the benchmark's chat `body`
    (bench/run.py's BODY or STREAM_BODY; `stream` says which). Both peers answer streams as
    SSE ending in `data: [DONE]` with the same headers as non-streaming requests."""
    headers = {"Content-Type": "application/json"}
    if name == "litellm":
        # The config names the model both "gpt-4o-mini" and "openai/gpt-4o-mini": the body goes as is.
        headers["Authorization"] = f"Bearer {LITELLM_MASTER_KEY}"
    elif name == "portkey":
        # Portkey has no model list: the provider and its base URL travel in headers, the key is the
        # provider's, and the model goes to the provider unchanged, so it loses its "openai/" prefix
        # (the fake upstream would take either; OpenAI would not).
        headers.update({"x-portkey-provider": "openai",
                        "x-portkey-custom-host": f"http://127.0.0.1:{upstream_port}/v1",
                        "Authorization": f"Bearer {UPSTREAM_KEY}"})
        data = json.loads(body)
        data["model"] = data["model"].removeprefix("openai/")
        body = json.dumps(data, separators=(",", ":"))  # compact, as the upstream looks for "stream":true
    else:
        raise ValueError(f"unknown peer {name!r}: one of {PEERS}")
    if stream != ('"stream":true' in body):
        raise ValueError(f"stream={stream} does not match the body {body}")
    return "/v1/chat/completions", headers, body


def _litellm_config(upstream_port: int) -> dict:
    params = {"model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{upstream_port}/v1",
              "api_key": UPSTREAM_KEY}
    return {
        "model_list": [{"model_name": model, "litellm_params": params}
                       for model in ("gpt-4o-mini", "openai/gpt-4o-mini")],
        "litellm_settings": {"set_verbose": False, "json_logs": False},
        "general_settings": {"master_key": LITELLM_MASTER_KEY, "disable_spend_logs": True,
                             "disable_error_logs": True},
    }


def _stamp_text(name: str) -> str:
    if name == "portkey":
        return f"{PORTKEY_VERSION} node-server {HONO_NODE_SERVER_VERSION} node-ws {HONO_NODE_WS_VERSION}\n"
    return f"{VERSIONS.get(name)}\n"


def _run(command: list[str], name: str, cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"installing {name} failed ({' '.join(command)} exited {result.returncode}):\n{tail}")
