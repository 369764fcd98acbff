"""labs.labfile: loading lab directories, and every authoring error at its file:line:column."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from labs.labfile import (
    LabFileError, Limits, Text, discover_labs, lab_version, load_lab, validate_labs,
)

REPO = Path(__file__).resolve().parents[2]
BUILTIN = REPO / "labs" / "builtin"
SCHEMA = json.loads((REPO / "labs" / "schema" / "lab.schema.json").read_text())

STEP = """\
  - id: look
    title: Look around
    text: Run `ls /`.
"""
LAB = "slug: demo\ntitle: Demo\nsteps:\n" + STEP


def write_lab(root: Path, lab_yaml: str, files: dict[str, str | bytes] | None = None) -> Path:
    """A lab directory at root/demo with this lab.yaml and files."""
    lab = root / "demo"
    lab.mkdir(parents=True, exist_ok=True)
    (lab / "lab.yaml").write_text(textwrap.dedent(lab_yaml), encoding="utf-8")
    for name, content in (files or {}).items():
        (lab / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (lab / name).write_bytes(content)
        else:
            (lab / name).write_text(content, encoding="utf-8")
    return lab


def errors(root: Path, lab_yaml: str, files: dict[str, str | bytes] | None = None) -> list[str]:
    """The loader's errors for this lab, with file names relative to the lab directory."""
    lab = write_lab(root, lab_yaml, files)
    with pytest.raises(LabFileError) as caught:
        load_lab(lab)
    return [f"{e.file.relative_to(lab)}:{e.line}:{e.column}: {e.message}" for e in caught.value.errors]


