from django.apps import AppConfig


class FinetuneConfig(AppConfig):
    name = "evalsite.finetune"
    label = "finetune"
    verbose_name = "Training"

    def ready(self) -> None:
        from evalsite.finetune import workflows  # noqa: F401  (registers the ablation and checkpoint selection)
