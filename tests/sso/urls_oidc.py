"""The lab's URLs as labsite/urls.py makes them with OIDC_RP_CLIENT_ID set (for in-process tests)."""
from django.urls import include, path

from labsite.urls import urlpatterns as lab_urlpatterns

urlpatterns = [path("oidc/", include("mozilla_django_oidc.urls")), *lab_urlpatterns]
