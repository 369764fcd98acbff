"""docker-compose.yml names only things that exist: there is no Docker engine here,
so this checks every command, module, setting and file the compose file refers to."""
from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SETTINGS_SOURCE = "\n".join(p.read_text() for p in (ROOT / "labsite").rglob("*.py"))


def commands() -> list[list[str]]:
    """Every shell command in the compose file, split into argv lists."""
    found = []
    for svc in COMPOSE["services"].values():
        cmd = svc.get("command")
        if not cmd or "image" in svc:
            continue
        inner = re.match(r'^sh -c "(.*)"$', cmd.strip(), re.S)
        for part in re.split(r"&&", inner.group(1) if inner else cmd):
            argv = shlex.split(part.strip())
            found.append(argv[1:] if argv[0] == "exec" else argv)
    return found


def test_every_manage_py_subcommand_the_compose_file_runs_exists():
    used = [argv[2] for argv in commands() if argv[:2] == ["python", "manage.py"]]
    assert used, "compose runs manage.py"
    missing = [c for c in used if c not in get_commands()]
    assert missing == []


def test_every_python_target_the_compose_file_names_imports():
    for argv in commands():
        if argv[0] == "uvicorn":
            module, _, attr = argv[1].partition(":")
            assert hasattr(importlib.import_module(module), attr)
        if argv[0] == "celery":
            assert argv[1] == "-A"
            assert hasattr(importlib.import_module(argv[2]), "celery_app")


def test_every_python_module_the_compose_file_runs_imports():
    modules = [argv[2] for argv in commands() if argv[:2] == ["python", "-m"]]
    assert "sandbox.relay.holder" in modules
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module


def test_a_sandbox_host_is_holder_relay_and_worker_sharing_one_pid_namespace():
    services = COMPOSE["services"]
    assert services["relay"]["command"] == "python manage.py relay"
    for name in ("relay", "worker"):
        # Sandbox processes must outlive a restarted relay or worker: they live in the
        # holder's PID namespace, not in the restarting container's.
        assert services[name]["pid"] == "service:ptyhold", name
        assert services[name]["privileged"] is True
        assert services[name]["volumes"] == services["ptyhold"]["volumes"], name
        assert services[name]["environment"]["LAB_HOST_NAME"] == services["relay"]["environment"]["LAB_HOST_NAME"]
    assert services["ptyhold"]["init"] is True
    argv = services["ptyhold"]["command"].split()
    socket = argv[argv.index("--socket") + 1]
    assert socket.startswith("/var/lib/container-lab/hosts/") and socket.endswith("/holder.sock")
    assert argv[argv.index("--redis") + 1] == services["web"]["environment"]["REDIS_URL"]
    assert argv[argv.index("--beat-key") + 1] == "lab:hold:${LAB_HOST_NAME:-worker1}"


def test_every_file_the_compose_commands_name_exists():
    for argv in commands():
        for arg in argv:
            if re.match(r"^(images|labs)/", arg):
                assert (ROOT / arg).exists(), arg
    assert (ROOT / "Dockerfile").exists()


def test_every_environment_variable_is_read_by_the_code():
    names = set()
    for svc in COMPOSE["services"].values():
        if "image" in svc:
            continue
        names |= set((svc.get("environment") or {}).keys())
    code = SETTINGS_SOURCE + (ROOT / "manage.py").read_text()
    unread = sorted(n for n in names if n != "DJANGO_SETTINGS_MODULE" and f'"{n}"' not in code)
    assert unread == []
    settings_module = COMPOSE["services"]["web"]["environment"]["DJANGO_SETTINGS_MODULE"]
    importlib.util.find_spec(settings_module)


def test_production_settings_refuse_to_start_without_secrets(monkeypatch):
    import sys

    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.delenv("SECRET_KEY", raising=False)
    sys.modules.pop("labsite.settings.prod", None)
    try:
        importlib.import_module("labsite.settings.prod")
    except ImproperlyConfigured as exc:
        assert "SECRET_KEY" in str(exc)
    else:
        raise AssertionError("prod settings imported without SECRET_KEY")


def test_only_the_services_that_run_runc_are_privileged():
    privileged = [name for name, svc in COMPOSE["services"].items() if svc.get("privileged")]
    assert privileged == ["relay", "worker"]  # the holder only keeps file descriptors


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    import os
    import secrets
    import subprocess
    import sys

    env = dict(os.environ, DJANGO_SETTINGS_MODULE="labsite.settings.prod", SECRET_KEY=secrets.token_urlsafe(50),
               ALLOWED_HOSTS="lab.example.org", LAB_DATA_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


def _apt_list(name: str) -> list[str]:
    return re.sub(r"#.*", "", (ROOT / name).read_text()).split()


def test_the_dockerfile_and_lab_install_one_list_of_debian_packages():
    dockerfile = (ROOT / "Dockerfile").read_text()
    lab = (ROOT / "lab").read_text()
    # Both read the same file (no second list to drift apart) on the same Debian release.
    assert "sed 's/#.*//' requirements-apt.txt" in dockerfile
    assert "sed 's/#.*//' requirements-apt.txt" in lab
    assert re.search(r"^FROM debian:bookworm-slim$", dockerfile, re.M)
    assert "Debian 12" in lab
    assert re.search(r"apt-get install[^\n]*\$\(sed", dockerfile)
    assert not re.search(r"apt-get install[^$\n]*\b(runc|tini)\b", dockerfile), "packages named outside the list"
    # python-ldap builds from source: its headers and compiler are in the runtime list.
    assert {"runc", "busybox-static", "tini", "gcc", "libldap-dev", "libsasl2-dev", "python3-venv"} <= set(
        _apt_list("requirements-apt.txt"))
    assert {"slapd", "ldap-utils", "chromium"} <= set(_apt_list("requirements-apt-dev.txt"))
    # pip: the image's virtualenv is made from requirements.txt alone, like `./lab up`'s.
    assert "pip install --no-cache-dir --disable-pip-version-check -r requirements.txt" in dockerfile
    assert ".venv/" in (ROOT / ".dockerignore").read_text().split()


def test_every_debian_package_in_the_lists_exists_in_this_release():
    import shutil
    import subprocess

    if not shutil.which("apt-cache"):
        import pytest

        pytest.skip("not a Debian machine")
    names = _apt_list("requirements-apt.txt") + _apt_list("requirements-apt-dev.txt")
    proc = subprocess.run(["apt-cache", "policy", *names], capture_output=True, text=True)
    unknown = [n for n in names if f"\n{n}:" not in "\n" + proc.stdout or
               re.search(rf"^{re.escape(n)}:\n\s+Installed: \(none\)\n\s+Candidate: \(none\)", proc.stdout, re.M)]
    assert unknown == []
