"""cffi builder (out-of-line API mode) for pycontain.runtime._sys_native: the syscalls the
runtime needs.

Everything here is a thin wrapper returning -1 and leaving errno set on failure; _sys.py turns
that into OSError subclasses whose message names the call. The two larger helpers are
``pyc_drop_caps`` (bounding set + capset in one go) and ``pyc_exec`` (exec the workload, or become
a minimal init that forks it, reaps every child and forwards signals), both written in C so that
nothing Python runs between the last privileged step and execve.

Build alone (for development): ``python3 pycontain/runtime/_sys_build.py`` from the repository
root.
"""

import os

from cffi import FFI

CDEF = """
#define CLONE_NEWNS ...
#define CLONE_NEWUTS ...
#define CLONE_NEWIPC ...
#define CLONE_NEWNET ...
#define CLONE_NEWPID ...
#define CLONE_NEWCGROUP ...
#define CLONE_NEWUSER ...

#define MS_RDONLY ...
#define MS_NOSUID ...
#define MS_NODEV ...
#define MS_NOEXEC ...
#define MS_SYNCHRONOUS ...
#define MS_REMOUNT ...
#define MS_MANDLOCK ...
#define MS_DIRSYNC ...
#define MS_NOATIME ...
#define MS_NODIRATIME ...
#define MS_BIND ...
#define MS_MOVE ...
#define MS_REC ...
#define MS_SILENT ...
#define MS_UNBINDABLE ...
#define MS_PRIVATE ...
#define MS_SLAVE ...
#define MS_SHARED ...
#define MS_RELATIME ...
#define MS_STRICTATIME ...
#define MS_LAZYTIME ...

#define MNT_DETACH ...
#define MNT_FORCE ...

#define PR_SET_NO_NEW_PRIVS ...
#define PR_SET_CHILD_SUBREAPER ...
#define PR_SET_PDEATHSIG ...
#define PR_CAPBSET_DROP ...
#define PR_SET_NAME ...
#define PR_SET_DUMPABLE ...
#define PR_GET_DUMPABLE ...

#define S_IFCHR ...
#define S_IFBLK ...

int unshare(int flags);
int setns(int fd, int nstype);
int mount(const char *source, const char *target, const char *fstype,
          unsigned long flags, const void *data);
int umount2(const char *target, int flags);
int sethostname(const char *name, size_t len);
int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);
int mknod(const char *path, unsigned int mode, unsigned long long dev);

int pyc_pivot_root(const char *new_root, const char *put_old);
int pyc_mount_overlay(const char *const lowers[], int nlowers, const char *upper,
                      const char *work, const char *target, int userxattr);
unsigned long long pyc_makedev(unsigned int major, unsigned int minor);
int pyc_lo_up(void);
int pyc_cap_last(void);
int pyc_drop_caps(uint64_t bounding, uint64_t effective, uint64_t permitted,
                  uint64_t inheritable);
int pyc_cloexec_from(int lowfd);
int pyc_close_from(int lowfd);
long pyc_clone_parent(void);
int pyc_open_tree(const char *path, int recursive);
int pyc_move_mount(int fd, const char *target);
int pyc_seccomp_load_bpf(const char *prog, size_t len, unsigned int flags);
int pyc_exec(const char *path, char *const argv[], char *const envp[], int errfd, int as_init,
             int keep_fds);
"""

