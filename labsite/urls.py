"""Top-level routes: admin, accounts, i18n, the labs app."""
from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from labs.views import LoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("cohorts.urls")),
    path("", include("labs.urls_learning")),
    path("", include("labs.urls_inside")),
    path("", include("labs.urls")),
]
