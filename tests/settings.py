"""The test run's settings: the project's own (config/settings.py), with each parallel test
worker (pytest-xdist, `make test` runs two) given a Redis database and a data directory of its
own, as pytest-django gives each a database of its own. Shared, the workers' live gateways would
read each other's usage streams and Celery queues and write their records into the wrong
test database."""

import os
import re

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
# Once per worker: processes the tests start inherit the adjusted environment (and this marker).
if _worker.startswith("gw") and os.environ.get("LLMGW_TEST_WORKER") != _worker:
    os.environ["LLMGW_TEST_WORKER"] = _worker
    _n = int(_worker[2:])
    for _name in ("REDIS_URL", "CELERY_BROKER_URL"):
        _url = os.environ.get(_name, "")
        _match = re.fullmatch(r"(redis://[^/]+)(?:/(\d+))?", _url)
        if _match:
            _db = int(_match[2] or 0) + 1 + _n
            if _db > 15:
                raise RuntimeError(f"{_name}={_url}: too few Redis databases left for test worker {_worker}")
            os.environ[_name] = f"{_match[1]}/{_db}"
    if os.environ.get("DATA_DIR"):
        os.environ["DATA_DIR"] = os.path.join(os.environ["DATA_DIR"], _worker)
        os.makedirs(os.environ["DATA_DIR"], exist_ok=True)

from config.settings import *  # noqa: E402,F403
