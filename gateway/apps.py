from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self):
        from gateway import schema  # noqa: F401  registers the OpenAPI auth extension
