"""After a reload the page replays the terminal; the answers xterm.js gives to the
queries in that replayed output (here a cursor-position query, ESC[6n, printed with
each command, as busybox sh does at every prompt) must not reach the shell — only what
the trainee types does."""
from __future__ import annotations

import pytest
import redis
from django.conf import settings

from tests.e2e.conftest import needs_chromium
from tests.e2e.test_browser import run, sandboxed, start_lab, wait_for_line, wait_until_live

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]


def keystrokes_since(sid: str, after: str) -> bytes:
    """What the page sent to the shell after stream id `after` (keystrokes only)."""
    r = redis.Redis.from_url(settings.REDIS_URL)
    entries = r.xrange(f"term:{sid}:in", min=f"({after}", max="+")
    return b"".join(fields[b"d"] for _, fields in entries if b"d" in fields)


@sandboxed
def test_terminal_answers_to_replayed_queries_are_not_sent_to_the_shell(web, worker, builtin_labs, trainee, page):
    sid = start_lab(page, web, trainee)
    wait_until_live(page)
    for n in range(3):  # three cursor-position queries in the output, each answered live
        run(page, rf"printf '\033[6n'; read -rs -d R _; echo round-$(({n}+1))")
        wait_for_line(page, f"^round-{n + 1}$")
    r = redis.Redis.from_url(settings.REDIS_URL)
    last = r.xrevrange(f"term:{sid}:in", count=1)[0][0].decode()
    page.reload()
    wait_until_live(page)
    wait_for_line(page, "^round-3$")  # the replay is on screen
    run(page, "echo after-$((2+2))")
    wait_for_line(page, "^after-4$")
    sent = keystrokes_since(sid, last)
    before_typing = sent.split(b"echo after-", 1)[0]
    assert b"\x1b[" not in before_typing, sent  # no ESC[row;colR answers from the replay
    assert sent.startswith(b"echo after-$((2+2))\r")
