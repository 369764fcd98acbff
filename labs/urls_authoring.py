"""Routes of authoring in the browser (included before labs.urls: `labs/<slug>/…` stays free)."""
from __future__ import annotations

from django.urls import path

from labs import api_authoring as api
from labs import views_authoring as views

urlpatterns = [
    path("authoring/", views.my_labs, name="my-labs"),
    path("labs/<slug:slug>/versions/", views.versions_page, name="lab-versions"),
    path("labs/<slug:slug>/edit/", views.edit_page, name="lab-edit"),
    path("labs/<slug:slug>/versions/<int:number>/", views.version_page, name="lab-version"),
    path("labs/<slug:slug>/versions/<int:number>/test", views.version_test, name="lab-version-test"),
    path("labs/<slug:slug>/versions/<int:number>/publish", views.version_publish, name="lab-version-publish"),
    path("api/authoring/labs", api.labs_authored),
    path("api/authoring/upload", api.upload),
    path("api/authoring/uploads/<str:upload_id>", api.upload_status),
    path("api/labs/schema", api.schema),
    path("api/labs/<slug:slug>/edit", api.edit),
    path("api/labs/<slug:slug>/edit/check", api.edit_check),
    path("api/labs/<slug:slug>/edit/preview", api.edit_preview),
    path("api/labs/<slug:slug>/edit/save", api.edit_save),
    path("api/labs/<slug:slug>/versions", api.versions),
    path("api/labs/<slug:slug>/versions/<int:number>", api.version),
    path("api/labs/<slug:slug>/versions/<int:number>/test", api.version_test),
    path("api/labs/<slug:slug>/versions/<int:number>/publish", api.version_publish),
]
