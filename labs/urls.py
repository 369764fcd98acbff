"""Pages and API routes of the labs app."""
from __future__ import annotations

from django.urls import path

from labs import api, views

urlpatterns = [
    path("", views.home, name="catalogue"),
    path("labs/<slug:slug>/", views.lab_page, name="lab"),
    path("api/labs/", api.labs_list),
    path("api/labs/<slug:slug>/", api.labs_detail),
    path("api/sessions/", api.sessions),
    path("api/sessions/<str:sid>/", api.session_detail),
    path("api/sessions/<str:sid>/check", api.session_check),
    path("api/sessions/<str:sid>/reset", api.session_reset),
    path("api/sessions/<str:sid>/extend", api.session_extend),
    path("api/sessions/<str:sid>/recording", api.session_recording),
    path("api/sessions/<str:sid>/markers", api.session_markers),
    path("sessions/<str:sid>/replay/", views.replay_page, name="replay"),
]
