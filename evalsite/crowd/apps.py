from django.apps import AppConfig


class CrowdConfig(AppConfig):
    name = "evalsite.crowd"
    label = "crowd"
    verbose_name = "Crowd platforms (Prolific, MTurk)"

    def ready(self) -> None:
        from evalsite.annotation.pages import STUDY_PAGE_PARTS
        from evalsite.crowd.views import study_page_part

        STUDY_PAGE_PARTS.append(study_page_part)
