"""The built-in course (labs/builtin/): fast static checks of its content.

`labs test --all` (tests/labs/test_labtest.py) proves every check in a real sandbox; these
tests only read the files: shape, both languages, hints and solutions, shell syntax, and the
overlayfs / OCI facts an engineer would look for.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from labs.labfile import load_lab

REPO = Path(__file__).resolve().parents[2]
BUILTIN = REPO / "labs" / "builtin"

# The course in teaching order (prerequisites follow it).
COURSE = [
    "first-container",
    "bootfs-rootfs",
    "what-is-a-container",
    "image-layers",
    "container-layer",
    "overlayfs-hands-on",
    "overlay-advanced",
    "build-an-image",
    "challenge",
    "container-as-a-layer",
]
PRESENT = [slug for slug in COURSE if (BUILTIN / slug / "lab.yaml").exists()]
CJK = re.compile(r"[\u4e00-\u9fff]")
# Shell constructs busybox ash lacks (or that differ there): [[ ]], here-strings, function,
# arrays, declare, source, == inside [ ].
BASHISMS = [r"(^|[\s;&|(])\[\[\s", r"<<<", r"^\s*function\s", r"\$\{[A-Za-z_]+\[", r"\bdeclare\b",
            r"(^|[\s;&|])source\s", r"(^|[\s;&|!])\[\s[^]\n]*\s==\s"]


def lab(slug: str):
    return load_lab(BUILTIN / slug)


def all_text(spec) -> str:
    parts = [spec.title.zh_hans, spec.title.en, spec.summary.zh_hans, spec.summary.en]
    for step in spec.steps:
        parts += [step.title.zh_hans, step.title.en, step.text.zh_hans, step.text.en]
        parts += [h.text.zh_hans + "\n" + h.text.en for h in step.hints]
        if step.quiz:
            parts += [step.quiz.question.zh_hans, step.quiz.question.en,
                      step.quiz.explanation.zh_hans, step.quiz.explanation.en]
            parts += [c.text.zh_hans + "\n" + c.text.en for c in step.quiz.choices]
    return "\n".join(parts)


def test_the_core_course_is_there():
    for slug in ["first-container", "bootfs-rootfs", "what-is-a-container", "image-layers",
                 "container-layer", "overlayfs-hands-on"]:
        assert slug in PRESENT, f"labs/builtin/{slug} is missing"


def test_every_builtin_lab_is_part_of_the_course():
    on_disk = sorted(p.parent.name for p in BUILTIN.glob("*/lab.yaml"))
    assert set(on_disk) <= set(COURSE), f"add new labs to COURSE: {set(on_disk) - set(COURSE)}"


@pytest.mark.parametrize("slug", PRESENT)
def test_lab_shape(slug):
    spec = lab(slug)
    assert spec.slug == slug == (BUILTIN / slug).name
    assert 4 <= len(spec.steps) <= 10, f"{slug}: {len(spec.steps)} steps"
    for text in (spec.title, spec.summary):
        assert text.zh_hans and text.en and CJK.search(text.zh_hans) and not CJK.search(text.en)
    for pre in spec.prerequisites:
        assert pre in PRESENT, f"{slug}: prerequisite {pre} is not a built-in lab"
        assert COURSE.index(pre) < COURSE.index(slug)


@pytest.mark.parametrize("slug", PRESENT)
def test_every_step_in_both_languages(slug):
    for step in lab(slug).steps:
        where = f"{slug}/{step.id}"
        assert step.title.zh_hans and step.title.en, where
        assert CJK.search(step.text.zh_hans), f"{where}: the zh-hans text has no Chinese"
        assert step.text.en and not CJK.search(step.text.en), f"{where}: the English text is missing or has Chinese"
        if step.quiz:
            q = step.quiz
            assert q.question.zh_hans and q.question.en, where
            assert q.explanation.zh_hans and q.explanation.en, f"{where}: a quiz needs an explanation in both languages"
            for choice in q.choices:
                assert choice.text.zh_hans and choice.text.en


@pytest.mark.parametrize("slug", PRESENT)
def test_hands_on_steps_have_hints_solution_and_bilingual_messages(slug):
    spec = lab(slug)
    for step in spec.steps:
        where = f"{slug}/{step.id}"
        if not step.check:
            assert step.quiz, f"{where}: a step without a check should at least ask a question"
            continue
        assert step.solution and step.solution.strip(), f"{where}: no solution"
        assert step.hints, f"{where}: no hints"
        for hint in step.hints:
            assert hint.text.zh_hans and hint.text.en, where
        assert CJK.search(step.check), f"{where}: the check prints no Chinese"
        assert re.search(r"echo \"[A-Z]", step.check), f"{where}: the check prints no English sentence"
        assert "exit 1" in step.check, f"{where}: the check never fails"


def _scripts():
    for slug in PRESENT:
        spec = lab(slug)
        if spec.setup:
            yield f"{slug}/setup", spec.setup
        for step in spec.steps:
            for kind in ("setup", "check", "solution"):
                script = getattr(step, kind)
                if script:
                    yield f"{slug}/{step.id}/{kind}", script


@pytest.mark.parametrize("where,script", list(_scripts()), ids=lambda v: v if "/" in str(v) and "\n" not in str(v) else "")
def test_scripts_are_plain_posix_sh(where, script):
    for pattern in BASHISMS:
        assert not re.search(pattern, script, re.M), f"{where}: bash-ism {pattern!r}"
    shell = shutil.which("dash") or shutil.which("sh")
    res = subprocess.run([shell, "-n"], input=script, text=True, capture_output=True)
    assert res.returncode == 0, f"{where}: {res.stderr}"


def test_overlayfs_facts():
    text = all_text(lab("overlayfs-hands-on"))
    # The order of lowerdirs: the leftmost is the top (overlayfs.rst, "Multiple lower layers").
    assert "leftmost on top" in text and "最左边的在最上面" in text
    assert "lowerdir=lower1:lower2:lower3,upperdir=upper,workdir=work merged" in text
    # The kernel's limit and the one-page option string.
    assert "OVL_MAX_STACK" in text and "500" in text and "4096" in text
    # workdir: an empty directory on the same file system as upperdir.
    assert "empty directory on the same file system as upperdir" in text
    # The article's mkdir says "merge": the lab uses "merged" and says so.
    assert "`merge`" in text and "`merged`" in text
    # Whiteouts are 0/0 character devices; an upper-only name needs none.
    assert "0/0" in text and "character device" in text
    # Nobody claims the rightmost lowerdir is on top, except as a wrong quiz choice.
    quiz = {s.id: s.quiz for s in lab("overlayfs-hands-on").steps}["options"]
    wrong = [c for c in quiz.choices if "rightmost" in c.text.en.lower()]
    assert wrong and not any(c.correct for c in wrong)


def test_who_wins_quiz_says_lower1():
    steps = {s.id: s for s in lab("overlayfs-hands-on").steps}
    quiz = steps["who-wins"].quiz
    assert [c.id for c in quiz.choices if c.correct] == ["lower1"]
    assert "lowerdir=lower3:lower2:lower1" in steps["who-wins"].solution


def test_oci_facts():
    text = all_text(lab("image-layers"))
    assert "uncompressed" in text and "未压缩" in text
    assert "chain_id(Ln) = sha256( chain_id(Ln-1) + \" \" + diff_id(Ln) )" in text
    assert "printf '%s %s'" in text
    # Docker's overlay2 directories are cache-ids, not diff_ids.
    assert "cache-id" in text and "layerdb" in text


def test_the_articles_think_questions_are_asked():
    polluted = {s.id: s for s in lab("image-layers").steps}["polluted-rootfs"]
    assert polluted.quiz and "JRE" in polluted.quiz.question.en and "Python" in polluted.quiz.question.en
    flattened = {s.id: s for s in lab("overlayfs-hands-on").steps}["flattened-dirs"]
    assert flattened.quiz and flattened.quiz.kind == "multiple"
    assert {c.id for c in flattened.quiz.choices if c.correct} == {"dirs-merge", "files-win", "whiteouts"}


def test_container_essentials_are_taught():
    text = all_text(lab("what-is-a-container"))
    for word in ("pivot_root", "chroot", "cgroup", "unshare -p -f --mount-proc", "memory.limit_in_bytes",
                 "CVE-2024-21626", "umount -l /oldroot"):
        assert word in text, word
    bootfs = all_text(lab("bootfs-rootfs"))
    assert "bootloader" in bootfs and "uname -r" in bootfs and "vmlinuz" in bootfs
