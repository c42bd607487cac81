from django.urls import path

from evalsite.judging import views

app_name = "judging"
urlpatterns = [
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/<int:pk>/", views.job_detail, name="job_detail"),
    path("jobs/<int:pk>/cancel", views.job_cancel, name="job_cancel"),
    path("ratings/<int:pk>/", views.rating_detail, name="rating_detail"),
]
