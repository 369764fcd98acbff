/* A system-call prober for the escape tests, run inside a sandbox as root.
 *
 * No libc (-nostdlib): the binary is a few KiB, so a test copies it in as base64
 * through `runc exec`. Each command makes one raw system call and prints its result:
 * a non-negative return value, or -errno (so "-1" is EPERM, "-3" ESRCH).
 *
 *   probe io_uring          io_uring_setup(1, &params)
 *   probe finit_module      finit_module(open("/bin/busybox"), "", 0)
 *   probe bpf               bpf(BPF_PROG_LOAD, ...) with an empty attr
 *   probe keyctl            keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0)
 *   probe userfaultfd       userfaultfd(0)
 *   probe perf              perf_event_open(&attr, 0, -1, -1, 0)
 *   probe kill PID          kill(PID, 0)
 *   probe ptrace PID        ptrace(PTRACE_ATTACH, PID)
 *   probe unshare_user      unshare(CLONE_NEWUSER)
 *   probe clone3            clone3(NULL, 0)
 *   probe inotify N         hold up to N inotify instances; print how many it got
 *   probe ptys N PATH       hold up to N PTYs opened from PATH (a ptmx); print how many it got
 *   probe aio N             io_setup(N, &ctx), held
 *   probe mq N              hold up to N POSIX message queues (8 x 1 KiB); print how many it got
 *   probe sigq N            queue up to N blocked real-time signals to itself; print how many it got
 *   probe scm N             put up to N fds in flight over a unix socket (SCM_RIGHTS); print how many
 *   probe pipes N           hold up to N pipes grown to 1 MiB; print how many reached it
 *   probe tcp N             N loopback TCP connections whose peer never reads, each written
 *                           to until it blocks; print the KiB queued
 *   (the holding commands print their count, then pause until killed)
 */
