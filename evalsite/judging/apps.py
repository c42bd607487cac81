from django.apps import AppConfig


class JudgingConfig(AppConfig):
    name = "evalsite.judging"
    label = "judging"
    verbose_name = "LLM judge"

    def ready(self) -> None:
        from evalsite.judging.export import register_exports

        register_exports()
