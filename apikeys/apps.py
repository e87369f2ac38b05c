from django.apps import AppConfig


class ApikeysConfig(AppConfig):
    name = "apikeys"
    verbose_name = "API keys and provider keys"

    def ready(self) -> None:
        from apikeys import receivers  # noqa: F401  connects them
