"""The invalid-key allowance of an address is shared by every gateway process (Redis), not
granted once per process."""

from gateway.throttle import MAX_FAILURES_PER_MINUTE
from tests.gateway.test_throttle import _get_models, fresh_counts  # noqa: F401  (fixture)
from tests.reliability.conftest import RedisServer


def test_two_processes_share_one_allowance(processes, base_env):
    redis = RedisServer().start()
    try:
        env = processes.env(base_env, REDIS_URL=redis.url, CELERY_BROKER_URL=redis.url)
        one, two = processes.gateway(env, "one"), processes.gateway(env, "two")
        half = MAX_FAILURES_PER_MINUTE // 2
        statuses = [_get_models(one, f"llmgw_a{i}")[0] for i in range(half)]
        statuses += [_get_models(two, f"llmgw_b{i}")[0] for i in range(half)]

        over = [_get_models(gateway, f"llmgw_c{n}")[0] for n, gateway in enumerate((one, two, one, two))]

        assert statuses == [401] * MAX_FAILURES_PER_MINUTE
        assert over.count(429) >= 3  # at most one lookup a second, whichever process asks
    finally:
        processes.stop()
        redis.stop()
