"""labs.markdown: lab Markdown renders to safe HTML with highlighted, copyable code."""
from __future__ import annotations

import html
import re

import pytest

from labs.markdown import Link, command_text, pygments_css, relative_links, render_markdown


def data_codes(rendered: str) -> list[str]:
    return [html.unescape(value) for value in re.findall(r'data-code="([^"]*)"', rendered)]


def test_script_tags_are_removed_with_their_content():
    rendered = render_markdown("Hi <script>alert('x')</script> there\n\n<script src=//evil.example/x.js></script>")
    assert "<script" not in rendered and "alert" not in rendered and "evil" not in rendered


@pytest.mark.parametrize("source", [
    "[click](javascript:alert(1))",
    '<a href="JaVaScRiPt:alert(1)">click</a>',
    "[click](data:text/html;base64,PHNjcmlwdD4=)",
    "![x](data:image/svg+xml;base64,PHN2Zz4=)",
])
def test_javascript_and_data_urls_are_dropped(source):
    rendered = render_markdown(source)
    assert "javascript" not in rendered.lower() and "data:" not in rendered


@pytest.mark.parametrize("source", [
    '<img src="x.png" onerror="alert(1)">',
    '<p onclick="alert(1)" onmouseover="alert(2)">hi</p>',
    '<svg onload="alert(1)"></svg>',
])
def test_event_handler_attributes_render_inert(source):
    rendered = render_markdown(source)
    assert "alert" not in rendered and not re.search(r"\son\w+=", rendered)


def test_iframes_styles_and_forms_are_removed():
    rendered = render_markdown('<iframe src="https://x"></iframe><style>*{}</style><form><input></form>ok')
    assert re.sub(r"</?p>", "", rendered).strip() == "ok"


def test_links_get_rel_noopener_noreferrer():
    assert render_markdown("[site](https://example.com)") == (
        '<p><a href="https://example.com" rel="noopener noreferrer">site</a></p>'
    )


def test_relative_urls_are_prefixed_with_the_base_url_and_others_are_not():
    rendered = render_markdown("![l](./img/l.png) [a](notes.md) [b](/abs) [c](https://x.org) [d](#top)",
                               base_url="/labs/demo/files/")
    assert 'src="/labs/demo/files/img/l.png"' in rendered and 'href="/labs/demo/files/notes.md"' in rendered
    assert 'href="/abs"' in rendered and 'href="https://x.org"' in rendered and 'href="#top"' in rendered


def test_fenced_code_is_highlighted_with_pygments_classes():
    rendered = render_markdown("```python\nimport os\n```\n")
    assert '<div class="highlight"><pre><span></span><code><span class="kn">import</span>' in rendered


def test_code_blocks_carry_the_raw_command_in_data_code():
    rendered = render_markdown("```shell\necho \"a<b\" > /tmp/x && cat /tmp/x\n```\n")
    assert data_codes(rendered) == ['echo "a<b" > /tmp/x && cat /tmp/x']
    assert rendered.startswith('<div class="codeblock" data-lang="shell" data-code="echo &quot;a&lt;b&quot; &gt; ')


def test_prompt_style_shell_blocks_copy_only_the_commands():
    rendered = render_markdown("```shell\n$ ls /\nbin dev etc\n$ uname -r\n6.1.0\n```\n")
    assert data_codes(rendered) == ["ls /\nuname -r"]
    assert '<span class="gp">$ </span>' in rendered


def test_code_without_a_language_still_gets_a_wrapper():
    rendered = render_markdown("~~~\nplain <text>\n~~~\n")
    assert data_codes(rendered) == ["plain <text>"] and "&lt;text&gt;" in rendered


def test_raw_html_cannot_forge_a_runnable_code_block():
    rendered = render_markdown('<div class="codeblock" data-code="rm -rf /">looks harmless</div>')
    assert "data-code" not in rendered


def test_code_inside_fences_is_not_markdown():
    rendered = render_markdown("```\n<script>alert(1)</script> **bold**\n```\n")
    assert "<script>" not in rendered and "<strong>" not in rendered and "&lt;script&gt;" in rendered


def test_tables_render_with_alignment():
    rendered = render_markdown("| a | b |\n|:--|--:|\n| 1 | 2 |\n")
    assert '<th align="left">a</th>' in rendered and '<td align="right">2</td>' in rendered


def test_pygments_css_is_scoped_to_code_blocks():
    css = pygments_css()
    rules = [line for line in css.splitlines() if "{" in line]
    assert rules and all(line.startswith(".codeblock .highlight") for line in rules)
    assert ".codeblock .highlight .kn " in css


def test_command_text_keeps_non_shell_blocks_whole():
    assert command_text("$ not a prompt\n", "python") == "$ not a prompt"


def test_relative_links_finds_links_images_references_and_html_outside_code():
    source = (
        "[a](a.md) ![b](img/b.png \"t\") `[c](c.md)` [web](https://x.org)\n"
        "[ref]: notes/ref.md\n"
        '<img src="img/d.png">\n'
        "```\n[e](e.md)\n```\n"
    )
    assert relative_links(source) == [
        Link(1, 5, "a.md", False), Link(1, 16, "img/b.png", True),
        Link(2, 8, "notes/ref.md", False), Link(3, 11, "img/d.png", True),
    ]


def test_a_line_break_between_chinese_characters_is_not_a_space_but_code_keeps_its_lines():
    from labs.markdown import join_cjk_text, render_markdown

    html = render_markdown("磁盘空间，\n只是一个 **值**\n而已。\nEnglish\nwords\n\n```sh\n$ echo 中\n文\n```\n")
    assert "磁盘空间，只是一个 <strong>值</strong>而已。" in html
    assert "English\nwords" in html  # a break between Latin words stays a space
    assert "中\n" in html  # inside <pre> nothing is joined
    assert join_cjk_text("镜像是一叠只读的层， 你写下 diff_id 与 chain_id") == "镜像是一叠只读的层，你写下 diff_id 与 chain_id"


def test_a_summary_renders_inline_code_and_escapes_html():
    from labs.templatetags.lab_text import inline_markdown

    out = str(inline_markdown("把上层目录变成 OCI 层（whiteout 转成 `.wh.` 文件） <script>x</script>"))
    assert "<code>.wh.</code>" in out and "<script>" not in out and "`" not in out


def test_a_chinese_name_is_written_family_name_first_without_a_space(django_user_model, transactional_db):
    from labs.selectors import display_name

    chen = django_user_model(username="chen", first_name="晨", last_name="陈")
    ada = django_user_model(username="ada", first_name="Ada", last_name="Lovelace")
    assert display_name(chen) == "陈晨" and display_name(ada) == "Ada Lovelace"
    assert display_name(django_user_model(username="nobody")) == "nobody"