def schema_errors(lab_yaml: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    return [error.message for error in validator.iter_errors(yaml.safe_load(textwrap.dedent(lab_yaml)))]


# -- the built-in labs, the schema, the docs ------------------------------------------------

def builtin_labs() -> list[Path]:
    return discover_labs(BUILTIN)


def test_there_is_at_least_one_builtin_lab():
    assert "first-container" in [p.name for p in builtin_labs()]


@pytest.mark.parametrize("lab", builtin_labs(), ids=lambda p: p.name)
def test_builtin_lab_loads_without_errors(lab):
    spec = load_lab(lab)
    assert spec.slug == lab.name
    # every hands-on step (one with a check) has a solution and hints; reading and
    # quiz steps have none to give
    assert all(step.solution and step.hints for step in spec.steps if step.check)
    assert all(step.text.zh_hans and step.text.en for step in spec.steps)


@pytest.mark.parametrize("lab", builtin_labs(), ids=lambda p: p.name)
def test_builtin_lab_validates_against_the_json_schema(lab):
    assert schema_errors((lab / "lab.yaml").read_text(encoding="utf-8")) == []


def test_json_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_full_example_in_the_authoring_guide_passes_loader_and_schema(tmp_path):
    guide = (REPO / "docs" / "authoring.md").read_text(encoding="utf-8")
    example = guide.split("<!-- full-example -->\n```yaml\n", 1)[1].split("```", 1)[0]
    files = {
        "steps/01-layers.zh-hans.md": "看 [镜像](../images/layers.png)。",
        "steps/01-layers.en.md": "See ![layers](../images/layers.png).",
        "images/layers.png": b"\x89PNG",
    }
    spec = load_lab(write_lab(tmp_path, example, files))
    assert spec.steps and schema_errors(example) == []


@pytest.mark.parametrize("lab_yaml", [
    LAB.replace("title: Demo", "titel: Demo"),
    LAB.replace("slug: demo", "slug: Demo_Lab"),
    LAB.replace("title: Demo", "title: [a, b]"),
    "slug: demo\ntitle: Demo\nsteps: []\n",
    LAB + "    check: 'true'\n",
    LAB + "    quiz: {kind: single, question: Q, choices: [{id: a, text: A}, {id: b, text: B}]}\n",
    LAB + "    quiz: {kind: text, question: Q}\n",
    LAB + "    auto_check: true\n",
    LAB.replace("    text: Run `ls /`.\n", ""),
    LAB + "limits: {memory_mb: 1}\n",
], ids=["unknown-key", "slug", "title-type", "no-steps", "check-without-solution", "no-correct-choice",
        "text-quiz-without-pattern", "auto-check-without-check", "no-text", "limit-range"])
def test_schema_and_loader_both_reject_the_same_bad_lab(tmp_path, lab_yaml):
    assert schema_errors(lab_yaml)
    assert errors(tmp_path, lab_yaml)


# -- what a good lab loads into --------------------------------------------------------------

def test_minimal_lab_gets_the_documented_defaults(tmp_path):
    spec = load_lab(write_lab(tmp_path, LAB))
    assert (spec.image, spec.level, spec.minutes, spec.limits) == ("lab/base:latest", "beginner", 30, Limits())
    step = spec.steps[0]
    assert (step.check, step.auto_check, step.check_timeout, step.quiz, step.hints) == (None, False, 10, None, ())


def test_plain_string_text_is_used_for_both_languages(tmp_path):
    spec = load_lab(write_lab(tmp_path, LAB))
    assert spec.title == Text("Demo", "Demo")


def test_text_get_falls_back_to_zh_hans_then_en():
    assert Text("中文", "English").get("en") == "English"
    assert Text("中文", "").get("en") == "中文"
    assert Text("", "English").get("zh-hans") == "English"
    assert Text("中文", "English").get("fr") == "中文"


def test_text_file_reads_one_markdown_file_per_language(tmp_path):
    lab_yaml = LAB.replace("    text: Run `ls /`.\n", "    text_file: steps/01.md\n")
    files = {"steps/01.zh-hans.md": "运行 `ls /`。", "steps/01.en.md": "Run `ls /`."}
    spec = load_lab(write_lab(tmp_path, lab_yaml, files))
    assert spec.steps[0].text == Text("运行 `ls /`。", "Run `ls /`.")


def test_text_file_uses_the_plain_file_for_both_languages_when_there_are_no_language_files(tmp_path):
    lab_yaml = LAB.replace("    text: Run `ls /`.\n", "    text_file: steps/01.md\n")
    spec = load_lab(write_lab(tmp_path, lab_yaml, {"steps/01.md": "Both."}))
    assert spec.steps[0].text == Text("Both.", "Both.")


def test_load_lab_accepts_the_lab_yaml_path_itself(tmp_path):
    lab = write_lab(tmp_path, LAB)
    assert load_lab(lab / "lab.yaml").path == lab


def test_version_changes_when_a_markdown_file_changes(tmp_path):
    lab = write_lab(tmp_path, LAB, {"notes.md": "one"})
    before = load_lab(lab).version
    (lab / "notes.md").write_text("two")
    assert len(before) == 64 and load_lab(lab).version != before == lab_version(write_lab(tmp_path / "b", LAB, {"notes.md": "one"}))


def test_quiz_is_correct_grades_choices_and_patterns(tmp_path):
    spec = load_lab(BUILTIN / "first-container")
    single, multiple, _, text = (step.quiz for step in spec.steps)
    assert single.is_correct("host") and not single.is_correct("image")
    assert multiple.is_correct(["shared", "diff-id"]) and not multiple.is_correct(["shared"])
    assert text.is_correct(" UTS ") and not text.is_correct("mount")


def test_discover_labs_finds_nested_lab_directories_and_skips_hidden_ones(tmp_path):
    for name in ("a", "group/b", ".git/c"):
        write_lab(tmp_path / name, LAB)
    assert discover_labs(tmp_path) == [tmp_path / "a" / "demo", tmp_path / "group" / "b" / "demo"]


# -- every error, with its position ------------------------------------------------------------

def test_yaml_syntax_error_is_reported_at_the_problem_mark(tmp_path):
    assert errors(tmp_path, "slug: demo\ntitle: [a, b\nsteps: []\n") == [
        "lab.yaml:3:6: YAML syntax error: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 2, column 8)"
    ]


def test_tab_indentation_is_a_syntax_error_with_its_position(tmp_path):
    assert errors(tmp_path, "slug: demo\nsteps:\n\t- id: x\n") == [
        "lab.yaml:3:1: YAML syntax error: found character '\\t' that cannot start any token "
        "(while scanning for the next token)"
    ]


def test_empty_lab_yaml_says_what_was_expected(tmp_path):
    assert errors(tmp_path, "# nothing yet\n") == [
        "lab.yaml:1:1: the file is empty: expected a mapping with slug, title, steps"
    ]


def test_top_level_list_is_reported(tmp_path):
    assert errors(tmp_path, "- slug: demo\n") == ["lab.yaml:1:1: expected a mapping, got a list"]


def test_missing_lab_yaml_is_reported(tmp_path):
    with pytest.raises(LabFileError) as caught:
        load_lab(tmp_path)
    assert str(caught.value) == f"{tmp_path}/lab.yaml:1:1: lab.yaml not found: a lab is a directory with a lab.yaml"


def test_unknown_key_suggests_the_closest_known_key(tmp_path):
    assert errors(tmp_path, LAB + "    chek: 'true'\n") == [
        "lab.yaml:7:5: steps[0]: unknown key 'chek' (did you mean 'check'?)"
    ]


def test_unknown_key_without_a_close_match_lists_the_known_keys(tmp_path):
    assert errors(tmp_path, LAB + "limits: {ram: 5}\n") == [
        "lab.yaml:7:10: limits: unknown key 'ram' (expected one of memory_mb, pids, cpu, disk_mb, "
        "lifetime_minutes, idle_minutes, network)"
    ]


def test_duplicate_key_is_reported_with_the_line_of_the_first(tmp_path):
    assert errors(tmp_path, LAB + "slug: again\n") == ["lab.yaml:7:1: duplicate key 'slug' (first at line 1)"]


def test_title_as_a_list_says_what_was_expected(tmp_path):
    assert errors(tmp_path, LAB.replace("title: Demo", "title: [Demo]")) == [
        "lab.yaml:2:8: title: expected a mapping with zh-hans/en or a string, got a list"
    ]


def test_unknown_language_suggests_zh_hans(tmp_path):
    assert errors(tmp_path, LAB.replace("title: Demo", "title: {zh: 演示, en: Demo}")) == [
        "lab.yaml:2:9: title: unknown key 'zh' (did you mean 'zh-hans'?)"
    ]


def test_number_where_a_string_is_expected_suggests_quotes(tmp_path):
    assert errors(tmp_path, LAB.replace("id: look", "id: 2048")) == [
        "lab.yaml:4:9: steps[0].id: expected step id, got an integer (put it in quotes to make it a string)"
    ]


def test_missing_required_keys_are_all_reported_at_the_mapping(tmp_path):
    assert errors(tmp_path, "level: beginner\nsteps:\n  - text: hi\n") == [
        "lab.yaml:1:1: missing required key 'slug'",
        "lab.yaml:1:1: missing required key 'title'",
        "lab.yaml:3:5: steps[0]: missing required key 'id'",
        "lab.yaml:3:5: steps[0]: missing required key 'title'",
    ]


def test_step_without_text_or_text_file_is_reported(tmp_path):
    assert errors(tmp_path, LAB.replace("    text: Run `ls /`.\n", "")) == [
        "lab.yaml:4:5: steps[0]: missing required key 'text' or 'text_file'"
    ]


def test_duplicate_step_ids_are_reported(tmp_path):
    assert errors(tmp_path, LAB + STEP) == ["lab.yaml:7:5: steps[1].id: duplicate step id 'look' (first at line 4)"]


@pytest.mark.parametrize("bad", ["Demo", "my_lab", "-demo", "two--dashes", "'with space'"])
def test_invalid_slug_is_reported(tmp_path, bad):
    name = bad.strip("'")
    assert errors(tmp_path, LAB.replace("slug: demo", f"slug: {bad}")) == [
        f"lab.yaml:1:7: slug: invalid slug '{name}': use lowercase letters, digits and '-'"
    ]


def test_invalid_step_id_is_reported(tmp_path):
    assert errors(tmp_path, LAB.replace("id: look", "id: Look_Around")) == [
        "lab.yaml:4:9: steps[0].id: invalid step id 'Look_Around': use lowercase letters, digits and '-'"
    ]


def test_wrong_scalar_types_and_ranges_are_reported(tmp_path):
    extra = "minutes: '20'\nlimits: {cpu: fast, network: 'no', pids: 1}\nlevel: expert\n"
    assert errors(tmp_path, LAB + "    check_timeout: 0\n" + extra) == [
        "lab.yaml:7:20: steps[0].check_timeout: 0 is out of range (1 to 60)",
        "lab.yaml:8:10: minutes: expected an integer, got a string",
        "lab.yaml:9:15: limits.cpu: expected a number, got a string",
        "lab.yaml:9:30: limits.network: expected true or false, got a string",
        "lab.yaml:9:42: limits.pids: 1 is out of range (8 to 512)",
        "lab.yaml:10:8: level: expected one of beginner, intermediate, advanced, got 'expert'",
    ]


def test_idle_timeout_longer_than_lifetime_is_reported(tmp_path):
    assert errors(tmp_path, LAB + "limits:\n  lifetime_minutes: 10\n  idle_minutes: 20\n") == [
        "lab.yaml:9:17: limits.idle_minutes: longer than lifetime_minutes"
    ]


def test_check_without_solution_is_reported(tmp_path):
    assert errors(tmp_path, LAB + "    check: test -f /x\n") == [
        "lab.yaml:7:12: steps[0]: a step with a check needs a solution (labs test runs it to prove the check can pass)"
    ]


def test_auto_check_without_check_is_reported(tmp_path):
    assert errors(tmp_path, LAB + "    auto_check: true\n") == ["lab.yaml:7:17: steps[0].auto_check: needs a check to run"]


def test_empty_script_is_reported(tmp_path):
    assert errors(tmp_path, LAB + "    setup: ''\n") == [
        "lab.yaml:7:12: steps[0].setup: the script is empty (leave the key out instead)"
    ]


def test_invalid_image_reference_is_reported(tmp_path):
    assert errors(tmp_path, LAB + "image: Lab/Base\n") == [
        "lab.yaml:7:8: image: invalid image reference 'Lab/Base' (expected name[:tag])"
    ]


def test_image_missing_from_the_store_is_reported_at_the_image_line(tmp_path):
    def resolve(ref: str) -> None:
        raise LookupError(f"no image {ref}")

    lab = write_lab(tmp_path, "slug: demo\nimage: lab/none:1\ntitle: Demo\nsteps:\n" + STEP)
    with pytest.raises(LabFileError) as caught:
        load_lab(lab, image_resolver=resolve)
    assert str(caught.value) == f"{lab}/lab.yaml:2:8: image: 'lab/none:1' is not in the image store: no image lab/none:1"


# -- Markdown files and their links -------------------------------------------------------------

TEXT_FILE = LAB.replace("    text: Run `ls /`.\n", "    text_file: steps/01.md\n")


def test_missing_markdown_file_names_the_files_it_looked_for(tmp_path):
    assert errors(tmp_path, TEXT_FILE) == [
        "lab.yaml:6:16: steps[0].text_file: Markdown file not found: expected steps/01.zh-hans.md "
        "and/or steps/01.en.md (or steps/01.md for both languages)"
    ]


@pytest.mark.parametrize("path", ["../other/01.md", "/etc/01.md"])
def test_text_file_outside_the_lab_is_rejected(tmp_path, path):
    message = "outside the lab directory" if path.startswith("..") else "expected a relative path ending in .md"
    assert message in errors(tmp_path, TEXT_FILE.replace("steps/01.md", path))[0]


def test_text_file_without_md_extension_is_rejected(tmp_path):
    assert errors(tmp_path, TEXT_FILE.replace("steps/01.md", "steps/01.txt")) == [
        "lab.yaml:6:16: steps[0].text_file: expected a relative path ending in .md, got 'steps/01.txt'"
    ]


def test_broken_links_are_reported_at_their_place_in_the_markdown_file(tmp_path):
    markdown = "# Step\n\nSee [the notes](notes.md) and\n![layers](../img/layers.png) or [ok](01.en.md#top).\n"
    assert errors(tmp_path, TEXT_FILE, {"steps/01.en.md": markdown}) == [
        "steps/01.en.md:3:17: link target 'notes.md' not found (looked for steps/notes.md)",
        "steps/01.en.md:4:11: image target '../img/layers.png' not found (looked for img/layers.png)",
    ]


def test_links_in_code_and_to_other_sites_are_not_checked(tmp_path):
    markdown = textwrap.dedent("""\
        `[x](missing.md)` [web](https://example.com/a.md) [top](#top) [root](/labs/)
        [mail](mailto:a@b.c)

        ```shell
        $ echo '[x](missing.md)'
        ```
        """)
    spec = load_lab(write_lab(tmp_path, TEXT_FILE, {"steps/01.md": markdown}))
    assert spec.steps[0].text.en == markdown


def test_link_leaving_the_lab_directory_is_rejected(tmp_path):
    (tmp_path / "secret.md").write_text("x")
    assert errors(tmp_path, TEXT_FILE, {"steps/01.md": "[s](../../secret.md)\n"}) == [
        "steps/01.md:1:5: link target '../../secret.md' is outside the lab directory"
    ]


def test_broken_link_in_inline_yaml_text_is_reported_at_the_text(tmp_path):
    assert errors(tmp_path, LAB.replace("Run `ls /`.", "'See ![x](x.png).'")) == [
        "lab.yaml:6:11: steps[0].text: image target 'x.png' not found (looked for x.png)"
    ]


def test_invalid_utf8_markdown_is_reported_at_its_line(tmp_path):
    assert errors(tmp_path, TEXT_FILE, {"steps/01.md": b"line one\nbad \xff byte\n"}) == [
        "steps/01.md:2:1: not valid UTF-8"
    ]


# -- quizzes ------------------------------------------------------------------------------------

QUIZ = LAB + "    quiz:\n      kind: {kind}\n      question: Why?\n"
CHOICES = "      choices:\n        - {{id: a, text: A, correct: {a}}}\n        - {{id: b, text: B, correct: {b}}}\n"


def test_choice_quiz_without_choices_is_reported(tmp_path):
    assert errors(tmp_path, QUIZ.format(kind="single")) == ["lab.yaml:8:7: steps[0].quiz: a single-choice quiz needs choices"]


def test_choice_quiz_with_one_choice_is_reported(tmp_path):
    assert errors(tmp_path, QUIZ.format(kind="single") + "      choices: [{id: a, text: A, correct: true}]\n") == [
        "lab.yaml:10:16: steps[0].quiz.choices: a single-choice quiz needs at least two choices"
    ]


def test_quiz_without_a_correct_choice_is_reported(tmp_path):
    assert errors(tmp_path, QUIZ.format(kind="multiple") + CHOICES.format(a="false", b="false")) == [
        "lab.yaml:11:9: steps[0].quiz.choices: no choice is marked 'correct: true'"
    ]


def test_single_choice_quiz_with_two_correct_choices_is_reported(tmp_path):
    assert errors(tmp_path, QUIZ.format(kind="single") + CHOICES.format(a="true", b="true")) == [
        "lab.yaml:11:9: steps[0].quiz.choices: 2 choices are correct in a single-choice quiz (use kind: multiple)"
    ]


def test_text_quiz_with_an_invalid_pattern_is_reported(tmp_path):
    assert errors(tmp_path, QUIZ.format(kind="text") + "      pattern: '(uts'\n") == [
        "lab.yaml:10:16: steps[0].quiz.pattern: invalid regular expression: "
        "missing ), unterminated subpattern at position 0"
    ]


def test_text_quiz_without_a_pattern_is_reported(tmp_path):
    assert errors(tmp_path, QUIZ.format(kind="text")) == [
        "lab.yaml:8:7: steps[0].quiz: a text quiz needs a pattern (a regular expression for the answer)"
    ]


def test_unknown_quiz_kind_is_reported(tmp_path):
    assert errors(tmp_path, QUIZ.format(kind="essay")) == [
        "lab.yaml:8:13: steps[0].quiz.kind: expected one of single, multiple, text, got 'essay'"
    ]


# -- all at once, and across labs ---------------------------------------------------------------

def test_every_error_in_a_lab_is_reported_at_once(tmp_path):
    lab_yaml = "slug: Bad\ntitel: x\nsteps:\n  - id: a\n    text_file: steps/a.md\n  - {id: a, title: A, text: t}\n"
    found = errors(tmp_path, lab_yaml)
    assert [line.split(": ", 1)[0] for line in found] == [
        "lab.yaml:1:1", "lab.yaml:1:7", "lab.yaml:2:1", "lab.yaml:4:5", "lab.yaml:5:16", "lab.yaml:6:5",
    ]


def test_lab_file_error_lists_one_error_per_line(tmp_path):
    lab = write_lab(tmp_path, "slug: Bad\ntitle: [x]\nsteps: []\n")
    with pytest.raises(LabFileError) as caught:
        load_lab(lab)
    assert str(caught.value).splitlines() == [str(e) for e in caught.value.errors]
    assert len(caught.value.errors) == 3


def test_validate_labs_reports_duplicate_slugs_and_paths_without_labs(tmp_path):
    write_lab(tmp_path / "one", LAB)
    write_lab(tmp_path / "two", LAB)
    (tmp_path / "empty").mkdir()
    specs, found = validate_labs([tmp_path / "one", tmp_path / "two", tmp_path / "empty"])
    assert len(specs) == 2
    assert [str(e) for e in found] == [
        f"{tmp_path}/empty:1:1: no lab found: expected a lab directory with a lab.yaml",
        f"{tmp_path}/two/demo/lab.yaml:1:1: slug: duplicate slug 'demo' (also in {tmp_path}/one/demo/lab.yaml)",
    ]


def run_validate(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "labs", "validate", *map(str, paths)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_validate_command_prints_ok_with_the_number_of_labs():
    result = run_validate(BUILTIN)
    assert (result.returncode, result.stdout.strip()) == (0, f"ok: {len(builtin_labs())} labs"), result.stderr


def test_validate_command_prints_each_error_and_exits_1(tmp_path):
    lab = write_lab(tmp_path, LAB + "    chek: x\n")
    result = run_validate(BUILTIN, lab)
    assert result.returncode == 1
    assert f"{lab}/lab.yaml:7:5: steps[0]: unknown key 'chek' (did you mean 'check'?)" in result.stderr.splitlines()
    assert "ok:" not in result.stdout


# -- the built-in lab's scripts, in a real busybox root -------------------------------------------

def busybox_root(tmp_path: Path) -> Path:
    """A chroot with static busybox and an image.json like the sandbox's."""
    busybox = shutil.which("busybox")
    if os.geteuid() != 0 or busybox is None or shutil.which("unshare") is None:
        pytest.skip("needs root, busybox and unshare (CI runs as root)")
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    if subprocess.run(["chroot", str(root), "/bin/busybox", "--install", "-s", "/bin"]).returncode:
        pytest.skip("busybox is not statically linked")
    layers = ["sha256:" + c * 64 for c in "ab"]
    (root / "var/lib/lab").mkdir(parents=True)
    (root / "var/lib/lab/image.json").write_text(json.dumps({"Id": "sha256:" + "f" * 64, "RootFS": {"Layers": layers}}, indent=2))
    (root / "root").mkdir()
    (root / "proc").mkdir()
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return root


def in_sandbox(root: Path, script: str) -> subprocess.CompletedProcess:
    # A private UTS namespace: the lab's scripts may set a hostname, never the host's; a /proc
    # of its own (a PID namespace) for the checks that read /proc/self/ns.
    from sandbox.checklang import with_lang

    script, env = with_lang(script, "en")
    return subprocess.run(["unshare", "--uts", "--pid", "--fork", f"--mount-proc={root}/proc", "chroot", str(root), "/bin/sh", "-c", script],
                          capture_output=True, text=True, timeout=30, env={**os.environ, **env})


def test_builtin_lab_checks_fail_before_and_pass_after_their_solution(tmp_path):
    root = busybox_root(tmp_path)
    spec = load_lab(BUILTIN / "first-container")
    assert in_sandbox(root, spec.setup or "true").returncode == 0
    for step in spec.steps:
        if step.setup:
            assert in_sandbox(root, step.setup).returncode == 0, step.id
        before = in_sandbox(root, step.check)
        assert before.returncode != 0 and before.stdout.strip(), step.id
        assert in_sandbox(root, step.solution).returncode == 0, step.id
        after = in_sandbox(root, step.check)
        assert after.returncode == 0, (step.id, after.stdout, after.stderr)


WRONG = LAB + """\
    check: test -f /x
    solution: touch /x
    wrong:
      - script: mkdir /x
        why: {zh-hans: 目录不是文件。, en: A directory is not a file.}
"""


def test_wrong_answers_are_loaded_with_their_bilingual_reason(tmp_path):
    step = load_lab(write_lab(tmp_path, WRONG)).steps[0]
    assert [(w.script, w.why.zh_hans, w.why.en) for w in step.wrong] == [("mkdir /x", "目录不是文件。", "A directory is not a file.")]
    assert schema_errors(WRONG) == []


def test_wrong_answer_errors_are_reported_at_their_place(tmp_path):
    bad = LAB + """\
    wrong:
      - script: mkdir /x
      - scirpt: rm /x
        why: gone
"""
    assert errors(tmp_path, bad) == [
        "lab.yaml:8:7: steps[0].wrong: wrong answers need a check to refuse them",
        "lab.yaml:8:9: steps[0].wrong[0]: missing required key 'why'",
        "lab.yaml:9:9: steps[0].wrong[1]: unknown key 'scirpt' (did you mean 'script'?)",
        "lab.yaml:9:9: steps[0].wrong[1]: missing required key 'script'",
    ]
    assert schema_errors(bad)
