"""Template filters for lab text written by authors (escaped, never raw HTML)."""
from __future__ import annotations

import re

from django import template
from django.utils.safestring import mark_safe

from labs.markdown import join_cjk_text

register = template.Library()


@register.filter
def inline_markdown(text: str) -> str:
    """A summary or title: inline Markdown (`code`, emphasis) sanitised as lesson text is,
    with no stray space between CJK characters."""
    from labs.selectors import render_inline

    return mark_safe(render_inline(join_cjk_text(str(text or ""))))  # noqa: S308 (sanitised by nh3)


@register.filter
def inline_markdown_in_link(text: str) -> str:
    """inline_markdown for text inside a link (a catalogue card is one): its own links
    become plain text, since a link inside a link is not HTML and browsers end the outer
    one there, spilling the rest of the card out of it."""
    return mark_safe(re.sub(r"</?a\b[^>]*>", "", str(inline_markdown(text))))  # noqa: S308 (sanitised, then only tags removed)


@register.filter
def cjk_joined(text: str) -> str:
    """Plain text with no stray space between two CJK characters (autoescaped as usual)."""
    return join_cjk_text(str(text or ""))


@register.filter
def person_name(user) -> str:
    """A user's name in the order their language writes it (labs.selectors.display_name)."""
    from labs.selectors import display_name

    return display_name(user) if getattr(user, "is_authenticated", False) else ""
