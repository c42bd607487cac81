from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "evalsite.pipeline"
    label = "pipeline"
    verbose_name = "The demo pipeline"
