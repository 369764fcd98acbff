"""Messages in the reader's language, for text written in code beside each other (error
messages of services, which run in a request with the user's language active)."""
from __future__ import annotations

from django.utils.functional import lazy
from django.utils.translation import get_language


def _choose(zh: str, en: str) -> str:
    return zh if (get_language() or "").lower().startswith("zh") else en


_lazy_choose = lazy(_choose, str)


def say(zh: str, en: str) -> str:
    """The Chinese or the English text, chosen when it becomes text (in the request that
    answers it, with the reader's language active) — never both at once."""
    return _lazy_choose(zh, en)
