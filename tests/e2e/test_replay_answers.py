"""After a reload the page replays the terminal; the answers xterm.js gives to the
queries in that replayed output (here a cursor-position query, ESC[6n, printed with
each command, as busybox sh does at every prompt) must not reach the shell — only what
the trainee types does."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import needs_chromium
from tests.e2e.test_browser import run, sandboxed, start_lab, wait_for_line, wait_until_live

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]


# Every binary frame the page sends (keystrokes), kept in the page: the relay trims the
# input stream exactly to what it has delivered, so Redis keeps no history to look at.
RECORD_SENT = """
(() => {
  window.__labSent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data !== "string") window.__labSent.push(Array.from(new Uint8Array(data.buffer || data)));
    return send.call(this, data);
  };
})();
"""


def keystrokes_sent(page) -> bytes:
    """What this page (since its last load) sent to the shell: keystrokes only."""
    return bytes(b for frame in page.evaluate("() => window.__labSent") for b in frame)


@sandboxed
def test_terminal_answers_to_replayed_queries_are_not_sent_to_the_shell(web, worker, builtin_labs, trainee, page):
    page.add_init_script(RECORD_SENT)
    start_lab(page, web, trainee)
    wait_until_live(page)
    for n in range(3):  # three cursor-position queries in the output, each answered live
        run(page, rf"printf '\033[6n'; read -rs -d R _; echo round-$(({n}+1))")
        wait_for_line(page, f"^round-{n + 1}$")
    assert b"\x1b[" in keystrokes_sent(page)  # live, the page does answer (the test can see answers)
    page.reload()
    wait_until_live(page)
    wait_for_line(page, "^round-3$")  # the replay is on screen
    run(page, "echo after-$((2+2))")
    wait_for_line(page, "^after-4$")
    sent = keystrokes_sent(page)
    before_typing = sent.split(b"echo after-", 1)[0]
    assert b"\x1b[" not in before_typing, sent  # no ESC[row;colR answers from the replay
    assert sent.startswith(b"echo after-$((2+2))\r"), sent
