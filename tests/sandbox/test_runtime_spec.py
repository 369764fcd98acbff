"""The sandbox's OCI spec, seccomp profile and mounts as data: no root, no runc.

Each test pins one layer of docs/security.md, so that a change which weakens it
fails here before any sandbox runs."""
from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.exceptions import SandboxError
from sandbox.runtime import CAPABILITIES, Limits, sandbox_spec
from sandbox.seccomp import CLONE_NEWUSER, seccomp_profile
from sandbox.snapshots import Layout, snapshot_mounts, view_mounts

UID = 100000
DOCKER_DEFAULT_CAPS = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
}


def spec(**limits) -> dict:
    return sandbox_spec(sid="abc123", rootfs=Path("/s/rootfs"), views=Path("/s/lab"), hostname="box", uid=UID,
                        id_count=65536, cgroup_parent="/container-lab/h", limits=Limits(**limits))


class FakeImage:
    diff_ids = ["sha256:" + "a" * 64, "sha256:" + "b" * 64]
    chain_ids = diff_ids
    layer_dirs = [Path("/layers/a/diff"), Path("/layers/b/diff")]
    lower_links = ["l/A", "l/B"]

    def inspect(self) -> dict:
        return {}


def test_every_namespace_is_new_including_user_and_network():
    kinds = {n["type"] for n in spec()["linux"]["namespaces"]}
    assert kinds == {"pid", "ipc", "uts", "mount", "user", "cgroup", "network"}
    assert all("path" not in n for n in spec()["linux"]["namespaces"])  # never joins an existing one


def test_network_true_is_refused_instead_of_sharing_the_hosts():
    with pytest.raises(SandboxError, match="network"):
        spec(network=True)


def test_root_inside_maps_to_an_unprivileged_host_uid():
    linux = spec()["linux"]
    for key in ("uidMappings", "gidMappings"):
        assert linux[key] == [{"containerID": 0, "hostID": UID, "size": 65536}]


def test_capabilities_are_dockers_default_plus_sys_admin_only():
    caps = spec()["process"]["capabilities"]
    assert set(caps) == {"bounding", "effective", "permitted"}  # no inheritable, no ambient
    for kind in caps.values():
        assert set(kind) == DOCKER_DEFAULT_CAPS | {"CAP_SYS_ADMIN"}
    assert set(CAPABILITIES) - DOCKER_DEFAULT_CAPS == {"CAP_SYS_ADMIN"}


def test_no_new_privileges_and_oom_score_first_to_go():
    process = spec()["process"]
    assert process["noNewPrivileges"] is True
    assert process["oomScoreAdj"] == 1000
    assert {"type": "RLIMIT_CORE", "hard": 0, "soft": 0} in process["rlimits"]


def test_seccomp_refuses_modules_io_uring_bpf_keyring_and_friends_with_eperm():
    profile = seccomp_profile()
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    eperm = next(r for r in profile["syscalls"] if r.get("errnoRet") == 1 and "args" not in r)
    for call in ("init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
                 "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open",
                 "userfaultfd", "keyctl", "add_key", "request_key", "open_by_handle_at", "reboot", "swapon",
                 "process_vm_writev", "acct", "settimeofday", "clock_settime"):
        assert call in eperm["names"], call
    assert eperm["action"] == "SCMP_ACT_ERRNO"


def test_seccomp_refuses_a_nested_user_namespace():
    rules = seccomp_profile()["syscalls"]
    masked = next(r for r in rules if "args" in r)
    assert set(masked["names"]) == {"clone", "unshare"} and masked["errnoRet"] == 1
    assert masked["args"] == [{"index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER,
                               "op": "SCMP_CMP_MASKED_EQ"}]
    enosys = next(r for r in rules if r.get("errnoRet") == 38)
    assert {"clone3", "inotify_init", "inotify_init1"} <= set(enosys["names"])
    # What the lessons need stays allowed.
    refused = {n for r in rules for n in r["names"] if "args" not in r}
    assert not refused & {"mount", "umount2", "pivot_root", "setns", "unshare", "fsopen", "move_mount"}


