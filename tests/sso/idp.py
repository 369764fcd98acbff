"""A real OpenID Connect provider process for the tests (tests/sso/provider/: Django +
django-oauth-toolkit, RS256 key made at set-up), on a free port of localhost."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests

from sandbox.relay.spawn import die_with_parent
from tests.support import free_port, port_open, wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
CLIENT_ID = "container-image-lab"
CLIENT_SECRET = "client-secret-for-tests-0123456789"
PASSWORDS = {name: f"{name}-idp-pw" for name in ("ines", "tom", "sara", "admin")}


@dataclass
class Provider:
    proc: subprocess.Popen
    port: int
    env: dict

    @property
    def base(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.base}/o"

    def lab_env(self) -> dict[str, str]:
        """The environment that switches the lab's OpenID Connect sign-in on for this provider."""
        return {"OIDC_RP_CLIENT_ID": CLIENT_ID, "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
                "OIDC_PROVIDER_NAME": "Example Corp", "OIDC_OP_ISSUER": self.issuer,
                "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{self.issuer}/authorize/",
                "OIDC_OP_TOKEN_ENDPOINT": f"{self.issuer}/token/",
                "OIDC_OP_USER_ENDPOINT": f"{self.issuer}/userinfo/",
                "OIDC_OP_JWKS_ENDPOINT": f"{self.issuer}/.well-known/jwks.json",
                "OIDC_INSTRUCTOR_GROUPS": "instructors", "OIDC_STAFF_GROUPS": "lab-admins"}

    def set_groups(self, user: str, *groups: str) -> None:
        """Change a user's groups in the provider, as its administrator would."""
        subprocess.run([sys.executable, "-m", "tests.sso.provider", "groups", user, *groups],
                       cwd=ROOT, env=self.env, check=True, capture_output=True)

    def sign_in(self, authorize_url: str, user: str, password: str | None = None) -> str:
        """Follow the lab's redirect to the provider's own login page, sign in there
        (a requests session standing in for the browser) and return the lab callback URL."""
        s = requests.Session()
        r = s.get(authorize_url, allow_redirects=True, timeout=20)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text).group(1)
        r = s.post(r.url, data={"csrfmiddlewaretoken": token, "username": user, "next": _next(r.url),
                                "password": password or PASSWORDS[user]},
                   headers={"Referer": r.url}, allow_redirects=False, timeout=20)
        while r.status_code in (301, 302) and r.headers["Location"].startswith(("/", self.base)):
            r = s.get(urljoin(self.base, r.headers["Location"]), allow_redirects=False, timeout=20)
        assert r.status_code == 302, (r.status_code, r.text[:500])
        return r.headers["Location"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _next(url: str) -> str:
    from urllib.parse import parse_qs, urlparse

    return parse_qs(urlparse(url).query).get("next", ["/"])[0]


def start_provider(tmp: Path, redirect_uri: str, port: int | None = None) -> Provider:
    """Migrate, make a key, users and the lab's client, then serve on localhost:port."""
    port = port or free_port()
    env = dict(os.environ, PROVIDER_DIR=str(tmp), PROVIDER_ISSUER=f"http://localhost:{port}/o",
               DJANGO_SETTINGS_MODULE="tests.sso.provider.settings")
    subprocess.run([sys.executable, "-m", "tests.sso.provider", "setup", CLIENT_ID, CLIENT_SECRET, redirect_uri],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    log = tmp / "provider.log"
    proc = subprocess.Popen([sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"],
                            cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent)

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"provider exited: {log.read_text()[-3000:]}")
        return port_open(port)

    wait_for(up, timeout=30, what="OpenID Connect provider")
    return Provider(proc, port, env)
