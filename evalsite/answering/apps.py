from django.apps import AppConfig


class AnsweringConfig(AppConfig):
    """The systems answering: generation jobs, the response browser, live conversations. Its
    label, and so its tables, keep the name it had when its folder was evalsite/generations."""

    name = "evalsite.answering"
    label = "generations"
    verbose_name = "Generation jobs"

    def ready(self) -> None:
        from evalsite.answering import chat  # noqa: F401  (registers Figure 7)
