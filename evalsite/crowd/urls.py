from django.urls import path

from evalsite.crowd import views

app_name = "crowd"
urlpatterns = [
    path("s/<str:token>/", views.arrive, name="arrive"),
    path("s/<str:token>/next", views.next_item, name="next"),
    path("crowd/<slug:name>/participants.csv", views.export, name="export"),
    path("crowd/<slug:name>/link", views.settings_form, name="settings"),
]
