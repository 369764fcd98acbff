"""The built-in course (labs/builtin/): fast static checks of its content.

`labs test --all` (tests/labs/test_labtest.py) proves every check in a real sandbox; these
tests only read the files: shape, both languages, hints and solutions, shell syntax, and the
overlayfs / OCI facts an engineer would look for.
"""
from __future__ import annotations

import re
import shlex
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
    "image-forensics",
    "run-your-image",
    "user-namespaces",
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
        # One language at a time: `say "中文" "English"` prints the trainee's (LAB_LANG).
        says = [shlex.split(line.strip()[4:].rstrip(";").removesuffix(";;")) for line in step.check.splitlines()
                if line.strip().startswith("say ")]
        assert says, f"{where}: the check never uses say"
        for words in says:
            assert len(words) == 2, f"{where}: say takes two words, Chinese then English: {words}"
            assert CJK.search(words[0]) and not CJK.search(words[1]) and re.search(r"[A-Za-z]{3}", words[1]), f"{where}: {words}"
        assert not [line for line in step.check.splitlines()
                    if not line.strip().startswith("say ") and "echo" in line and CJK.search(line)], \
            f"{where}: a check prints Chinese with echo (both languages at once); use say"
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


def _course_text() -> str:
    return "\n".join(all_text(lab(slug)) for slug in PRESENT)


def test_bootfs_is_not_unmounted_and_is_a_metaphor():
    # The initramfs is freed; /boot usually stays mounted. "bootfs" is Docker's word, not the kernel's.
    for slug in PRESENT:
        text = all_text(lab(slug))
        assert not re.search(r"bootfs[^.。\n]*(is unmounted|被卸载|会被卸载|就被卸载)", text), slug
    bootfs = all_text(lab("bootfs-rootfs"))
    assert "metaphor" in bootfs and "比喻" in bootfs and "not a kernel term" in bootfs and "不是内核术语" in bootfs
    quiz = {s.id: s for s in lab("bootfs-rootfs").steps}["bootfs"].quiz
    right = [c for c in quiz.choices if c.correct]
    assert len(right) == 1 and "unmounted" not in right[0].text.en and "卸载" not in right[0].text.zh_hans
    assert "/boot usually stays mounted" in right[0].text.en


def test_the_standard_terms_are_named_and_explained():
    text = _course_text()
    for term in ("写时复制", "copy-on-write", "联合文件系统", "union file system", "AUFS", "overlay2"):
        assert term in text, term


def test_layer_directories_are_not_claimed_to_be_named_as_docker_names_them():
    first = all_text(lab("first-container"))
    assert "as in Docker's `/var/lib/docker/overlay2/`" not in first and "和 Docker 的 `/var/lib/docker/overlay2/` 一样" not in first
    assert "cache-id" in first
    shared = {c.id: c for c in {s.id: s for s in lab("first-container").steps}["image-layers"].quiz.choices}["shared"]
    assert "chain_id" in shared.text.en and "digest" in shared.text.en and "chain_id" in shared.text.zh_hans
    chain = all_text(lab("image-layers"))
    assert "**this platform's** image store names its layer directories" in chain and "**这个平台的**镜像存储" in chain
    assert "all of overlayfs's mount options must fit in one page" not in chain
    assert "镜像仓库" not in chain and "镜像存储" in chain
    assert "下一个实验 build-an-image" not in chain


def test_kernel_facts_are_attributed_and_versioned():
    hands_on, advanced = all_text(lab("overlayfs-hands-on")), all_text(lab("overlay-advanced"))
    assert "at least two lowerdirs are needed" not in hands_on and "至少要两个 lowerdir" not in hands_on
    assert "at least 2 lowerdir are needed while upperdir nonexistent" in hands_on
    for text in (hands_on, advanced):
        assert "6.7" in text and "EPERM" in text and "params.c" in text
        assert "ovl_can_decode_fh()" in text and "CAP_DAC_READ_SEARCH" in text
    assert "features that need `trusted.*` are out of reach" not in hands_on
    container = all_text(lab("container-layer"))
    assert "reflink" in container and "btrfs" in container


