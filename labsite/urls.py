"""Top-level routes: admin, accounts, i18n, the labs app."""
from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from monitoring.views import metrics
from sso.views import LoginView
from labs.views import signup

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/signup/", signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("metrics", metrics, name="metrics"),
    path("", include("cohorts.urls")),
    path("", include("labs.urls_learning")),
    path("", include("labs.urls_authoring")),
    path("", include("labs.urls_inside")),
    path("", include("labs.urls")),
]

if settings.SSO_OIDC_ENABLED:
    urlpatterns.insert(0, path("oidc/", include("mozilla_django_oidc.urls")))