SOURCE = r"""
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* Install a classic-BPF seccomp filter (struct sock_filter[] as exported by libseccomp) with
   seccomp(SECCOMP_SET_MODE_FILTER, flags). Needs no_new_privs or CAP_SYS_ADMIN. */
struct pyc_sock_filter { uint16_t code; uint8_t jt; uint8_t jf; uint32_t k; };
struct pyc_sock_fprog { unsigned short len; struct pyc_sock_filter *filter; };

static int pyc_seccomp_load_bpf(const char *prog, size_t len, unsigned int flags)
{
    struct pyc_sock_fprog fprog;
    if (len == 0 || len % sizeof(struct pyc_sock_filter) != 0 ||
        len / sizeof(struct pyc_sock_filter) > 0xffff) {
        errno = EINVAL;
        return -1;
    }
    fprog.len = (unsigned short)(len / sizeof(struct pyc_sock_filter));
    fprog.filter = (struct pyc_sock_filter *)prog;
    return (int)syscall(SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, flags, &fprog);
}

/* fork(), except that the child's parent is the caller's parent (CLONE_PARENT), as runc's
   nsexec does for the container's init: the process that unshared the user and pid
   namespaces forks the container's PID 1 as a sibling, so that the launcher waits for it
   directly. Only called from a single-threaded child (no locks can be held by other threads);
   returns 0 in the child, its pid in the caller, -1 with errno on failure. */
static long pyc_clone_parent(void)
{
    return syscall(SYS_clone, (unsigned long)(CLONE_PARENT | SIGCHLD), 0UL, 0UL, 0UL, 0UL);
}

static int pyc_pivot_root(const char *new_root, const char *put_old)
{
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

/* overlayfs through the new mount API (fsopen/fsconfig/fsmount/move_mount), each lower layer
   added with "lowerdir+" (Linux 6.8): no page-size limit on the option string, so an image
   may have as many layers as overlayfs stacks (500). Returns -1 with errno set; ENOSYS or
   EINVAL from "lowerdir+" mean an older kernel (the caller falls back to mount(2)). */
#ifndef FSCONFIG_SET_STRING
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#define FSMOUNT_CLOEXEC 0x00000001
#endif
/* A detached copy of the mount tree at path (open_tree OPEN_TREE_CLONE, recursive for
   rbind), to be attached later with pyc_move_mount, possibly in another mount namespace. */
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
static int pyc_open_tree(const char *path, int recursive)
{
#ifdef SYS_open_tree
    return (int)syscall(SYS_open_tree, AT_FDCWD, path,
                        OPEN_TREE_CLONE | O_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
#else
    errno = ENOSYS;
    return -1;
#endif
}

static int pyc_move_mount(int fd, const char *target)
{
#ifdef SYS_move_mount
    return (int)syscall(SYS_move_mount, fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
#else
    errno = ENOSYS;
    return -1;
#endif
}

static int pyc_mount_overlay(const char *const lowers[], int nlowers, const char *upper,
                             const char *work, const char *target, int userxattr)
{
#if defined(SYS_fsopen) && defined(SYS_fsconfig) && defined(SYS_fsmount) && defined(SYS_move_mount)
    int fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
    if (fs < 0)
        return -1;
    int err = 0, mnt = -1;
    for (int i = 0; i < nlowers && !err; i++)
        if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "lowerdir+", lowers[i], 0) < 0)
            err = errno;
    if (!err && syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0)
        err = errno;
    if (!err && syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "workdir", work, 0) < 0)
        err = errno;
    if (!err && userxattr &&
        syscall(SYS_fsconfig, fs, 0 /* FSCONFIG_SET_FLAG */, "userxattr", NULL, 0) < 0)
        err = errno;
    if (!err && syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        err = errno;
    if (!err && (mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0)) < 0)
        err = errno;
    if (!err && syscall(SYS_move_mount, mnt, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        err = errno;
    if (mnt >= 0)
        close(mnt);
    close(fs);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
#else
    (void)lowers; (void)nlowers; (void)upper; (void)work; (void)target;
    errno = ENOSYS;
    return -1;
#endif
}

static unsigned long long pyc_makedev(unsigned int major, unsigned int minor)
{
    return (unsigned long long)makedev(major, minor);
}

/* Bring the loopback interface up in the current network namespace. */
static int pyc_lo_up(void)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        goto fail;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        goto fail;
    close(fd);
    return 0;
fail:
    {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
}

static int pyc_cap_last(void)
{
    int last = 40;
    char buf[16];
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n > 0) {
            buf[n] = 0;
            last = atoi(buf);
        }
        close(fd);
    }
    return last;
}

/* Drop every capability not in `bounding` from the bounding set, clear the ambient set, then set
   effective/permitted/inheritable with capset(2). Needs CAP_SETPCAP until the end. */
static int pyc_drop_caps(uint64_t bounding, uint64_t effective, uint64_t permitted,
                         uint64_t inheritable)
{
    int last = pyc_cap_last();
    for (int c = 0; c <= last && c < 64; c++) {
        if (bounding & (1ULL << c))
            continue;
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
            return -1;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[2];
    memset(&hdr, 0, sizeof hdr);
    memset(data, 0, sizeof data);
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    hdr.pid = 0;
    data[0].effective = (uint32_t)effective;
    data[1].effective = (uint32_t)(effective >> 32);
    data[0].permitted = (uint32_t)permitted;
    data[1].permitted = (uint32_t)(permitted >> 32);
    data[0].inheritable = (uint32_t)inheritable;
    data[1].inheritable = (uint32_t)(inheritable >> 32);
    return (int)syscall(SYS_capset, &hdr, data);
}

/* Mark every fd >= lowfd close-on-exec. */
static int pyc_cloexec_from(int lowfd)
{
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return 0;
    /* Old kernel: walk the fd table. */
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (int fd = lowfd; fd < max; fd++) {
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC))
            fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    }
    return 0;
}

/* Close every fd >= lowfd. */
static int pyc_close_from(int lowfd)
{
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0U) == 0)
        return 0;
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (int fd = lowfd; fd < max; fd++)
        close(fd);
    return 0;
}

static void pyc_report(int errfd, int code, const char *what, const char *path, int err)
{
    char buf[512];
    int n;
    if (errfd < 0)
        return;
    n = snprintf(buf, sizeof buf, "%d\t%s %s: %s", code, what, path, strerror(err));
    if (n > 0) {
        ssize_t w = write(errfd, buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1));
        (void)w;
    }
}

/* Make this process's memory and environment unreadable from inside the container (it is a
   fork of the caller, whose argv/environ/heap may hold host secrets): non-dumpable, and argv and
   environ overwritten in place so /proc/1/cmdline reads "pycontain-init". */
static void pyc_hide_self(void)
{
    char buf[4096];
    unsigned long v[64];
    int fd, nf = 0;
    ssize_t n;
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return;
    p += 2;
    /* v[0] is field 3 (state, not a number: skipped as 0). */
    while (*p && nf < 64) {
        v[nf++] = strtoul(p, &p, 10);
        while (*p && *p != ' ')
            p++;
        while (*p == ' ')
            p++;
    }
    if (nf < 50)
        return;
    unsigned long arg_start = v[45], arg_end = v[46], env_start = v[47], env_end = v[48];
    if (arg_end > arg_start && arg_end - arg_start < (1UL << 24)) {
        memset((void *)arg_start, 0, arg_end - arg_start);
        const char title[] = "pycontain-init";
        if (arg_end - arg_start > sizeof title)
            memcpy((void *)arg_start, title, sizeof title);
    }
    if (env_end > env_start && env_end - env_start < (1UL << 24))
        memset((void *)env_start, 0, env_end - env_start);
}

static void pyc_reset_signals(const sigset_t *mask)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        sigaction(s, &sa, NULL);
    sigprocmask(SIG_SETMASK, mask, NULL);
}

static void pyc_execve(const char *path, char *const argv[], char *const envp[], int errfd)
{
    execve(path, argv, envp);
    int e = errno;
    pyc_report(errfd, (e == ENOENT || e == ENOTDIR) ? 127 : 126, "exec", path, e);
    _exit((e == ENOENT || e == ENOTDIR) ? 127 : 126);
}

/* Run the workload. Never returns on success.
   as_init == 0: execve in place (the workload becomes this process).
   keep_fds: fds 3 .. 3+keep_fds-1 stay open across the exec (the rest are close-on-exec).
   as_init != 0: become a minimal init: fork the workload, reap every child (orphans included),
   forward every catchable signal to the workload and exit with its status (128+signal if it was
   killed) as soon as it ends. Returns -1 (errno set) only if fork fails. */
static int pyc_exec(const char *path, char *const argv[], char *const envp[], int errfd,
                    int as_init, int keep_fds)
{
    sigset_t all, empty;
    sigfillset(&all);
    sigemptyset(&empty);
    /* fds 3 .. 3+keep_fds-1 are passed on (runc's --preserve-fds); they must be inheritable. */
    pyc_cloexec_from(3 + (keep_fds > 0 ? keep_fds : 0));
    if (!as_init) {
        pyc_reset_signals(&empty);
        pyc_execve(path, argv, envp, errfd);
    }
    sigprocmask(SIG_BLOCK, &all, NULL);
    /* vfork: no copy of the (Python-sized) page tables; the child only resets its signal state
       (its own copy of the handlers and mask) and execs or _exits. */
    pid_t child = vfork();
    if (child < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &empty, NULL);
        errno = e;
        return -1;
    }
    if (child == 0) {
        pyc_reset_signals(&empty);
        pyc_execve(path, argv, envp, errfd);
    }
    /* init: keep only stdio; drop Python's descriptors and the error pipe. */
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
    }
    prctl(PR_SET_NAME, (unsigned long)"pycontain-init", 0, 0, 0);
    pyc_hide_self();
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&all, &si);
        if (sig < 0)
            continue;
        if (sig == SIGCHLD) {
            int status;
            pid_t p;
            while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
                if (p != child)
                    continue;
                if (WIFEXITED(status))
                    _exit(WEXITSTATUS(status));
                if (WIFSIGNALED(status))
                    _exit(128 + WTERMSIG(status));
            }
            continue;
        }
        kill(child, sig);
    }
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "pycontain.runtime._sys_native",
    SOURCE,
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)


def build_inplace() -> str:
    """Compile in a temporary directory and copy the extension next to this file."""
    import glob
    import shutil
    import tempfile

    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        ffibuilder.compile(tmpdir=tmp, verbose=False)
        (built,) = glob.glob(os.path.join(tmp, "pycontain", "runtime", "_sys_native*.so"))
        target = os.path.join(here, os.path.basename(built))
        shutil.copyfile(built, target + ".tmp")
        os.replace(target + ".tmp", target)
    return target


if __name__ == "__main__":
    print(build_inplace())
