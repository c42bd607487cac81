from django.contrib import admin

from evalsite.core.models import SelfTestJob

JOB_LIST_DISPLAY = ("__str__", "status", "progress_done", "progress_total", "attempts", "worker", "heartbeat_at")
JOB_READONLY = (
    "created_at",
    "enqueued_at",
    "started_at",
    "heartbeat_at",
    "finished_at",
    "attempts",
    "worker",
    "progress_done",
    "progress_total",
    "rate",
    "rate_unit",
    "status_detail",
    "error",
)


@admin.register(SelfTestJob)
class SelfTestJobAdmin(admin.ModelAdmin):
    list_display = JOB_LIST_DISPLAY
    list_filter = ("status",)
    readonly_fields = JOB_READONLY
