"""Lab Markdown: sanitised HTML with highlighted, copyable code blocks; relative links."""
from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import NamedTuple

import markdown as markdown_lib
import nh3
from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

# Languages whose blocks are commands a trainee may copy or run in the terminal.
SHELL_LANGS = frozenset({"sh", "shell", "bash", "ash", "console", "shell-session"})
PROMPT = "$ "

_OPEN_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[^\s`]*)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE_LINK = re.compile(r"(?P<bang>!?)\[(?:[^\]\\]|\\.)*\]\(\s*<?(?P<target>[^)\s>]+)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(?P<target>[^\s>]+)")
_HTML_URL = re.compile(r"""<(?P<tag>img|a)\b[^>]*?\b(?:src|href)\s*=\s*["'](?P<target>[^"']+)""", re.I)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl",
    "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol",
    "p", "pre", "s", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td",
    "th", "thead", "tr", "ul",
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "div": {"class", "data-code", "data-lang"},
    "span": {"class"},
    "code": {"class"},
    "pre": {"class"},
    "th": {"align"},
    "td": {"align"},
    "ol": {"start"},
    "details": {"open"},
}
# No javascript:, no data: (lab images are files in the lab directory).
_URL_SCHEMES = {"http", "https", "mailto"}

# Chinese, Japanese and Korean characters and their punctuation (incl. full-width forms).
_CJK = ("\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
        "\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef")
# A source line break between two CJK characters (inline tags may sit around it).
_CJK_BREAK = re.compile(rf"(?<=[{_CJK}])((?:</?[a-zA-Z][^>]*>)*)[ \t]*\n[ \t]*((?:</?[a-zA-Z][^>]*>)*)(?=[{_CJK}])")
# The space a YAML folded scalar (`>`) made of such a line break.
_CJK_SPACE = re.compile(rf"(?<=[{_CJK}])[ \t]*\n?[ \t]*(?=[{_CJK}])")
_PRE = re.compile(r"(<pre\b.*?</pre>)", re.S | re.I)


class Link(NamedTuple):
    """A link or image target found in Markdown source (1-based line and column)."""

    line: int
    column: int
    target: str
    image: bool


def is_relative(target: str) -> bool:
    """True for a link to a file beside the Markdown (no scheme, not absolute, not a #fragment)."""
    return not (_SCHEME.match(target) or target.startswith(("/", "#")))


def relative_links(text: str) -> list[Link]:
    """Every relative link/image target in Markdown `text`, outside code."""
    links: list[Link] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            continue
        opening = _OPEN_FENCE.match(line)
        if opening:
            fence = opening["fence"]
            continue
        # Blank out inline code so `[x](y)` inside backticks is not a link; columns stay put.
        line = _INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)
        found = [(m.start("target"), m["target"], m["bang"] == "!") for m in _INLINE_LINK.finditer(line)]
        found += [(m.start("target"), m["target"], False) for m in _REFERENCE.finditer(line)]
        found += [(m.start("target"), m["target"], m["tag"].lower() == "img") for m in _HTML_URL.finditer(line)]
        links += [Link(number, col + 1, t, img) for col, t, img in sorted(found) if is_relative(t)]
    return links


def command_text(code: str, lang: str) -> str:
    """The text a Copy/Run button uses: for shell blocks with `$ ` prompts, only the commands."""
    lines = code.rstrip("\n").split("\n")
    if lang in SHELL_LANGS and any(line.startswith(PROMPT) for line in lines):
        return "\n".join(line[len(PROMPT):] for line in lines if line.startswith(PROMPT))
    return "\n".join(lines)


def _lexer(code: str, lang: str):
    """Pygments lexer for a fence's language; prompt-style shell gets the session lexer."""
    if lang in SHELL_LANGS and any(line.startswith(PROMPT) for line in code.split("\n")):
        lang = "console"
    try:
        return get_lexer_by_name(lang) if lang else TextLexer()
    except ClassNotFound:
        return TextLexer()


def code_block_html(code: str, lang: str) -> str:
    """One fenced block: Pygments-highlighted, wrapped with the raw command in data-code."""
    highlighted = highlight(code, _lexer(code, lang), HtmlFormatter(cssclass="highlight", wrapcode=True))
    return (
        f'<div class="codeblock" data-lang="{html.escape(lang)}" '
        f'data-code="{html.escape(command_text(code, lang))}">{highlighted}</div>'
    )


class _FencePreprocessor(Preprocessor):
    """Replaces fenced code blocks with stashed, highlighted HTML (CommonMark-style fences)."""

    def __init__(self, md: markdown_lib.Markdown, commands: set[str]) -> None:
        super().__init__(md)
        self.commands = commands

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        index = 0
        while index < len(lines):
            opening = _OPEN_FENCE.match(lines[index])
            if not opening:
                out.append(lines[index])
                index += 1
                continue
            fence, lang = opening["fence"], opening["lang"].lower()
            end = index + 1
            while end < len(lines) and not (
                lines[end].strip().startswith(fence) and not lines[end].strip().strip(fence[0])
            ):
                end += 1
            code = "\n".join(lines[index + 1:end]) + "\n"
            self.commands.add(command_text(code, lang))
            out += ["", self.md.htmlStash.store(code_block_html(code, lang)), ""]
            index = end + 1
        return out


class _FenceExtension(Extension):
    def __init__(self, commands: set[str]) -> None:
        super().__init__()
        self.commands = commands

    def extendMarkdown(self, md: markdown_lib.Markdown) -> None:  # noqa: N802 (Markdown's API)
        md.preprocessors.register(_FencePreprocessor(md, self.commands), "lab_fenced_code", 30)


def is_cjk(text: str) -> bool:
    """Does the text contain a CJK character?"""
    return re.search(f"[{_CJK}]", text) is not None


def join_cjk_breaks(html_text: str) -> str:
    """Drop line breaks between CJK characters outside <pre>: a browser shows a soft
    break as a space, and Chinese has none between words ("空间， 只是")."""
    parts = _PRE.split(html_text)
    return "".join(part if i % 2 else _CJK_BREAK.sub(r"\1\2", part) for i, part in enumerate(parts))


def join_cjk_text(text: str) -> str:
    """Plain lab text (titles, summaries): no space between two CJK characters, where
    YAML's folding or a line break put one."""
    return _CJK_SPACE.sub("", text)


def render_markdown(text: str, *, base_url: str = "") -> str:
    """Markdown -> sanitised HTML; relative link/image URLs are prefixed with `base_url`."""
    commands: set[str] = set()
    converter = markdown_lib.Markdown(
        extensions=[_FenceExtension(commands), "tables", "sane_lists"],
        extension_configs={"tables": {"use_align_attribute": True}},
        output_format="html",
    )
    raw = join_cjk_breaks(converter.convert(text))

    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        # Only code blocks we rendered may carry a Run command; raw HTML cannot forge one.
        if attribute == "data-code":
            return value if tag == "div" and value in commands else None
        if attribute in ("href", "src") and base_url and is_relative(value):
            return base_url.rstrip("/") + "/" + value.removeprefix("./")
        return value

    return nh3.clean(
        raw,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        attribute_filter=attribute_filter,
        link_rel="noopener noreferrer",
    )


@lru_cache(maxsize=None)
def pygments_css(style: str = "default") -> str:
    """CSS for highlighted code blocks (scoped to `.codeblock .highlight`)."""
    formatter = HtmlFormatter(style=style, cssclass="highlight")
    scope = ".codeblock .highlight"
    # Only scoped rules: get_style_defs() also emits a bare `pre {}` rule for the whole page.
    return "\n".join(formatter.get_background_style_defs(scope) + formatter.get_token_style_defs(scope)) + "\n"
