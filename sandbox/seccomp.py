"""The sandbox's seccomp profile.

Based on the system calls Docker's default profile refuses, written as a deny list
over an allow default so that what the lessons need (mount, umount2, unshare,
setns, pivot_root, the new mount API) stays allowed: the user namespace already
confines what CAP_SYS_ADMIN may do with them. io_uring is refused outright: much of
the kernel's recent privilege-escalation history lives there.
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

ARCHITECTURES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def seccomp_profile() -> dict:
    """The OCI `linux.seccomp` section."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHITECTURES,
        "syscalls": [
            {"names": sorted(DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        ],
    }
