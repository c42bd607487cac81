from django.apps import AppConfig


class GenerationsConfig(AppConfig):
    name = "evalsite.generations"
    label = "generations"
    verbose_name = "Generation jobs"
