from django.contrib import admin

from evalsite.core.admin import JOB_LIST_DISPLAY, JOB_READONLY
from evalsite.judging.models import JudgeCall, JudgeConfig, JudgeJob, JudgeVerdict, Rating, RatingJob


@admin.register(JudgeConfig)
class JudgeConfigAdmin(admin.ModelAdmin):
    list_display = ("name", "label", "model", "base_url", "template", "price_input_per_1k", "price_output_per_1k")


@admin.register(JudgeJob)
class JudgeJobAdmin(admin.ModelAdmin):
    list_display = (*JOB_LIST_DISPLAY, "spend", "calls_made", "cache_hits")
    list_filter = ("status", "config", "study")
    readonly_fields = (*JOB_READONLY, "spend", "calls_made", "cache_hits", "estimate_tokens", "estimate_cost")


@admin.register(RatingJob)
class RatingJobAdmin(admin.ModelAdmin):
    list_display = (*JOB_LIST_DISPLAY, "kind", "samples")
    list_filter = ("status", "kind")
    readonly_fields = JOB_READONLY


@admin.register(JudgeCall)
class JudgeCallAdmin(admin.ModelAdmin):
    list_display = ("__str__", "model", "template", "status", "verdict", "input_tokens", "output_tokens", "cost")
    list_filter = ("status", "template", "model", "verdict")
    search_fields = ("raw_output", "key")


@admin.register(JudgeVerdict)
class JudgeVerdictAdmin(admin.ModelAdmin):
    list_display = ("__str__", "order", "outcome")
    list_filter = ("job", "order", "outcome")
    raw_id_fields = ("comparison", "call")


@admin.register(Rating)
class RatingAdmin(admin.ModelAdmin):
    list_display = ("__str__", "value")
    raw_id_fields = ("response", "call")
