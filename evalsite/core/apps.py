from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "evalsite.core"
    label = "core"
    verbose_name = "Jobs and accounts"

    def ready(self) -> None:
        from evalsite.core import checks, signals  # noqa: F401  (registers checks and signals)
