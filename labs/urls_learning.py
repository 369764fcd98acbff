"""Routes of the learning experience: hints, solutions, quizzes, progress, preview, upload.

Included before labs.urls, so `labs/upload/` is not taken for a lab slug.
"""
from __future__ import annotations

from django.urls import path

from labs import api_learning as api
from labs import views_learning as views

urlpatterns = [
    path("api/progress/", api.progress),
    path("api/labs/<slug:slug>/progress", api.lab_progress),
    path("api/labs/<slug:slug>/steps/<slug:step>/hint", api.step_hint),
    path("api/labs/<slug:slug>/steps/<slug:step>/solution", api.step_solution),
    path("api/labs/<slug:slug>/steps/<slug:step>/answer", api.step_answer),
    path("api/labs/<slug:slug>/steps/<slug:step>/read", api.step_read),
    path("api/sessions/<str:sid>/hint", api.session_hint),
    path("api/sessions/<str:sid>/solution", api.session_solution),
    path("api/sessions/<str:sid>/answer", api.session_answer),
    path("labs/upload/", views.lab_upload, name="lab-upload"),
    path("labs/upload/<str:upload_id>/", views.lab_upload_status, name="lab-upload-status"),
    path("labs/<slug:slug>/preview/", views.lab_preview, name="lab-preview"),
    path("labs/<slug:slug>/publish", views.lab_publish, name="lab-publish"),
]
