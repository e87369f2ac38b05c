"""Brute force on API keys is rate-limited per client address."""

import http.client
import json

from gateway.throttle import FailureThrottle


def test_the_throttle_counts_failures_in_a_window(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("gateway.throttle.time.monotonic", lambda: now[0])
    throttle = FailureThrottle(max_failures=3, window=60)
    for _ in range(3):
        assert throttle.retry_after("1.2.3.4") is None
        throttle.failed("1.2.3.4")
    assert throttle.retry_after("1.2.3.4") == 61
    assert throttle.retry_after("5.6.7.8") is None
    now[0] += 61
    assert throttle.retry_after("1.2.3.4") is None


def _get_models(gateway, key: str, source: str = "127.0.0.2"):
    """GET /v1/models from another loopback address, so this test's block stays its own."""
    host, port = gateway.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), source_address=(source, 0), timeout=5)
    conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return response.status, dict(response.getheaders()), body


def test_repeated_invalid_keys_get_429_while_warm_keys_keep_working(gateway, project, key_for):
    good = key_for(project)
    assert _get_models(gateway, good)[0] == 200  # warm: held by the gateway now
    statuses = [_get_models(gateway, f"llmgw_guess{i}")[0] for i in range(20)]
    assert statuses == [401] * 20
    status, headers, body = _get_models(gateway, "llmgw_guess-again")
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(headers["retry-after"]) > 0
    assert _get_models(gateway, good)[0] == 200
    assert _get_models(gateway, "llmgw_guess-elsewhere", source="127.0.0.3")[0] == 401
