"""HTML pages: the catalogue and the lab page (steps beside the terminal)."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from labs import selectors, services
from labs.exceptions import NotFound


def home(request: HttpRequest) -> HttpResponse:
    """The catalogue for someone signed in; for anyone else, what this site is."""
    if request.user.is_authenticated:
        return catalogue(request)
    return render(request, "labs/landing.html", {"labs": selectors.lab_list(lang=request.LANGUAGE_CODE),
                                                 "signup_open": settings.LAB_SIGNUP_OPEN})


@login_required
def catalogue(request: HttpRequest) -> HttpResponse:
    labs = selectors.catalogue_progress(user=request.user, labs=selectors.lab_list(lang=request.LANGUAGE_CODE))
    return render(request, "labs/catalogue.html", {"labs": labs})


def signup(request: HttpRequest) -> HttpResponse:
    """Create an account, where the operator allows it (LAB_SIGNUP_OPEN), and sign in."""
    from django.contrib.auth import login
    from django.contrib.auth.forms import UserCreationForm
    from django.http import Http404
    from django.shortcuts import redirect

    if not settings.LAB_SIGNUP_OPEN:
        raise Http404(_("Sign-up is closed here: ask your instructor for an account."))
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        login(request, form.save())
        return redirect("/")
    return render(request, "registration/signup.html", {"form": form})


@login_required
def lab_page(request: HttpRequest, slug: str) -> HttpResponse:
    from labs.views_learning import render_lab

    try:
        lab = selectors.lab_get(slug=slug)
    except NotFound as exc:
        return render(request, "labs/error.html", {"title": _("Lab not found"), "message": exc.message}, status=404)
    return render_lab(request, lab)  # the trainee's progress restored (labs.learning)


@login_required
def replay_page(request: HttpRequest, sid: str) -> HttpResponse:
    try:
        session, _read_only = selectors.session_for_viewer(user=request.user, sid=sid)
    except NotFound as exc:
        return render(request, "labs/error.html", {"title": _("Recording not found"), "message": exc.message}, status=404)
    return render(request, "labs/replay.html", {"session": session, "lab_title": selectors.pick(session.lab.title, request.LANGUAGE_CODE)})


class LoginView(auth_views.LoginView):
    """Django's login, throttled per client address and user name."""

    def get_context_data(self, **kwargs) -> dict:
        return super().get_context_data(signup_open=settings.LAB_SIGNUP_OPEN, **kwargs)

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        address = request.META.get("REMOTE_ADDR", "")
        username = request.POST.get("username", "")
        if services.login_blocked(address=address, username=username):
            form = self.get_form()
            form.add_error(None, _("Too many failed attempts. Try again in %(minutes)d minutes.")
                           % {"minutes": settings.LOGIN_WINDOW // 60})
            return self.render_to_response(self.get_context_data(form=form), status=429)
        response = super().post(request, *args, **kwargs)
        if request.user.is_authenticated:
            services.login_succeeded(address=address, username=username)
        else:
            services.login_failed(address=address, username=username)
        return response
