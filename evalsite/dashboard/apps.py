from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "evalsite.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"