#define SYS_open 2
#define SYS_write 1
#define SYS_pause 34
#define SYS_kill 62
#define SYS_ptrace 101
#define SYS_exit_group 231
#define SYS_inotify_init1 294
#define SYS_perf_event_open 298
#define SYS_finit_module 313
#define SYS_bpf 321
#define SYS_userfaultfd 323
#define SYS_keyctl 250
#define SYS_io_uring_setup 425
#define SYS_unshare 272
#define SYS_clone3 435
#define SYS_io_setup 206
#define SYS_mq_open 240
#define SYS_rt_sigprocmask 14
#define SYS_rt_sigqueueinfo 129
#define SYS_getpid 39
#define SYS_socketpair 53
#define SYS_sendmsg 46
#define SYS_pipe2 293
#define SYS_fcntl 72
#define SYS_socket 41
#define SYS_connect 42
#define SYS_accept 43
#define SYS_sendto 44
#define SYS_bind 49
#define SYS_listen 50

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static int eq(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

static long num(const char *s) {
    long v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
    return v;
}

static void say(long v) {
    char buf[24];
    int i = sizeof buf - 1, neg = v < 0;
    unsigned long u = neg ? -v : v;
    buf[i] = '\n';
    do buf[--i] = '0' + u % 10; while (u /= 10);
    if (neg) buf[--i] = '-';
    sys6(SYS_write, 1, (long)(buf + i), sizeof buf - i, 0, 0, 0);
}

static long zeros[64]; /* io_uring_params, bpf_attr, perf_event_attr: all zero is enough */

static long hold(long got) {
    say(got);
    sys6(SYS_pause, 0, 0, 0, 0, 0, 0);
    return got;
}

struct iov { void *base; unsigned long len; };
struct msghdr_ { void *name; int namelen; struct iov *iov; unsigned long iovlen; void *control; unsigned long controllen; int flags; };

static long scm(long n) {
    int sv[2];
    if (sys6(SYS_socketpair, 1, 1, 0, (long)sv, 0, 0) < 0) return -1;  /* AF_UNIX, SOCK_STREAM */
    /* cmsghdr: len (8), level (4), type (4), then 253 ints */
    static long ctl[2 + 127];
    int *fds = (int *)(ctl + 2);
    ctl[0] = 16 + 253 * 4;
    ((int *)ctl)[2] = 1;  /* SOL_SOCKET */
    ((int *)ctl)[3] = 1;  /* SCM_RIGHTS */
    for (int i = 0; i < 253; i++) fds[i] = sv[0];
    char byte = 'x';
    struct iov v = {&byte, 1};
    struct msghdr_ m = {0, 0, &v, 1, ctl, 16 + 253 * 4 + 4, 0};
    long got = 0;
    while (got < n) {
        long r = sys6(SYS_sendmsg, sv[0], (long)&m, 0x40, 0, 0, 0);  /* MSG_DONTWAIT */
        if (r < 0) { if (!got) return r; break; }
        got += 253;
    }
    return hold(got);
}

static char block[65536];

static long tcp(long n) {
    /* struct sockaddr_in for 127.0.0.1:7777 */
    unsigned short sa[8] = {2, 0x611e, 0x007f, 0x0100, 0, 0, 0, 0};
    long srv = sys6(SYS_socket, 2, 1, 0, 0, 0, 0);
    int one = 1;
    sys6(54, srv, 1, 2, (long)&one, 4, 0);  /* SO_REUSEADDR */
    long r = sys6(SYS_bind, srv, (long)sa, 16, 0, 0, 0);
    if (r < 0) return r;
    sys6(SYS_listen, srv, 4096, 0, 0, 0, 0);
    long kib = 0;
    for (long i = 0; i < n; i++) {
        long c = sys6(SYS_socket, 2, 1 | 04000, 0, 0, 0, 0);  /* SOCK_NONBLOCK */
        if (c < 0) break;
        sys6(SYS_connect, c, (long)sa, 16, 0, 0, 0);
        if (sys6(SYS_accept, srv, 0, 0, 0, 0, 0) < 0) break;  /* accepted, never read */
        long w;
        while ((w = sys6(SYS_sendto, c, (long)block, sizeof block, 0x40, 0, 0)) > 0) kib += w / 1024;
    }
    return hold(kib);
}

static long run(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "";
    long arg = argc > 2 ? num(argv[2]) : 0;
    if (eq(cmd, "ptys")) {
        long got = 0, r = 0;
        while (got < arg && (r = sys6(SYS_open, (long)argv[3], 0x102, 0, 0, 0, 0)) >= 0) got++;  /* O_RDWR|O_NOCTTY */
        if (!got) return r;
        return hold(got);
    }
    if (eq(cmd, "aio")) {
        long ctx = 0, r = sys6(SYS_io_setup, arg, (long)&ctx, 0, 0, 0, 0);
        return r < 0 ? r : hold(arg);
    }
    if (eq(cmd, "mq")) {
        long attr[8] = {0, 8, 1024, 0, 0, 0, 0, 0};
        char name[8] = {'q', 0, 0, 0, 0, 0, 0, 0};
        long got = 0, r = 0;
        while (got < arg) {
            name[1] = 'a' + got % 26; name[2] = 'a' + (got / 26) % 26; name[3] = 'a' + (got / 676) % 26;
            if ((r = sys6(SYS_mq_open, (long)name, 0102, 0600, (long)attr, 0, 0)) < 0) break;  /* O_RDWR|O_CREAT */
            got++;
        }
        if (!got) return r;
        return hold(got);
    }
    if (eq(cmd, "sigq")) {
        unsigned long set = 1UL << (34 - 1);  /* SIGRTMIN */
        sys6(SYS_rt_sigprocmask, 0, (long)&set, 0, 8, 0, 0);
        long info[16] = {0};
        ((int *)info)[0] = 34;
        ((int *)info)[2] = -1;  /* SI_QUEUE: counted against RLIMIT_SIGPENDING */
        long pid = sys6(SYS_getpid, 0, 0, 0, 0, 0, 0), got = 0, r = 0;
        while (got < arg && (r = sys6(SYS_rt_sigqueueinfo, pid, 34, (long)info, 0, 0, 0)) >= 0) got++;
        if (!got) return r;
        return hold(got);
    }
    if (eq(cmd, "scm")) return scm(arg);
    if (eq(cmd, "tcp")) return tcp(arg);
    if (eq(cmd, "pipes")) {
        long got = 0;
        for (long i = 0; i < arg; i++) {
            int p[2];
            if (sys6(SYS_pipe2, (long)p, 0, 0, 0, 0, 0) < 0) break;
            if (sys6(SYS_fcntl, p[1], 1031, 1 << 20, 0, 0, 0) >= (1 << 20)) got++;  /* F_SETPIPE_SZ */
        }
        return hold(got);
    }
    if (eq(cmd, "io_uring")) return sys6(SYS_io_uring_setup, 1, (long)zeros, 0, 0, 0, 0);
    if (eq(cmd, "finit_module")) {
        long fd = sys6(SYS_open, (long)"/bin/busybox", 0, 0, 0, 0, 0);
        return sys6(SYS_finit_module, fd, (long)"", 0, 0, 0, 0);
    }
    if (eq(cmd, "bpf")) return sys6(SYS_bpf, 5, (long)zeros, 128, 0, 0, 0);
    if (eq(cmd, "keyctl")) return sys6(SYS_keyctl, 0, -4, 0, 0, 0, 0);
    if (eq(cmd, "userfaultfd")) return sys6(SYS_userfaultfd, 0, 0, 0, 0, 0, 0);
    if (eq(cmd, "perf")) {
        zeros[0] = 128L << 32; /* type 0 (hardware), size 128 */
        return sys6(SYS_perf_event_open, (long)zeros, 0, -1, -1, 0, 0);
    }
    if (eq(cmd, "unshare_user")) return sys6(SYS_unshare, 0x10000000, 0, 0, 0, 0, 0);
    if (eq(cmd, "clone3")) return sys6(SYS_clone3, 0, 0, 0, 0, 0, 0);
    if (eq(cmd, "kill")) return sys6(SYS_kill, arg, 0, 0, 0, 0, 0);
    if (eq(cmd, "ptrace")) return sys6(SYS_ptrace, 16, arg, 0, 0, 0, 0);
    if (eq(cmd, "inotify")) {
        long got = 0;
        while (got < arg && sys6(SYS_inotify_init1, 0, 0, 0, 0, 0, 0) >= 0) got++;
        say(got);
        sys6(SYS_pause, 0, 0, 0, 0, 0, 0);
        return got;
    }
    return -22;
}

long cmain(long *sp) {
    long r = run((int)sp[0], (char **)(sp + 1));
    say(r);
    sys6(SYS_exit_group, 0, 0, 0, 0, 0, 0);
    return 0;
}

__attribute__((naked, noreturn)) void _start(void) {
    __asm__("mov %rsp, %rdi\n\tand $-16, %rsp\n\tcall cmain\n\thlt");
}
