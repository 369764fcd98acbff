"""A person signs in through the provider's own login page in a real browser (chromium)
and lands on the catalogue with the role the provider's groups give."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from django.conf import settings

from sandbox.relay.spawn import die_with_parent
from tests.conftest import ROOT, _subprocess_env
from tests.e2e.conftest import browser_context, needs_chromium, page  # noqa: F401  (fixtures)
from tests.sso.conftest import OIDC_WEB_PORT
from tests.sso.idp import PASSWORDS
from tests.support import port_open, wait_for

pytestmark = [needs_chromium, pytest.mark.browser]


@pytest.fixture
def sso_web(oidc_provider, django_db_setup, transactional_db) -> Iterator[str]:
    """The lab's real ASGI server with OpenID Connect switched on by its environment."""
    env = {**_subprocess_env(), **oidc_provider.lab_env()}
    log = Path(settings.LAB_DATA_DIR) / "web-sso.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "labsite.asgi:application", "--host", "127.0.0.1",
         "--port", str(OIDC_WEB_PORT), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"web exited: {log.read_text()[-3000:]}")
        return port_open(OIDC_WEB_PORT)

    wait_for(up, timeout=30, what="uvicorn with OIDC")
    try:
        yield f"http://127.0.0.1:{OIDC_WEB_PORT}"
    finally:
        proc.terminate()
        proc.wait(20)


def roles(username: str) -> tuple[bool, bool]:
    """(instructor, staff) from the database, off the thread Playwright marks as async."""
    from concurrent.futures import ThreadPoolExecutor

    from django.contrib.auth import get_user_model
    from django.db import connection

    from cohorts.selectors import is_instructor

    def read() -> tuple[bool, bool]:
        try:
            user = get_user_model().objects.get(username=username)
            return is_instructor(user), user.is_staff
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(read).result()


def sign_in_with_sso(page, web: str, user: str) -> None:
    page.goto(f"{web}/accounts/login/")
    page.get_by_test_id("sso-oidc").click()
    page.get_by_test_id("idp-title").wait_for()  # the provider's own page, on the provider's origin
    assert page.url.startswith("http://localhost:")
    page.get_by_test_id("idp-username").fill(user)
    page.get_by_test_id("idp-password").fill(PASSWORDS[user])
    page.get_by_test_id("idp-submit").click()
    page.wait_for_url(re.compile(re.escape(web) + "/$"))


def test_instructor_signs_in_through_the_provider_and_lands_on_the_catalogue(sso_web, browser_context):
    page = browser_context.new_page()
    sign_in_with_sso(page, sso_web, "ines")
    page.get_by_test_id("nav-cohorts").wait_for()  # instructors see their cohorts
    assert page.locator(".user-name").inner_text() == "Ines"
    page.screenshot(path=str(Path(settings.LAB_DATA_DIR) / "sso-catalogue.png"))
    assert roles("ines") == (True, False)


def test_trainee_signs_in_through_the_provider_without_instructor_rights(sso_web, browser_context):
    page = browser_context.new_page()
    sign_in_with_sso(page, sso_web, "tom")
    page.wait_for_load_state("load")
    assert page.get_by_test_id("nav-cohorts").count() == 0
    assert page.locator(".user-name").inner_text() == "Tom"
    assert roles("tom") == (False, False)