def test_image_building_facts():
    build = all_text(lab("build-an-image"))
    assert "refused by most" not in build and "大多数运行时拒绝" not in build
    assert "block and character devices" in build and "layer.md" in build
    assert "trusted.overlay.redirect" in build and "metacopy" in build and "naive diff" in build
    assert "Docker 25" in build and "blobs/sha256" in build
    chroot = all_text(lab("what-is-a-container"))
    assert "with CAP_SYS_CHROOT can leave" not in chroot and "no capability at all" in chroot
    assert "不需要任何能力" in chroot


def test_chinese_wording():
    text = _course_text()
    for odd in ("把上层发出去", "污染\"成一份份拷贝", "发出去"):
        assert odd not in text, odd


@pytest.mark.parametrize("slug", PRESENT)
def test_every_hands_on_step_lists_wrong_answers_with_a_bilingual_reason(slug):
    for step in lab(slug).steps:
        if not step.check:
            assert not step.wrong
            continue
        assert step.wrong, f"{slug}/{step.id}: no wrong answers for labs test to refuse"
        for wrong in step.wrong:
            assert CJK.search(wrong.why.zh_hans) and wrong.why.en and not CJK.search(wrong.why.en), f"{slug}/{step.id}"
            assert wrong.script.strip() and wrong.script != step.solution


def test_checks_found_too_lenient_or_too_strict_by_the_review_are_fixed():
    steps = {(slug, s.id): s for slug in PRESENT for s in lab(slug).steps}
    # No tautology: uname -r is never compared with osrelease.
    assert "uname -r" not in steps[("bootfs-rootfs", "host-kernel")].check
    # Not only cgroup v1.
    assert "memory.max" in steps[("what-is-a-container", "cgroup-limit")].check
    # Contents, not only tar entry names.
    for key in [("image-layers", "compute-diff-id"), ("build-an-image", "reproducible-tar"), ("challenge", "ship-the-upper")]:
        assert "tar -xOf" in steps[key].check, key
    # Explicit whiteouts are a valid OCI way to replace a directory.
    assert "data/.wh.a" in steps[("challenge", "ship-the-upper")].check
    # The build stack: what the lowerdirs lead to, and userxattr.
    stack = steps[("build-an-image", "stack-the-image")].check
    assert "stat -L" in stack and "userxattr" in stack
    assert "sort" in steps[("overlayfs-hands-on", "who-wins")].check


def test_the_container_layer_lab_teaches_that_home_and_tmp_are_volumes():
    steps = {s.id: s for s in lab("container-layer").steps}
    volumes = steps["volumes"]
    for word in ("volume", "卷", "Invalid argument", "Docker-in-Docker", "/var/lib/docker", "docker run -v"):
        assert word in volumes.text.en + volumes.text.zh_hans, word
    assert "/srv/ovl" in volumes.solution and "794c7630" in volumes.check  # EINVAL shown on the overlay root
    # The hands-on lab no longer needs a tmpfs: ~ is not an overlay.
    assert "mount -t tmpfs" not in {s.id: s for s in lab("overlayfs-hands-on").steps}["prepare"].solution


def test_run_your_image_joins_the_two_halves():
    spec = lab("run-your-image")
    text = all_text(spec)
    for word in ("pivot_root . .", "umount -l .", "maskedPaths", "env -i", "WorkingDir", "Cmd", "Env", "rubber-docker"):
        assert word in text, word
    run = {s.id: s for s in spec.steps}["run"]
    # Checked on the running process: its root's lowerdirs, pivot not chroot, masks, Cmd, Env, cwd.
    for probe in ("mountinfo", "root/..", "environ", "cmdline", "cwd", "kcore"):
        assert probe in run.check, probe


def test_image_forensics_finds_and_removes_the_shipped_bytes():
    spec = lab("image-forensics")
    steps = {s.id: s for s in spec.steps}
    assert ".wh.config.env" in spec.setup and "tok_live" in spec.setup
    fix = steps["fix-the-image"].check
    assert "tar -xOf" in fix and "diff_ids" in fix and "tr '\\0' '\\n'" in fix  # busybox grep stops at NUL
    assert any("another whiteout" in w.why.en for w in steps["fix-the-image"].wrong)
    assert "rotate" in {c.id for c in steps["after-a-leak"].quiz.choices if c.correct}


@pytest.mark.parametrize("slug", PRESENT)
def test_summaries_link_to_the_documents_they_rely_on(slug):
    summary = lab(slug).summary
    for text in (summary.zh_hans, summary.en):
        assert re.search(r"\]\(https://(docs\.kernel\.org|github\.com/opencontainers|man7\.org)/", text), slug
