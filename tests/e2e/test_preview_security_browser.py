"""Hostile Markdown in a real browser (Debian's chromium): the lab page and the editor's
live preview show it inert — no script runs, no handler fires, nothing navigates, no
frame, form or foreign element appears — for an instructor who is not staff."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import PASSWORD, log_in, needs_chromium
from tests.e2e.test_learning_browser import orm
from tests.labs.test_authoring import archive
from tests.labs.test_preview_security import HOSTILE, ON_PAGE, STEP_LAB

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]

FOREIGN = "script,style,iframe,frame,object,embed,svg,math,form,input,button,textarea,select,meta,base,link,template,noscript"
CHECK = """(selector) => {
  const boxes = [...document.querySelectorAll(selector)];
  const all = boxes.flatMap((b) => [...b.querySelectorAll("*")]);
  return {
    pwned: window.__pwned === undefined ? null : String(window.__pwned),
    foreign: all.filter((e) => e.matches(%r)).map((e) => e.outerHTML),
    handlers: all.flatMap((e) => [...e.attributes].filter((a) => /^on|^style$|^srcdoc$/i.test(a.name)).map((a) => e.tagName + " " + a.name)),
    active: all.flatMap((e) => ["href", "src"].map((n) => e.getAttribute(n)).filter((v) => v && /^\\s*(javascript|vbscript|data):/i.test(v))),
    forgedRun: all.filter((e) => e.matches(".codeblock[data-code]")).length,
    imagesSettled: all.filter((e) => e.tagName === "IMG").every((i) => i.complete),
  };
}""" % FOREIGN


def _assert_inert(page, selector: str, dialogs: list, url: str) -> None:
    page.wait_for_function(f"() => [...document.querySelectorAll('{selector} img')].every((i) => i.complete)")
    found = page.evaluate(CHECK, selector)
    assert found == {"pwned": None, "foreign": [], "handlers": [], "active": [], "forgedRun": 0, "imagesSettled": True}
    assert dialogs == [] and page.url == url  # no alert, no meta refresh, no navigation


def test_hostile_markdown_is_inert_on_the_lab_page_and_in_the_editors_live_preview(worker, web, make_user, tmp_path, page):
    from playwright.sync_api import expect

    def author():
        from django.contrib.auth.models import Group

        make_user("author", PASSWORD).groups.add(Group.objects.get_or_create(name="instructors")[0])

    orm(author)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, web, ("author", PASSWORD), "/labs/upload/")
    steps = {f"steps/s{i}.md": text for i, text in enumerate(ON_PAGE.values())}
    (tmp_path / "mine.tar.gz").write_bytes(archive(STEP_LAB, extra=steps))
    page.get_by_test_id("upload-file").set_input_files(str(tmp_path / "mine.tar.gz"))
    page.get_by_test_id("upload-submit").click()
    page.wait_for_url(f"{web}/labs/mine/preview/")
    # The lab page, every hostile step on it.
    page.goto(f"{web}/labs/mine/")
    assert page.locator(".step-body").count() == len(ON_PAGE)
    page.get_by_text("hover me").first.click(force=True)
    _assert_inert(page, ".step-body", dialogs, f"{web}/labs/mine/")
    # The editor: every payload (those the loader refuses too) typed into a step at once.
    page.goto(f"{web}/labs/mine/edit/")
    page.wait_for_function("() => window.__editorReady === true")
    page.get_by_test_id("editor-file-steps/s0.md").click()
    # The marker first: an unclosed <style> or <math> swallows what follows it (inert too).
    hostile = "START OF THE HOSTILE STEP\n\n" + "\n\n".join(HOSTILE.values()) + "\n"
    page.evaluate("(text) => { const v = window.__editorView;"
                  " v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: text } }); }", hostile)
    preview = page.get_by_test_id("editor-preview")
    expect(preview).to_contain_text("START OF THE HOSTILE STEP", timeout=10_000)
    expect(preview).to_contain_text("hover me")
    preview.get_by_text("hover me").click()
    preview.get_by_text("click me").click()
    _assert_inert(page, "[data-testid=editor-preview]", dialogs, f"{web}/labs/mine/edit/")
