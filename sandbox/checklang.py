"""One language at a time in lab scripts: LAB_LANG and the `say` helper.

Every script run in a sandbox (setup, check, solution) gets LAB_LANG — the trainee's
language, `zh-hans` or `en` — in its environment, and this preamble, so a check prints
one language: `say "中文" "English"`.
"""
from __future__ import annotations

LANGS = ("zh-hans", "en")
DEFAULT_LANG = "zh-hans"

PREAMBLE = (
    "# Added by the check runner: say \"中文\" \"English\" prints the trainee's language (LAB_LANG).\n"
    "say() { if [ \"${LAB_LANG:-zh-hans}\" = en ] && [ -n \"$2\" ]; then printf '%s\\n' \"$2\"; "
    "else printf '%s\\n' \"$1\"; fi; }\n"
)


def lab_lang(lang: str | None) -> str:
    """zh-hans or en, from a language code such as en-us, zh-hans or zh-cn."""
    return "en" if (lang or "").lower().startswith("en") else DEFAULT_LANG


def with_lang(script: str, lang: str | None) -> tuple[str, dict[str, str]]:
    """The script with the `say` preamble, and the environment that goes with it."""
    return PREAMBLE + script, {"LAB_LANG": lab_lang(lang)}
