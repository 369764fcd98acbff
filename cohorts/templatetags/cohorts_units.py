"""Template filters for human units on the admins' pages, in the page's language."""
from __future__ import annotations

from django import template
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """Seconds as a person reads them: 42 s, 12 min, 1 h 05 min (42 秒, 12 分钟…); "—" for none."""
    if seconds is None or seconds == "":
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return _("%(n)d s") % {"n": seconds}
    minutes = seconds // 60
    if minutes < 60:
        return _("%(n)d min") % {"n": minutes}
    return _("%(h)d h %(m)02d min") % {"h": minutes // 60, "m": minutes % 60}


@register.filter
def session_state(state: str) -> str:
    """A sandbox's state as a word of the page's language."""
    words = {"starting": _("Starting"), "ready": _("Ready"), "stopping": _("Stopping"), "stopped": _("Stopped"),
             "failed": _("Failed"), "lost": _("Lost")}
    return words.get(state, state)
