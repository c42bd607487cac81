from django.urls import path

from evalsite.annotation import views

app_name = "annotation"
urlpatterns = [
    path("", views.home, name="home"),
    path("study/<slug:name>/next", views.next_item, name="next"),
    path("study/<slug:name>/rate", views.rate, name="rate"),
    path("rating/<int:pk>", views.rate_submit, name="rate_submit"),
    path("item/<int:pk>/", views.item, name="item"),
    path("item/<int:pk>/judge", views.judge, name="judge"),
    path("item/<int:pk>/skip", views.skip, name="skip"),
    path("login/<str:token>", views.token_login, name="token_login"),
    path("studies/", views.studies, name="studies"),
    path("studies/<slug:name>/", views.study_detail, name="study"),
    path("studies/<slug:name>/start", views.study_start, name="study_start"),
    path("studies/<slug:name>/exclude", views.study_exclude, name="study_exclude"),
    path("studies/<slug:name>/invite", views.study_invite, name="study_invite"),
]
