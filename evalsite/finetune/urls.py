from django.urls import path

from evalsite.finetune import views

app_name = "finetune"
urlpatterns = [
    path("", views.index, name="index"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("runs/<int:pk>/cancel", views.run_cancel, name="run_cancel"),
    path("runs/<int:pk>/register", views.run_register, name="run_register"),
    path("datasets/<slug:name>/", views.dataset_detail, name="dataset_detail"),
    path("examples/<int:pk>/", views.example_review, name="example_review"),
    path("ablations/<slug:name>/", views.ablation_detail, name="ablation_detail"),
]
