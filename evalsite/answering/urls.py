from django.urls import path

from evalsite.answering import views

app_name = "generations"
urlpatterns = [
    path("jobs/", views.job_list, name="job_list"),
    path("jobs.json", views.job_list_json, name="job_list_json"),
    path("jobs/<int:pk>/", views.job_detail, name="job_detail"),
    path("jobs/<int:pk>/cancel", views.job_cancel, name="job_cancel"),
    path("chat/", views.chat_index, name="chat_index"),
    path("chat/<int:pk>/", views.chat_view, name="chat"),
    path("chat/<int:pk>/turn/<int:index>.json", views.chat_turn, name="chat_turn"),
    path("responses/", views.browse_sets, name="browse_sets"),
    path("responses/set/<slug:name>/", views.browse_set, name="browse_set"),
    path("responses/prompt/<int:pk>/", views.browse_prompt, name="browse_prompt"),
]
