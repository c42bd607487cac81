from django.urls import path

from evalsite.dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("", views.index, name="index"),
    path("<slug:name>/", views.study, name="study"),
    path("<slug:name>/export/<str:fmt>", views.export, name="export"),
    path("<slug:name>/drill", views.drill, name="drill"),
]
