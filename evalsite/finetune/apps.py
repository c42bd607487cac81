from django.apps import AppConfig


class FinetuneConfig(AppConfig):
    name = "evalsite.finetune"
    label = "finetune"
    verbose_name = "Training"
