"""The ASGI entry point: /v1 goes to the lean gateway app, /metrics to the Prometheus
endpoint (gateway/metrics.py), everything else to Django."""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from django.core.asgi import get_asgi_application  # noqa: E402

from gateway import metrics  # noqa: E402
from gateway.v1 import GatewayApp  # noqa: E402

django_app = get_asgi_application()
gateway_app = GatewayApp()


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # Everything loaded so far lives as long as the process: keeping it out of the
            # collector's generations shortens the pauses that show up in tail latency.
            gc.collect()
            gc.freeze()
            gateway_app.ensure_started()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await gateway_app.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith("/v1/"):
        return await gateway_app(scope, receive, send)
    if scope["type"] == "http" and scope["path"] in ("/metrics", "/metrics/"):
        return await metrics.app(scope, receive, send)
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    return await django_app(scope, receive, send)
