from django.apps import AppConfig


class JudgingConfig(AppConfig):
    name = "evalsite.judging"
    label = "judging"
    verbose_name = "LLM judge"
