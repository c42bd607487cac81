from django.contrib import admin

from evalsite.annotation.models import Assignment, Comparison, HumanJudgment, Study


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("name", "candidate", "prompt_set", "overlap", "gold_rate", "status", "created_at")
    list_filter = ("status",)
    filter_horizontal = ("baselines", "annotators", "excluded")


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = ("__str__", "prompt", "baseline", "is_gold", "slots_taken", "judgments_done")
    list_filter = ("study", "is_gold", "baseline")
    raw_id_fields = ("prompt", "candidate_response", "baseline_response")


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("__str__", "comparison", "annotator", "candidate_on_left", "status", "flag", "claimed_at")
    list_filter = ("status", "flag", "comparison__study")
    raw_id_fields = ("comparison",)


@admin.register(HumanJudgment)
class HumanJudgmentAdmin(admin.ModelAdmin):
    list_display = ("__str__", "outcome", "picked_side", "seconds", "created_at")
    list_filter = ("outcome", "comparison__study", "annotator")
    raw_id_fields = ("assignment", "comparison")
