from django.contrib import admin

from evalsite.crowd.models import CrowdLink, Participant


@admin.register(CrowdLink)
class CrowdLinkAdmin(admin.ModelAdmin):
    list_display = ("study", "platform", "quota", "screening_items", "screening_pass")


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ("external_id", "link", "status", "started_at", "finished_at")
    list_filter = ("status",)
