from django.urls import path

from evalsite.arena import views

app_name = "arena"
urlpatterns = [
    path("<slug:name>/", views.home, name="home"),
    path("battle/<int:pk>/", views.battle, name="battle"),
    path("battle/<int:pk>/<str:side>/<int:index>.json", views.turn, name="turn"),
    path("battle/<int:pk>/vote", views.vote, name="vote"),
    path("battle/<int:pk>/follow-up", views.follow_up, name="follow_up"),
    path("battle/<int:pk>/abandon", views.abandon, name="abandon"),
    path("<slug:name>/moderation/", views.moderation, name="moderation"),
]
