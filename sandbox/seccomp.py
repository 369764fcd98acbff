"""The sandbox's seccomp profile.

Based on the system calls Docker's default profile refuses, written as a deny list
over an allow default so that what the lessons need (mount, umount2, unshare,
setns, pivot_root, the new mount API) stays allowed: the user namespace already
confines what CAP_SYS_ADMIN may do with them. io_uring is refused outright: much of
the kernel's recent privilege-escalation history lives there.

A second user namespace is refused (clone/unshare with CLONE_NEWUSER; clone3, whose
flags seccomp cannot read, answers ENOSYS so libc falls back to clone): inside one,
sandbox root would hold every capability again — CAP_NET_ADMIN over nf_tables is the
usual road to a kernel exploit. inotify answers ENOSYS (programs fall back to
polling): its instance count is charged to host root, whose 128 a sandbox could
take all of (see docs/security.md). Linux AIO (`io_setup`) answers ENOSYS too: its
reservations count against the host-wide `fs.aio-max-nr`, which one sandbox could
take whole; programs fall back to threads.
"""
from __future__ import annotations

# Each refused with EPERM, as Docker's profile does.
DENIED = [
    # Kernel modules and kexec: never from a sandbox.
    "create_module", "delete_module", "finit_module", "init_module", "query_module",
    "get_kernel_syms", "kexec_file_load", "kexec_load",
    # The system-wide clock, accounting, swap, reboot, quotas.
    "acct", "clock_adjtime", "clock_settime", "settimeofday", "stime", "adjtimex",
    "reboot", "swapon", "swapoff", "quotactl", "quotactl_fd",
    # The kernel keyring is not namespaced.
    "add_key", "keyctl", "request_key",
    # Raw I/O ports, old ABI and debugging entry points.
    "ioperm", "iopl", "vm86", "vm86old", "uselib", "ustat", "sysfs", "_sysctl",
    "nfsservctl", "lookup_dcookie", "kcmp",
    # Observing or changing memory of other processes and the NUMA policy.
    "process_vm_readv", "process_vm_writev", "move_pages", "mbind", "set_mempolicy",
    "get_mempolicy", "set_mempolicy_home_node",
    # Attack surface with a long CVE history and no use in the lessons.
    "bpf", "perf_event_open", "userfaultfd", "open_by_handle_at", "name_to_handle_at",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "fanotify_init", "lsm_get_self_attr", "lsm_set_self_attr",
]

# ENOSYS: "not here", so callers use their fallback instead of failing.
NOT_IMPLEMENTED = ["clone3", "inotify_init", "inotify_init1", "io_setup"]
CLONE_NEWUSER = 0x10000000
EPERM = 1
ENOSYS = 38

ARCHITECTURES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def seccomp_profile() -> dict:
    """The OCI `linux.seccomp` section."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHITECTURES,
        "syscalls": [
            {"names": sorted(DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
            {"names": sorted(NOT_IMPLEMENTED), "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            # The flags are the first argument of both on the architectures above.
            {"names": ["clone", "unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
             "args": [{"index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER, "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    }
