from django.contrib import admin

from evalsite.core.admin import JOB_LIST_DISPLAY, JOB_READONLY
from evalsite.finetune.models import Checkpoint, TrainingDataset, TrainingExample, TrainingRun


@admin.register(TrainingDataset)
class TrainingDatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    readonly_fields = ("manifest",)


@admin.register(TrainingExample)
class TrainingExampleAdmin(admin.ModelAdmin):
    list_display = ("external_id", "dataset", "source", "status", "reason")
    list_filter = ("dataset", "source", "status")
    search_fields = ("external_id",)


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("__str__", "epoch", *JOB_LIST_DISPLAY[1:])
    list_filter = ("status", "dataset", "base")
    readonly_fields = (*JOB_READONLY, "recipe", "output_dir", "loss_history", "tokens_seen", "skipped")


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ("__str__", "step", "train_loss", "system", "path")