def test_masked_and_read_only_paths_cover_dockers():
    linux = spec()["linux"]
    assert {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/acpi", "/proc/scsi",
            "/sys/firmware"} <= set(linux["maskedPaths"])
    assert {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"} <= set(linux["readonlyPaths"])


def test_mounts_are_read_only_or_nosuid_where_it_matters():
    mounts = {m["destination"]: m for m in spec()["mounts"]}
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(mounts["/sys"]["options"])
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(mounts["/sys/fs/cgroup"]["options"])
    assert {"nosuid", "nodev", "noexec"} <= set(mounts["/proc"]["options"])
    assert {"rbind", "ro", "nosuid", "nodev"} <= set(mounts["/var/lib/lab"]["options"])
    assert mounts["/var/lib/lab"]["source"] == "/s/lab"


def test_devpts_is_a_new_instance_capped_at_limits_ptys():
    devpts = next(m for m in spec(ptys=7)["mounts"] if m["type"] == "devpts")
    assert {"newinstance", "max=7", "nosuid", "noexec"} <= set(devpts["options"])


def test_cgroup_limits_come_from_limits_and_allow_no_devices_or_swap():
    res = spec(memory_mb=64, pids=50, cpu=0.25)["linux"]["resources"]
    assert res["memory"] == {"limit": 64 * 2**20, "swap": 64 * 2**20, "kernelTCP": 16 * 2**20}
    assert res["pids"] == {"limit": 50}
    assert res["cpu"] == {"period": 100000, "quota": 25000}
    assert res["devices"] == [{"allow": False, "access": "rwm"}]
    assert spec()["linux"]["cgroupsPath"] == "/container-lab/h/abc123"


def test_upper_tmpfs_caps_bytes_and_inodes():
    layout = Layout(Path("/s"))
    tmpfs, overlay = snapshot_mounts(image=FakeImage(), layout=layout, layers_root=Path("/layers"), disk_mb=8, uid=UID)
    assert tmpfs.type == "tmpfs" and tmpfs.target == layout.scratch
    assert {"size=8m", "nr_inodes=2048", "nosuid", "nodev", "mode=0700", f"uid={UID}"} <= set(tmpfs.options)
    assert overlay.type == "overlay" and f"upperdir={layout.upper}" in overlay.options


def test_every_view_is_a_read_only_nosuid_nodev_bind():
    mounts = view_mounts(image=FakeImage(), layout=Layout(Path("/s")))
    assert len(mounts) == 2 + 1 + 1 + 1 + 1  # views dir, two layers, the upper, the init, the trusted shell
    for m in mounts:
        assert {"bind", "ro", "nosuid", "nodev"} <= set(m.options), m
        assert m.flags_and_data()[1] == ""  # nothing that mount(2) would ignore


def test_home_and_tmp_are_volumes_on_the_sessions_capped_tmpfs():
    from sandbox.snapshots import Layout

    layout = Layout(Path("/s"))
    assert layout.volumes() == [("/root", Path("/s/rw/home")), ("/tmp", Path("/s/rw/tmp"))]
    assert all(src.parent == layout.scratch for _, src in layout.volumes())  # one disk cap for all
    config = sandbox_spec(sid="abc123", rootfs=Path("/s/rootfs"), views=Path("/s/lab"), hostname="box", uid=UID,
                          id_count=65536, cgroup_parent="/lab", limits=Limits(), volumes=layout.volumes())
    binds = {m["destination"]: m for m in config["mounts"] if m["type"] == "bind"}
    assert binds["/root"]["source"] == "/s/rw/home" and binds["/tmp"]["source"] == "/s/rw/tmp"
    assert "nosuid" in binds["/root"]["options"] and "ro" not in binds["/root"]["options"]


def test_kernel_counters_charged_to_the_owner_are_bounded_per_sandbox():
    s = spec()
    rlimits = {r["type"]: (r["soft"], r["hard"]) for r in s["process"]["rlimits"]}
    assert rlimits["RLIMIT_SIGPENDING"] == (256, 256) and rlimits["RLIMIT_MSGQUEUE"] == (0, 0)
    assert rlimits["RLIMIT_NOFILE"][1] <= 4096
    (hook,) = s["hooks"]["createRuntime"]
    script = hook["args"][-1]
    assert "nsenter --user" in script and "echo 0 > /proc/sys/user/max_user_namespaces" in script
    assert "echo 64 > /proc/sys/user/max_mnt_namespaces" in script
    enosys = next(r for r in seccomp_profile()["syscalls"] if r.get("errnoRet") == 38)
    assert "io_setup" in enosys["names"]


def test_socket_buffers_get_a_limit_of_their_own_before_the_process_starts():
    s = spec(memory_mb=128)
    assert s["linux"]["resources"]["memory"]["kernelTCP"] == 32 * 2**20
    script = s["hooks"]["createRuntime"][0]["args"][-1]
    assert f"echo {32 * 2**20} > /sys/fs/cgroup/memory/" in script and "memory.kmem.tcp.limit_in_bytes" in script
    assert spec(memory_mb=512)["linux"]["resources"]["memory"]["kernelTCP"] == 32 * 2**20  # at most 32 MiB


def test_the_console_has_the_pages_geometry_before_the_shell_starts():
    base = dict(sid="abc123", rootfs=Path("/s/rootfs"), views=Path("/s/lab"), hostname="box", uid=UID,
                id_count=65536, cgroup_parent="/lab", limits=Limits())
    assert sandbox_spec(**base, cols=132, rows=43)["process"]["consoleSize"] == {"height": 43, "width": 132}
    assert sandbox_spec(**base)["process"]["consoleSize"] == {"height": 24, "width": 80}
    assert sandbox_spec(**base, cols=5000, rows=0)["process"]["consoleSize"] == {"height": 1, "width": 1000}
    assert "consoleSize" not in sandbox_spec(**base, terminal=False)["process"]
