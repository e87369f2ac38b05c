"""The gateway with every metric update turned into a no-op: the baseline `bench/run.py
metrics-cost` compares the real gateway against (`uvicorn bench.nometrics:application`).
Nothing in the product reads this: metrics are always on there.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from prometheus_client import Counter, Histogram

from core import metrics


class _Off:
    def labels(self, *args: object, **kwargs: object) -> "_Off":
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


for _name, _value in list(vars(metrics).items()):
    if isinstance(_value, Counter | Histogram):
        setattr(metrics, _name, _Off())

from config.asgi import application  # noqa: E402
from gateway import metrics as gateway_metrics  # noqa: E402

gateway_metrics.request_recorded = lambda exchange: None
gateway_metrics.upstream_called = lambda candidate, attempt, seconds, failure: None
gateway_metrics.reservation_refused = lambda outcome: None

__all__ = ["application"]
