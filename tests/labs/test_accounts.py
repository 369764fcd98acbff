"""Signing up (where the operator allows it) and resetting a password by email (issue 15, item 10)."""
from __future__ import annotations

import re

import pytest
from django.core import mail

pytestmark = pytest.mark.django_db(transaction=True)


def test_sign_up_is_closed_unless_the_operator_opens_it(client, settings):
    settings.LAB_SIGNUP_OPEN = False
    assert client.get("/accounts/signup/").status_code == 404
    assert client.post("/accounts/signup/", {"username": "eve", "password1": "Xq9-long-pass", "password2": "Xq9-long-pass"}).status_code == 404
    settings.LAB_SIGNUP_OPEN = True
    resp = client.post("/accounts/signup/", {"username": "eve", "password1": "Xq9-long-pass", "password2": "Xq9-long-pass"})
    assert resp.status_code == 302 and resp["Location"] == "/"
    assert client.get("/").context["user"].username == "eve"  # signed in: the catalogue


def test_a_forgotten_password_is_reset_through_the_emailed_link(client, make_user):
    user = make_user("ada")
    resp = client.post("/accounts/password_reset/", {"email": "ada@example.org"}, HTTP_ACCEPT_LANGUAGE="en")
    assert resp.status_code == 302
    (message,) = mail.outbox
    assert message.to == ["ada@example.org"] and "Reset your password" in message.subject
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+)", message.body).group(1)
    form = client.get(link, follow=True)
    assert form.status_code == 200 and form.context["validlink"]
    done = client.post(form.redirect_chain[-1][0] if form.redirect_chain else link,
                       {"new_password1": "A-new-pass-42", "new_password2": "A-new-pass-42"})
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password("A-new-pass-42")
    # A second use of the same link is refused.
    assert not client.get(link, follow=True).context["validlink"]


def test_the_signed_out_home_page_says_what_the_site_is_and_how_to_sign_in(client, builtin_labs):
    resp = client.get("/", HTTP_ACCEPT_LANGUAGE="en")
    body = resp.content.decode()
    assert resp.status_code == 200 and "What you will learn" in body and 'href="/accounts/login/"' in body
    assert 'href="/accounts/password_reset/"' in body and "/accounts/signup/" not in body
    assert "Your first container" in body  # the course, in order
    zh = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "你将学到" in zh and "What you will learn" not in zh
