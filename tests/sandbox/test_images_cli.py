"""`manage.py image ...`: the thin command over sandbox.images."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown into the uid range)"),
    pytest.mark.django_db,  # gc also collects checkpoints whose session is gone (labs.inside)
]


@pytest.fixture
def data_dir(tmp_path: Path, settings) -> Path:
    """A private LAB_DATA_DIR for one test."""
    settings.LAB_DATA_DIR = tmp_path
    settings.LAB_SANDBOX_UID = 100000
    return tmp_path


def image(*args: str) -> str:
    """Run `manage.py image ...` in-process and return its stdout."""
    out = io.StringIO()
    call_command("image", *args, stdout=out)
    return out.getvalue()


def test_build_list_inspect_export_import_rm_gc(data_dir: Path) -> None:
    assert "lab/base:latest sha256:" in image("build", str(REPO / "images/base.yaml"))
    assert image("list").startswith("lab/base:latest")
    info = json.loads(image("inspect", "lab/base:latest"))[0]
    assert info["RepoTags"] == ["lab/base:latest"] and len(info["RootFS"]["Layers"]) == 2
    image("export", "lab/base", str(data_dir / "base.tar"), "--format", "docker")
    image("export", "lab/base", str(data_dir / "oci"))
    assert "t/copy:1" in image("import", str(data_dir / "base.tar"), "--tag", "t/copy:1")
    assert "t/oci:2" in image("import", f"{data_dir / 'oci'}:latest", "--tag", "t/oci:2")
    image("rm", "t/copy:1")
    image("rm", "t/oci:2")
    image("rm", "lab/base:latest")
    # Both imports are byte-identical to the build: 2 layers, 1 config, 1 manifest.
    assert "removed 4 blobs" in image("gc")
    assert image("list") == "" and list((data_dir / "images/blobs/sha256").iterdir()) == []


def test_gc_never_removes_a_layer_a_live_session_uses(data_dir: Path) -> None:
    image("build", str(REPO / "images/base.yaml"))
    info = json.loads(image("inspect", "lab/base"))[0]
    session = data_dir / "hosts" / "h1" / "sessions" / "s1"
    session.mkdir(parents=True)
    (session / "layers.json").write_text(json.dumps(info["Lab"]["ChainIDs"]))
    image("rm", "lab/base")
    assert "kept 2 layers" in image("gc")
    assert all((data_dir / "images" / Path(d)).exists() for d in info["GraphDriver"]["Data"]["LowerDir"].split(":"))


def test_errors_are_one_clear_line_and_exit_non_zero(data_dir: Path) -> None:
    with pytest.raises(CommandError, match="not in the image store"):
        image("inspect", "lab/missing:1")
    env = {**os.environ, "LAB_DATA_DIR": str(data_dir)}
    proc = subprocess.run([sys.executable, "manage.py", "image", "import", str(data_dir / "nothing")],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"CommandError: {data_dir / 'nothing'}: no such file or directory to import."]
