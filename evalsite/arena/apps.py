from django.apps import AppConfig


class ArenaConfig(AppConfig):
    """A private arena: people bring their own prompts, two anonymous systems answer them side by
    side (streamed by the live queue's workers), the person votes, and the vote joins the study's
    ranking (evalsite/dashboard/ranking.py)."""

    name = "evalsite.arena"
    label = "arena"
    verbose_name = "Arena"

    def ready(self) -> None:
        from dataclasses import replace

        from evalsite.annotation import kinds
        from evalsite.annotation.models import Study
        from evalsite.annotation.pages import STUDY_PAGE_PARTS
        from evalsite.arena.services import progress
        from evalsite.arena.views import study_page_part

        STUDY_PAGE_PARTS.append(study_page_part)
        # a person's work in an arena is the battles they voted on (what a crowd link's quota counts)
        kinds.KINDS[Study.Kind.ARENA] = replace(kinds.KINDS[Study.Kind.ARENA], progress=progress)
