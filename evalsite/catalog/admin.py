from django.contrib import admin
from django.db.models import Count
from django.utils.text import Truncator

from evalsite.catalog.models import Prompt, PromptSet, Response, System


@admin.register(PromptSet)
class PromptSetAdmin(admin.ModelAdmin):
    list_display = ("name", "purpose", "prompt_count", "created_at")
    list_filter = ("purpose",)
    search_fields = ("name", "description")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_prompts=Count("prompts"))

    @admin.display(description="prompts", ordering="n_prompts")
    def prompt_count(self, obj):
        return obj.n_prompts


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("external_id", "prompt_set", "short_text", "source", "tag_list", "turns")
    list_filter = ("prompt_set", "source")
    search_fields = ("external_id", "messages", "source")
    list_select_related = ("prompt_set",)

    @admin.display(description="prompt")
    def short_text(self, obj):
        return Truncator(obj.text).chars(90)

    @admin.display(description="tags")
    def tag_list(self, obj):
        return ", ".join(obj.tags)

    @admin.display(description="turns")
    def turns(self, obj):
        return len(obj.messages)


@admin.register(System)
class SystemAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "backend", "response_count", "created_at")
    list_filter = ("kind", "backend")
    search_fields = ("name", "description")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_responses=Count("responses"))

    @admin.display(description="responses", ordering="n_responses")
    def response_count(self, obj):
        return obj.n_responses


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = (
        "system",
        "prompt",
        "sample_index",
        "short_text",
        "completion_tokens",
        "latency_seconds",
        "finish_reason",
        "has_error",
    )
    list_filter = ("system", "finish_reason", "prompt__prompt_set")
    search_fields = ("text", "prompt__external_id", "system__name")
    list_select_related = ("system", "prompt", "prompt__prompt_set")
    raw_id_fields = ("prompt",)

    @admin.display(description="response")
    def short_text(self, obj):
        return Truncator(obj.text).chars(80)

    @admin.display(description="error", boolean=True)
    def has_error(self, obj):
        return bool(obj.error)
