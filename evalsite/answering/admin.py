from django.contrib import admin

from evalsite.answering.models import GenerationJob
from evalsite.core.admin import JOB_LIST_DISPLAY, JOB_READONLY


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ("__str__", "samples_per_prompt", *JOB_LIST_DISPLAY[1:])
    list_filter = ("status", "system", "prompt_set")
    readonly_fields = (*JOB_READONLY, "tokens_generated", "failures")
    list_select_related = ("system", "prompt_set")
