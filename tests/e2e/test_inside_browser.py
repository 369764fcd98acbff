"""The inside panel in a real browser: it shows the image's layers and container, and its
Container layer tab updates after a command typed in the terminal; checkpoint and
rewind from the panel."""
from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import needs_chromium
from tests.e2e.test_browser import run, sandboxed, start_lab, wait_for_line, wait_until_live

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]


@sandboxed
def test_the_panel_shows_layers_and_updates_the_container_layer_after_a_command(worker, web, builtin_labs, trainee, page, base_image):
    from playwright.sync_api import expect

    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    start_lab(page, web, trainee)
    panel = page.get_by_test_id("inside-panel")
    expect(page.get_by_test_id("inside-tab-layers")).to_be_hidden()  # closed: nothing subscribed
    page.get_by_test_id("inside-toggle").click()
    page.get_by_test_id("inside-tab-layers").click()
    expect(panel.get_by_test_id("inside-layer")).to_have_count(len(base_image.layers), timeout=15_000)
    expect(panel.get_by_test_id("inside-upper")).to_be_visible()

    page.get_by_test_id("inside-tab-changes").click()
    run(page, "echo x > /etc/new; rm /etc/motd; mkdir -p /opt/d; echo ran-$((1+1))")
    wait_for_line(page, r"^ran-2$")
    changes = panel.get_by_test_id("inside-changes")
    expect(changes.locator('[data-path="/etc/new"]')).to_have_attribute("data-kind", "added", timeout=10_000)
    expect(changes.locator('[data-path="/etc/motd"]')).to_have_attribute("data-kind", "deleted")
    expect(changes.locator('[data-path="/opt/d"]')).to_have_attribute("data-kind", "added")

    page.get_by_test_id("inside-tab-layers").click()
    panel.get_by_test_id("inside-tree-entry").and_(page.locator('[data-name="etc"]')).get_by_role("link").click()
    expect(panel.get_by_test_id("inside-tree-path")).to_contain_text("etc")
    tree = panel.locator("[data-inside-tree]")
    expect(tree.locator('[data-name="new"]')).to_have_attribute("data-layer", "C")
    expect(tree.locator('[data-name="motd"]')).to_have_class(re.compile(r"\bis-deleted\b"))
    expect(tree.locator('[data-name="passwd"]')).to_have_attribute("data-layer", "L0")

    page.get_by_test_id("inside-tab-container").click()
    expect(panel.get_by_test_id("inside-ns-pid")).to_have_class("is-own", timeout=10_000)
    expect(panel.get_by_test_id("inside-process").first).to_be_visible()
    expect(panel.get_by_test_id("inside-overlay").first).to_contain_text("upperdir container layer")

    page.get_by_test_id("inside-tab-checkpoints").click()
    page.get_by_test_id("inside-checkpoint").click()
    item = panel.get_by_test_id("inside-checkpoint-item")
    expect(item).to_have_count(1, timeout=20_000)
    run(page, "echo later > /etc/later; echo ran-$((2+2))")
    wait_for_line(page, r"^ran-4$")
    page.get_by_test_id("inside-tab-changes").click()
    expect(changes.locator('[data-path="/etc/later"]')).to_have_count(1, timeout=10_000)
    page.get_by_test_id("inside-tab-checkpoints").click()
    item.get_by_role("button").click()
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "ready", timeout=30_000)
    page.get_by_test_id("inside-tab-changes").click()
    # Rewound: /etc/new is in the checkpoint's layer now, /etc/later is gone.
    expect(changes.locator('[data-path="/etc/later"]')).to_have_count(0, timeout=15_000)
    expect(changes.locator('[data-path="/etc/new"]')).to_have_count(0)
    assert errors == []


@sandboxed
def test_a_passed_step_offers_rewind_to_the_start_of_the_next_one(worker, web, builtin_labs, trainee, page):
    from playwright.sync_api import expect

    start_lab(page, web, trainee)
    rewind = page.get_by_test_id("rewind-step-image-layers")
    expect(rewind).to_have_count(0)
    run(page, "mkdir -p /root/answers; uname -r > /root/answers/kernel; echo written-$((1+1))")
    wait_for_line(page, r"^written-2$")
    page.get_by_test_id("check-rootfs-without-kernel").click()
    expect(page.get_by_test_id("result-rootfs-without-kernel")).to_have_attribute("data-passed", "true", timeout=15_000)
    expect(rewind).to_have_count(1, timeout=20_000)  # the checkpoint taken when the step passed
    # In the container layer (the root file system): a rewind takes it back. The trainee's
    # home is a volume: what is there (the answer) stays, as a Docker volume does.
    run(page, "echo later > /etc/later; echo ran-$((3+3))")
    wait_for_line(page, r"^ran-6$")
    page.get_by_test_id("step-image-layers").evaluate("(d) => { d.open = true; }")
    rewind.click()
    badge = page.get_by_test_id("state-badge")
    expect(badge).to_have_attribute("data-state", "starting", timeout=10_000)
    expect(badge).to_have_attribute("data-state", "ready", timeout=30_000)
    from tests.e2e.test_browser import wait_until_live

    wait_until_live(page)
    run(page, "ls /etc/later /root/answers/kernel; echo ran-$((4+4))")
    wait_for_line(page, r"^ran-8$")
    wait_for_line(page, r"No such file or directory")
    wait_for_line(page, r"^/root/answers/kernel$")
    expect(page.get_by_test_id("result-rootfs-without-kernel")).to_have_attribute("data-passed", "true")


@sandboxed
def test_my_images_starts_the_lab_on_a_committed_image_and_downloads_it(worker, web, builtin_labs, trainee, page, base_image, tmp_path):
    import shutil
    import subprocess

    from playwright.sync_api import expect

    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    start_lab(page, web, trainee)
    images = page.get_by_test_id("my-images")
    expect(images).to_be_hidden()  # none yet
    run(page, "echo mine > /etc/mine; echo ran-$((3+3))")
    wait_for_line(page, r"^ran-6$")
    page.get_by_test_id("inside-toggle").click()
    page.get_by_test_id("inside-tab-checkpoints").click()
    page.get_by_test_id("inside-commit-name").fill("browser-start")
    page.get_by_test_id("inside-commit-tag").fill("v1")
    page.get_by_test_id("inside-commit").click()
    item = page.get_by_test_id("my-image-0")
    expect(item).to_contain_text("trainee/browser-start:v1", timeout=20_000)
    start = page.get_by_test_id("my-image-start-0")
    expect(start).to_have_text("用这个镜像启动")  # the page is in the trainee's language (zh-CN)
    expect(start).to_be_disabled()  # a sandbox is running

    with page.expect_download() as info:
        page.get_by_test_id("my-image-download-oci-0").click()
    archive = tmp_path / "mine.oci.tar"
    info.value.save_as(archive)
    if shutil.which("skopeo"):
        out = subprocess.run(["skopeo", "inspect", f"oci-archive:{archive}"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert '"Layers"' in out.stdout and out.stdout.count("sha256:") >= len(base_image.layers) + 1

    page.get_by_test_id("stop-button").click()
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "stopped", timeout=30_000)
    expect(start).to_be_enabled()
    start.click()
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "ready", timeout=30_000)
    wait_until_live(page)
    run(page, "cat /etc/mine; echo ran-$((4+4))")
    wait_for_line(page, r"^mine$")  # the committed container layer is this sandbox's image
    expect(start).to_be_disabled()
    page.get_by_test_id("inside-tab-layers").click()
    expect(page.get_by_test_id("inside-layer")).to_have_count(len(base_image.layers) + 1, timeout=15_000)
    assert errors == []
