from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "evalsite.pipeline"
    label = "pipeline"
    verbose_name = "The demo pipeline"

    def ready(self) -> None:
        from evalsite.pipeline import stages  # noqa: F401  (registers the demo's workflow)
