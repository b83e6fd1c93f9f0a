"""Escapes through the runtime's own processes (the CVE-2019-5736 class): whatever pycontain
puts into a container's namespaces before the user program's execve must be out of reach
from inside: no /proc/PID/exe, /proc/PID/fd or /proc/PID/mem of a host binary."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

import pycontain
from tests.busybox import make_busybox_root

# Scans /proc as fast as it can for the given seconds and writes one line per finding:
#   FOREIGN pid what target   something of a process not started from the container's root
#                             (its exe is not busybox or the probe) could be read or opened
#   SEEN n                    how many distinct short-lived busybox processes it saw (the
#                             probe is fast enough to see what `exec` starts)
PROBE_C = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int ours(const char *link) {
    return strstr(link, "busybox") != NULL || strstr(link, "probe") != NULL;
}

/* After something of pid was read: was it still a process we may not look at (its exe link
   refused), and not one that has exec'd busybox or exited meanwhile? */
static int still_foreign(int pid) {
    char p[64], link[4096];
    snprintf(p, sizeof p, "/proc/%d/exe", pid);
    ssize_t n = readlink(p, link, sizeof link - 1);
    if (n > 0) { link[n] = 0; return !ours(link); }
    return errno == EACCES;
}

int main(int argc, char **argv) {
    double secs = atof(argv[1]);
    FILE *out = fopen(argv[2], "w");
    struct timespec t0, t;
    static int seen[1 << 16];
    int nseen = 0, sh = getppid(), me = getpid();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fprintf(out, "START\n");
    fflush(out);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 > secs) break;
        DIR *d = opendir("/proc");
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            int pid = atoi(e->d_name);
            if (pid <= 1 || pid == me || pid == sh) continue;
            char p[64], link[4096] = "";
            snprintf(p, sizeof p, "/proc/%d/exe", pid);
            ssize_t n = readlink(p, link, sizeof link - 1);
            if (n > 0) {
                link[n] = 0;
                if (ours(link)) {
                    if (pid < (1 << 16) && !seen[pid]) { seen[pid] = 1; nseen++; }
                    continue;
                }
                fprintf(out, "FOREIGN %d exe %s\n", pid, link);
            }
            int fd = open(p, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                if (still_foreign(pid)) fprintf(out, "FOREIGN %d open-exe %s\n", pid, link);
                close(fd);
            }
            snprintf(p, sizeof p, "/proc/%d/mem", pid);
            fd = open(p, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                if (still_foreign(pid)) fprintf(out, "FOREIGN %d mem %s\n", pid, link);
                close(fd);
            }
            for (int i = 0; i < 4; i++) {  /* an fd followed: reads what it points to */
                char q[80], target[4096];
                snprintf(q, sizeof q, "/proc/%d/fd/%d", pid, i);
                if (readlink(q, target, sizeof target - 1) > 0 && still_foreign(pid))
                    fprintf(out, "FOREIGN %d fd %s\n", pid, link);
            }
        }
        closedir(d);
    }
    fprintf(out, "SEEN %d\n", nseen);
    fclose(out);
    return 0;
}
"""


@pytest.fixture
def probe_root(tmp_path) -> str:  # type: ignore[no-untyped-def]
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    root = str(tmp_path / "rootfs")
    make_busybox_root(root)
    src = tmp_path / "probe.c"
    src.write_text(PROBE_C)
    subprocess.run([cc, "-O2", "-static", "-o", os.path.join(root, "bin", "probe"), str(src)],
                   check=True)
    return root


def _findings(path: str) -> list:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                lines = f.read().splitlines()
            if lines and lines[-1].startswith("SEEN"):
                return lines
        time.sleep(0.05)
    raise AssertionError("the probe did not finish")


def test_exec_puts_nothing_readable_into_the_container(rt, probe_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """While `exec` runs commands, a process in the container tries /proc/PID/exe, mem and fd
    of every other process: the runtime's own process (a host interpreter until it execs the
    command) must never be reachable."""
    out = tmp_path / "out"
    out.mkdir()
    c = pycontain.start(["/bin/sh", "-c", "/bin/probe 4 /out/result; sleep 30"],
                        rootfs=probe_root, volumes=[f"{out}:/out"], name="probe", **rt.kw())
    try:
        while not (out / "result").exists():
            time.sleep(0.01)
        n = 60
        for _ in range(n):  # ~10 ms each, well inside the probe's 4 s
            assert c.exec(["/bin/true"]).exit_code == 0
        lines = _findings(str(out / "result"))
    finally:
        c.remove(force=True)
    assert [x for x in lines if x.startswith("FOREIGN")] == []
    seen = int(lines[-1].split()[1])
    assert seen >= n // 4, (seen, n)  # the probe does see what exec starts


def test_the_init_is_not_readable(rt, probe_root) -> None:  # type: ignore[no-untyped-def]
    """PID 1 (the C init inside the launching interpreter) is out of reach as well."""
    r = pycontain.run(["/bin/sh", "-c", "readlink /proc/1/exe; cat /proc/1/environ; "
                       "readlink /proc/1/fd/1; echo done"], rootfs=probe_root, capture_output=True,
                      **rt.kw())
    assert r.stdout.decode().split() == ["done"], r.stdout
    assert r.stderr.decode().count("Permission denied") >= 1, r.stderr
