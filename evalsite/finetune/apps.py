from django.apps import AppConfig


class FinetuneConfig(AppConfig):
    name = "evalsite.finetune"
    label = "finetune"
    verbose_name = "Training"

    def ready(self) -> None:
        # registered: the ablation and checkpoint selection as workflows, Figures 5 and 6
        from evalsite.finetune import ablation, workflows  # noqa: F401
