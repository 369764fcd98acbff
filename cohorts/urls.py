"""Pages and API routes of the cohorts app."""
from __future__ import annotations

from django.urls import path

from cohorts import api, views

urlpatterns = [
    path("cohorts/", views.cohort_list, name="cohorts"),
    path("cohorts/join/", views.join, name="cohort-join"),
    path("cohorts/join/<str:code>/", views.join, name="cohort-join-link"),
    path("cohorts/<int:cohort_id>/", views.cohort_page, name="cohort"),
    path("cohorts/<int:cohort_id>/manage", views.cohort_manage, name="cohort-manage"),
    path("cohorts/<int:cohort_id>/watch/<str:sid>/", views.watch_page, name="cohort-watch"),
    path("cohorts/<int:cohort_id>/progress.csv", views.progress_csv, name="cohort-csv"),
    path("cohorts/<int:cohort_id>/progress.xlsx", views.progress_xlsx, name="cohort-xlsx"),
    path("ops/sandboxes/", views.sandboxes_page, name="sandboxes"),
    path("ops/sandboxes/<str:sid>/<str:action>", views.sandbox_action, name="sandbox-action"),
    path("api/cohorts/", api.cohorts),
    path("api/cohorts/join", api.join),
    path("api/cohorts/<int:cohort_id>/progress", api.progress),
    path("api/cohorts/<int:cohort_id>/labs", api.assign_lab),
    path("api/cohorts/<int:cohort_id>/sessions/<str:sid>/extend", api.session_extend),
    path("api/cohorts/<int:cohort_id>/sessions/<str:sid>/stop", api.session_stop),
    path("api/cohorts/<int:cohort_id>/sessions/<str:sid>/context", api.watch_context),
    path("api/ops/sandboxes", api.sandboxes_overview),
    path("api/ops/sandboxes/<str:sid>/stop", api.sandbox_stop),
    path("api/ops/sandboxes/<str:sid>/extend", api.sandbox_extend),
]
