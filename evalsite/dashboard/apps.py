from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "evalsite.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        # registered: Figures 1-3 and the site's charts; the study's stop as a workflow
        from evalsite.dashboard import figures, stopping  # noqa: F401
