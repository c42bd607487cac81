from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from evalsite.core import views as core_views
from evalsite.core.login import RateLimitedLoginView
from evalsite.dashboard import views as dashboard_views

admin.site.site_header = "LIMA-style evaluation"
admin.site.site_title = "LIMA-style evaluation"

urlpatterns = [
    path("", dashboard_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("favicon.ico", core_views.favicon, name="favicon"),
    path("workflows/", core_views.workflow_list, name="workflows"),
    path("accounts/login/", RateLimitedLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("generation/", include("evalsite.answering.urls")),
    path("annotate/", include("evalsite.annotation.urls")),
    path("judge/", include("evalsite.judging.urls")),
    path("dashboard/", include("evalsite.dashboard.urls")),
    path("training/", include("evalsite.finetune.urls")),
    path("arena/", include("evalsite.arena.urls")),
    path("", include("evalsite.crowd.urls")),
    path("admin/", admin.site.urls),
]
