"""The sign-in page with the single sign-on choices, and the OpenID Connect callback."""
from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView

from labs.views import LoginView as LocalLoginView
from sso.exceptions import DirectoryUnavailable

log = logging.getLogger(__name__)

SSO_ERRORS = {
    "oidc": _("Single sign-on did not complete: the identity provider's answer could not be verified "
              "or the sign-in was cancelled. Try again, or ask your administrator."),
}


class LoginView(LocalLoginView):
    """Local accounts (and LDAP, through the same form) plus a button per SSO provider."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return super().post(request, *args, **kwargs)
        except DirectoryUnavailable as exc:
            # A fresh form: the bound one would ask the directory again to show its errors.
            form = self.get_form_class()(self.request, initial={"username": request.POST.get("username", "")})
            return self.render_to_response(self.get_context_data(form=form, sso_error=exc.message), status=503)

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        context["sso_ldap"] = bool(settings.SSO_LDAP_ENABLED)
        context["sso_oidc"] = settings.SSO_OIDC_NAME if settings.SSO_OIDC_ENABLED else ""
        context.setdefault("sso_error", SSO_ERRORS.get(self.request.GET.get("sso_error", ""), ""))
        return context


class CallbackView(OIDCAuthenticationCallbackView):
    """mozilla-django-oidc's callback; every failure lands on the sign-in page with a reason."""

    @property
    def failure_url(self) -> str:
        return reverse("login") + "?" + urlencode({"sso_error": "oidc"})

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            return super().get(request)
        except SuspiciousOperation as exc:  # a state that is not ours: a replayed or forged callback
            log.warning("OpenID Connect callback refused: %s", exc)
            return HttpResponseRedirect(self.failure_url)
