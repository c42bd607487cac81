from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "evalsite.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        # registered: Figures 1-3 and the site's charts; the study's stop as a workflow
        from evalsite.annotation import claims
        from evalsite.dashboard import figures, ranking, stopping  # noqa: F401

        # a ranking study's claims go first to the pairs that can still change its answer
        claims.ACTIVE_PAIRS = ranking.active_pairs
