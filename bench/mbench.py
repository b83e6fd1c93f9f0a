#!/usr/bin/env python3
"""Runs the programs of the public allocator suite mimalloc-bench (daanx/mimalloc-bench) under
glibc, libpyalloc.so and the peer allocators, and reports medians and ratios.

    python3 bench/mbench.py --suite /work/mb/out [--rounds 5] [--threads 2]
        [--alloc glibc,pyalloc,jemalloc,mimalloc,tcmalloc]
        [--variant 'pyalloc-notc:PYALLOC_TCACHE=0'] [--programs cfrac,barnes,...]
        [--json out.json] [--markdown out.md] [--timeout 600] [--mem-limit 6G]
    python3 bench/mbench.py --suite /work/mb/out --security [--json sec.json] [--markdown sec.md]
    python3 bench/mbench.py --suite /work/mb/out --list       # programs and their command lines

The suite's build directory may also come from the environment variable MIMALLOC_BENCH.
Nothing of the suite is kept in this repository: build it elsewhere, e.g. in /work/mb.

Building the suite (Debian 12, gcc 12, cmake; what was used here):

    mkdir -p /work/mb && cd /work/mb
    git clone https://github.com/daanx/mimalloc-bench src && cp -r src/bench bench
    #   or, from a local mirror:  git --git-dir=MIRROR archive HEAD bench | tar -x
    #   (used here: commit ce5784f, "Upgrade to rpmalloc 2.0.1")
    # sh6bench/sh8bench are not in the suite's tree: its build-bench-env.sh downloads them from
    # microquill.com and patches them.  Without them cmake stops ("No SOURCES given to target"),
    # so make their block conditional on the patched sources being there:
    sed -i 's|^if(NOT APPLE)$|if(EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/shbench/sh6bench-new.c")|' \\
        bench/CMakeLists.txt
    cmake -B out -S bench -DCMAKE_BUILD_TYPE=Release
    cmake --build out --parallel 2
    apt-get install -y libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4   # the peers
    make build          # in this repository, for pyalloc/libpyalloc.so

That gives the programs in /work/mb/out and the security tests in /work/mb/out/security.
The bench source directory (for espresso's and barnes' inputs) is read from out/CMakeCache.txt
(or --bench-src).

Programs and arguments: those the suite's bench.sh runs for its default test set (`allt`) plus
larson, cache-thrash and malloc-large, with N = --threads (default: the number of CPUs); the
`...N` variants that the suite runs only when N > 1 are skipped for N = 1.  `--list` prints
them.  mleak10/mleak100 exist but run only when named in --programs.  Programs whose binary
was not built are reported as "not built" and skipped.

Measurement.  Each run is launched through a tiny C launcher compiled at start-up from the
source below (cc is needed anyway to build the suite): it forks the program, sets LD_PRELOAD
and the variant's variables in that child only, waits with wait4 and reports the child's wait
status, ru_maxrss, user/system time and its CLOCK_MONOTONIC wall time.  A child forked
directly from Python would start with Python's own resident set as its ru_maxrss floor (about
10 MiB), which is larger than the peak of several of these programs.  (--no-launcher forks from
Python and takes ru_maxrss from os.wait4; its RSS figures then include that floor.)  Every run
is inside a memory cgroup (v1) /sys/fs/cgroup/memory/pyalloc-mbench-<pid> with
memory.limit_in_bytes and memory.memsw.limit_in_bytes = --mem-limit; a run past --timeout is
killed with all processes of the cgroup; a run whose cgroup recorded an OOM kill is shown as
"oom".  The cgroup is removed at the end, also on error, SIGTERM or Ctrl-C.  Allocator tuning
variables from the caller's environment (LD_PRELOAD, GLIBC_TUNABLES, PYALLOC_*, MIMALLOC_*,
MALLOC_*, TCMALLOC_*) are removed so that only the variants set them.

Rounds are interleaved: round 1 runs every program under every allocator, then round 2, and so
on; the allocator order is rotated by one each round.  Libraries outside /usr (such as
libpyalloc.so, which may be rebuilt while a run goes on) are copied at the start and the copy
is preloaded, so one report is one build; their sha256 is in the JSON.  Figures are medians
over the rounds that succeeded.  The primary time is the wall time; CPU time (user + system) is
reported too.  larson, rptest, xmalloc-test and glibc-thread run for a fixed duration and print
a rate; for them the report also gives the suite's "relative time" derived from that rate
(larson: its printed relative time; rptest: 2e6 / memory ops per CPU second; xmalloc-test: its
printed rtime; glibc-thread: 1e9 / iterations), and the "suite-style" geometric means use it in
place of the wall time.  A cell is a failure when any round exited non-zero, was killed by a
signal, timed out or hit the memory cap; failed cells are shown with the reason and left out of
the geometric means.  Ratios: to glibc, and to the best peer (the fastest or smallest of
jemalloc/mimalloc/tcmalloc; for a peer, the best of the other peers).

Security (--security).  Each executable regular file in <suite>/security is run once per
allocator (--security-runs K: K times, rounds outermost, each case then labelled by its most
frequent outcome) with a 1 s timeout, stdout captured.  The suite's rule, followed here: a test
prints NOT_CAUGHT (flushed) after performing its bad operation, so a case is CAUGHT when
NOT_CAUGHT does not appear in its stdout, whatever stopped it (a signal such as SIGABRT or
SIGSEGV, a non-zero exit, or the timeout; the suite marks these "[+]" and "[timeout]").  When
NOT_CAUGHT appears the case is NOT caught, even if the program then crashed ("late crash") or
hung ("late timeout").  The suite builds 37 C tests in three sizes (8 B, 4 KiB, 256 KiB) and 5
C++ tests: 116 cases.  zero_on_malloc_large touches 1 GiB and may hit the 1 s timeout on a
busy machine, which the suite counts as caught.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import glob
import hashlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CGROUP_ROOT = "/sys/fs/cgroup/memory"
PEERS = ("jemalloc", "mimalloc", "tcmalloc")
SHORT = {"jemalloc": "je", "mimalloc": "mi", "tcmalloc": "tc", "glibc": "sys", "pyalloc": "pa"}
DEFAULT_ALLOCS = "glibc,pyalloc,jemalloc,mimalloc,tcmalloc"
PEER_LIBS = {
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
    "mimalloc": ("libmimalloc.so.2", "libmimalloc.so.2.0", "libmimalloc.so"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc_minimal.so"),
}
STRIPPED_ENV = ("LD_PRELOAD", "GLIBC_TUNABLES")
STRIPPED_PREFIXES = ("PYALLOC_", "MIMALLOC_", "MALLOC_", "TCMALLOC_")
OUTPUT_KEEP = 16384  # characters of a run's stdout kept in the JSON (head and tail)

LAUNCHER_C = r"""
/* mbench launcher:  launcher REPORT_FD [VAR=VALUE ...] -- PROGRAM [ARGS ...]
 * Forks PROGRAM with the variables set in the child only, waits for it with wait4 and writes
 * "wait-status maxrss-KiB user-us system-us wall-ns" to REPORT_FD.  Being small, its child's
 * ru_maxrss is the program's own. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long usec(struct timeval tv) { return (long long)tv.tv_sec * 1000000LL + tv.tv_usec; }

int main(int argc, char **argv)
{
    if (argc < 4)
        return 120;
    int fd = atoi(argv[1]);
    int sep = 2;
    while (sep < argc && strcmp(argv[sep], "--") != 0)
        sep++;
    if (sep + 1 >= argc)
        return 121;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0)
        return 122;
    if (pid == 0) {
        close(fd);
        for (int i = 2; i < sep; i++)
            putenv(argv[i]);
        execv(argv[sep + 1], argv + sep + 1);
        perror(argv[sep + 1]);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR)
            return 123;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long wall = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    dprintf(fd, "%d %ld %lld %lld %lld\n", status, ru.ru_maxrss, usec(ru.ru_utime),
            usec(ru.ru_stime), wall);
    return 0;
}
"""


# ----------------------------------------------------------------------------------------------
# programs


@dataclasses.dataclass(frozen=True)
class Program:
    """One benchmark as the suite runs it.  In args, {n} is --threads, {n2} twice that, {n16}
    --threads capped at 16 and {src} the suite's bench source directory."""

    name: str
    exe: str
    args: Tuple[str, ...] = ()
    stdin: Optional[str] = None  # relative to the bench source directory
    multi: bool = False  # the suite runs it only with more than one thread
    rate: Optional[str] = None  # key of RATE_PARSERS: the program runs for a fixed time
    default: bool = True

    def argv(self, suite: str, src: str, threads: int) -> List[str]:
        subst = {"n": str(threads), "n2": str(2 * threads), "n16": str(min(threads, 16)),
                 "src": src}
        return [os.path.join(suite, self.exe)] + [a.format(**subst) for a in self.args]


LARSON_ARGS = ("5", "8", "1000", "5000", "100", "4141", "{n}")
CACHE_ARGS = ("1000", "1", "2000000", "{n}")
PROGRAMS: Tuple[Program, ...] = (
    Program("cfrac", "cfrac", ("17545186520507317056371138836327483792789528",)),
    Program("espresso", "espresso", ("{src}/espresso/largest.espresso",)),
    Program("barnes", "barnes", stdin="barnes/input"),
    Program("larsonN", "larson", LARSON_ARGS, rate="larson"),
    Program("larsonN-sized", "larson-sized", LARSON_ARGS, rate="larson"),
    Program("mstressN", "mstress", ("{n}", "50", "25")),
    Program("rptestN", "rptest", ("{n}", "0", "1", "2", "500", "1000", "100", "8", "16000"),
            rate="rptest"),
    Program("xmalloc-testN", "xmalloc-test", ("-w", "{n}", "-t", "5", "-s", "64"),
            rate="xmalloc"),
    Program("cache-scratch1", "cache-scratch", ("1", *CACHE_ARGS)),
    Program("cache-scratchN", "cache-scratch", ("{n}", *CACHE_ARGS), multi=True),
    Program("cache-thrash1", "cache-thrash", ("1", *CACHE_ARGS)),
    Program("cache-thrashN", "cache-thrash", ("{n}", *CACHE_ARGS), multi=True),
    Program("glibc-simple", "glibc-simple"),
    Program("glibc-thread", "glibc-thread", ("{n}",), rate="glibc-thread"),
    Program("alloc-test1", "alloc-test", ("1",)),
    Program("alloc-testN", "alloc-test", ("{n16}",), multi=True),
    Program("sh6benchN", "sh6bench", ("{n2}",)),
    Program("sh8benchN", "sh8bench", ("{n2}",)),
    Program("malloc-large", "malloc-large"),
    Program("mleak10", "mleak", ("5",), default=False),
    Program("mleak100", "mleak", ("50",), default=False),
)


def _first_float(pattern: str, text: str) -> Optional[float]:
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else None


def _rate_larson(out: str) -> Tuple[Optional[float], Optional[float]]:
    return (_first_float(r"Throughput\s*=\s*([0-9.]+)", out),
            _first_float(r"relative time:\s*([0-9.]+)", out))


def _rate_rptest(out: str) -> Tuple[Optional[float], Optional[float]]:
    ops = _first_float(r"\.([0-9]+) memory ops", out)
    return ops, (2e6 / ops if ops else None)


def _rate_xmalloc(out: str) -> Tuple[Optional[float], Optional[float]]:
    mfree = _first_float(r"free/sec:\s*([0-9.]+)", out)
    return (mfree * 1e6 if mfree is not None else None), _first_float(r"rtime:\s*([0-9.]+)", out)


def _rate_glibc_thread(out: str) -> Tuple[Optional[float], Optional[float]]:
    iters = _first_float(r"^\s*([0-9.]+)\s+iterations", out)
    return iters, (1e9 / iters if iters else None)


# (rate, suite relative time in seconds) from a program's stdout
RATE_PARSERS: Dict[str, Callable[[str], Tuple[Optional[float], Optional[float]]]] = {
    "larson": _rate_larson,
    "rptest": _rate_rptest,
    "xmalloc": _rate_xmalloc,
    "glibc-thread": _rate_glibc_thread,
}


# ----------------------------------------------------------------------------------------------
# allocators


@dataclasses.dataclass
class Allocator:
    name: str
    base: str  # glibc, pyalloc, jemalloc ... (a variant's base)
    lib: Optional[str]  # None: the C library's malloc
    env: Dict[str, str]  # set for the program only (LD_PRELOAD and the variant's variables)
    snapshot: Optional[str] = None  # the copy of lib that the runs preload (see snapshot_libs)


def snapshot_libs(allocs: List[Allocator], workdir: str) -> None:
    """Copies every library outside /usr (libpyalloc.so, --lib ones) into workdir and preloads
    the copy, so that a rebuild during the run (others may run `make build`) cannot mix two
    builds in one report.  The sha256 of each copy goes into the report."""
    copies: Dict[str, str] = {}
    for a in allocs:
        if not a.lib or a.lib.startswith("/usr/"):
            continue
        if a.lib not in copies:
            d = os.path.join(workdir, "lib", str(len(copies)))
            os.makedirs(d)
            copies[a.lib] = shutil.copy2(a.lib, os.path.join(d, os.path.basename(a.lib)))
        a.snapshot = copies[a.lib]
        a.env["LD_PRELOAD"] = a.snapshot


def find_peer_lib(name: str) -> Optional[str]:
    dirs = [*sorted(glob.glob("/usr/lib/*-linux-gnu")), "/usr/lib64", "/usr/lib",
            "/usr/local/lib"]
    for d in dirs:
        for file in PEER_LIBS[name]:
            path = os.path.join(d, file)
            if os.path.isfile(path):
                return os.path.realpath(path)
    return None


def pyalloc_lib() -> str:
    return os.environ.get("PYALLOC_LIB") or os.path.join(REPO, "pyalloc", "libpyalloc.so")


def parse_kv(items: str, what: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for item in filter(None, (s.strip() for s in items.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SystemExit(f"mbench: {what}: expected VAR=VALUE, got {item!r}")
        out[key] = value
    return out


def build_allocators(names: Sequence[str], variants: Sequence[str],
                     libs: Dict[str, str]) -> List[Allocator]:
    def make(name: str, base: str) -> Allocator:
        if base in libs:
            lib: Optional[str] = os.path.abspath(libs[base])
        elif base == "glibc":
            lib = None
        elif base == "pyalloc":
            lib = pyalloc_lib()
        elif base in PEER_LIBS:
            lib = find_peer_lib(base)
            if lib is None:
                raise SystemExit(f"mbench: no library for {base} (apt-get install "
                                 "libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4, or --lib)")
        else:
            raise SystemExit(f"mbench: unknown allocator {base!r} (give its path with --lib "
                             f"{base}=PATH)")
        if lib is not None and not os.path.isfile(lib):
            raise SystemExit(f"mbench: {name}: {lib} not found" +
                             (" (run `make build`)" if base == "pyalloc" else ""))
        return Allocator(name, base, lib, {"LD_PRELOAD": lib} if lib else {})

    allocs = [make(n, n) for n in names]
    known = set(names) | set(libs) | {"glibc", "pyalloc", *PEERS}
    for spec in variants:
        name, colon, kvs = spec.partition(":")
        base = ""
        if "@" in name:
            name, _, base = name.partition("@")
        else:
            prefixes = [k for k in known if name.startswith(k + "-")]
            base = max(prefixes, key=len) if prefixes else ""
        if not colon or not name or not base:
            raise SystemExit(f"mbench: --variant {spec!r}: expected NAME:VAR=VAL[,VAR=VAL] "
                             "with NAME = BASE-something (or NAME@BASE:...)")
        a = make(name, base)
        a.env.update(parse_kv(kvs, f"--variant {spec}"))
        allocs.append(a)
    seen = set()
    for a in allocs:
        if a.name in seen:
            raise SystemExit(f"mbench: allocator {a.name} given twice")
        seen.add(a.name)
    return allocs


def file_sha256(path: Optional[str]) -> Optional[str]:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def package_of(path: Optional[str]) -> Optional[str]:
    """'name version' of the Debian package that ships `path`, when dpkg knows it."""
    if not path or not shutil.which("dpkg-query"):
        return None
    try:
        cands = {path, os.path.realpath(path)}
        for p in list(cands):  # dpkg records /usr/lib paths; a merged /lib may be the real one
            if p.startswith("/lib/"):
                cands.add("/usr" + p)
        for p in cands:
            res = subprocess.run(["dpkg-query", "-S", p], capture_output=True, text=True)
            if res.returncode == 0 and res.stdout:
                pkg = res.stdout.split(":")[0].strip()
                ver = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                                     capture_output=True, text=True).stdout.strip()
                return f"{pkg} {ver}"
    except OSError:
        pass
    return None


def git_describe(path: str) -> Optional[str]:
    try:
        rev = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", path, "status", "--porcelain", "-uno"],
                               capture_output=True, text=True).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) if rev else None
    except OSError:
        return None


def clean_env() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in STRIPPED_ENV and not k.startswith(STRIPPED_PREFIXES)}


# ----------------------------------------------------------------------------------------------
# memory cgroup


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)i?[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 6G, 512M)")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


class MemCgroup:
    """A cgroup-v1 memory cgroup that every program runs in (entered from preexec_fn)."""

    def __init__(self, limit: int, root: str = CGROUP_ROOT) -> None:
        self.limit = limit
        self.path = os.path.join(root, f"pyalloc-mbench-{os.getpid()}")
        self.procs = os.path.join(self.path, "cgroup.procs")
        if not os.path.isfile(os.path.join(root, "memory.limit_in_bytes")):
            raise SystemExit(f"mbench: no cgroup-v1 memory controller at {root}; refusing to "
                             "run programs without a memory cap")
        if os.path.isdir(self.path):  # left by an earlier process with the same pid
            self._rmdir()
        try:
            os.mkdir(self.path)
        except OSError as exc:
            raise SystemExit(f"mbench: cannot create {self.path}: {exc} (run as root)") from exc
        try:
            self._write("memory.limit_in_bytes", str(limit))
            if os.path.exists(os.path.join(self.path, "memory.memsw.limit_in_bytes")):
                self._write("memory.memsw.limit_in_bytes", str(limit))
        except BaseException:
            self.remove()
            raise

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def _read(self, name: str) -> str:
        try:
            with open(os.path.join(self.path, name)) as f:
                return f.read()
        except OSError:
            return ""

    def enter(self) -> None:
        """preexec_fn: moves the forked child into the cgroup; no core files."""
        with open(self.procs, "w") as f:
            f.write(str(os.getpid()))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def pids(self) -> List[int]:
        return [int(x) for x in self._read("cgroup.procs").split()]

    def kill_all(self) -> None:
        for _ in range(100):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def reset_peak(self) -> None:
        for name in ("memory.max_usage_in_bytes", "memory.memsw.max_usage_in_bytes"):
            try:
                self._write(name, "0")
            except OSError:
                pass

    def peak_kb(self) -> Optional[int]:
        text = self._read("memory.max_usage_in_bytes").strip()
        return int(text) // 1024 if text else None

    def oom_kills(self) -> int:
        m = re.search(r"^oom_kill (\d+)", self._read("memory.oom_control"), re.MULTILINE)
        return int(m.group(1)) if m else 0

    def failcnt(self) -> int:
        text = self._read("memory.failcnt").strip()
        return int(text) if text else 0

    def _rmdir(self) -> None:
        for _ in range(250):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)
        print(f"mbench: warning: could not remove {self.path}", file=sys.stderr)

    def remove(self) -> None:
        if os.path.isdir(self.path):
            self.kill_all()
            self._rmdir()


# ----------------------------------------------------------------------------------------------
# running one program


@dataclasses.dataclass
class Outcome:
    kind: str  # ok | exit | signal | timeout | oom | error
    code: Optional[int] = None  # exit status
    sig: Optional[str] = None  # signal name

    def text(self) -> str:
        if self.kind == "exit":
            return f"exit {self.code}"
        if self.kind == "signal":
            return str(self.sig)
        return self.kind


def decode_status(status: int) -> Outcome:
    if os.WIFSIGNALED(status):
        num = os.WTERMSIG(status)
        try:
            name = signal.Signals(num).name
        except ValueError:
            name = f"signal {num}"
        return Outcome("signal", sig=name)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    return Outcome("ok" if code == 0 else "exit", code=code)


@dataclasses.dataclass
class RunResult:
    outcome: Outcome
    wall_s: Optional[float]
    maxrss_kb: Optional[int]
    user_s: Optional[float]
    sys_s: Optional[float]
    cgroup_peak_kb: Optional[int]
    stdout: str
    stderr: str


def _read_back(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode("utf-8", "replace")


def build_launcher(workdir: str) -> Optional[str]:
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        return None
    src = os.path.join(workdir, "launcher.c")
    exe = os.path.join(workdir, "launcher")
    with open(src, "w") as f:
        f.write(LAUNCHER_C)
    res = subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True, text=True)
    if res.returncode != 0:
        print(f"mbench: warning: cannot build the launcher: {res.stderr.strip()}",
              file=sys.stderr)
        return None
    return exe


class Runner:
    def __init__(self, cgroup: MemCgroup, launcher: Optional[str], workdir: str,
                 timeout: float) -> None:
        self.cgroup = cgroup
        self.launcher = launcher
        self.workdir = workdir
        self.timeout = timeout
        self.base_env = clean_env()

    def run(self, argv: List[str], env: Dict[str, str], stdin: Optional[str]) -> RunResult:
        self.cgroup.reset_peak()
        ooms = self.cgroup.oom_kills()
        with open(stdin or os.devnull, "rb") as fin, tempfile.TemporaryFile() as fout, \
                tempfile.TemporaryFile() as ferr:
            if self.launcher:
                res = self._run_launched(argv, env, fin, fout, ferr)
            else:
                res = self._run_direct(argv, env, fin, fout, ferr)
            res.stdout, res.stderr = _read_back(fout), _read_back(ferr)
        res.cgroup_peak_kb = self.cgroup.peak_kb()
        if self.cgroup.oom_kills() > ooms:
            res.outcome = Outcome("oom")
        return res

    def _run_launched(self, argv: List[str], env: Dict[str, str], fin: IO[bytes],
                      fout: IO[bytes], ferr: IO[bytes]) -> RunResult:
        assert self.launcher
        rfd, wfd = os.pipe()
        try:
            cmd = [self.launcher, str(wfd), *(f"{k}={v}" for k, v in env.items()), "--", *argv]
            proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, env=self.base_env,
                                    cwd=self.workdir, pass_fds=(wfd,),
                                    preexec_fn=self.cgroup.enter)
            os.close(wfd)
            wfd = -1
            timed_out = False
            try:
                proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                self.cgroup.kill_all()
                proc.wait()
            except BaseException:
                self.cgroup.kill_all()
                proc.wait()
                raise
            self.cgroup.kill_all()  # anything the program left behind
            report = os.read(rfd, 4096).decode().split()
        finally:
            os.close(rfd)
            if wfd >= 0:
                os.close(wfd)
        if timed_out:
            return RunResult(Outcome("timeout"), None, None, None, None, None, "", "")
        if len(report) != 5:
            return RunResult(Outcome("error", code=proc.returncode), None, None, None, None,
                             None, "", "")
        status, rss, user, system, wall = (int(x) for x in report)
        return RunResult(decode_status(status), wall / 1e9, rss, user / 1e6, system / 1e6,
                         None, "", "")

    def _run_direct(self, argv: List[str], env: Dict[str, str], fin: IO[bytes],
                    fout: IO[bytes], ferr: IO[bytes]) -> RunResult:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr,
                                env={**self.base_env, **env}, cwd=self.workdir,
                                preexec_fn=self.cgroup.enter)
        try:
            while True:
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() - t0 > self.timeout:
                    self.cgroup.kill_all()
                    os.wait4(proc.pid, 0)
                    proc.returncode = -9
                    return RunResult(Outcome("timeout"), None, None, None, None, None, "", "")
                time.sleep(0.002)
        except BaseException:
            self.cgroup.kill_all()
            raise
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        self.cgroup.kill_all()
        return RunResult(decode_status(status), wall, ru.ru_maxrss, ru.ru_utime, ru.ru_stime,
                         None, "", "")


def clip(text: str, keep: int = OUTPUT_KEEP) -> str:
    if len(text) <= keep:
        return text
    half = keep // 2
    return text[:half] + f"\n[... {len(text) - keep} characters left out ...]\n" + text[-half:]


# ----------------------------------------------------------------------------------------------
# statistics and report


def geomean(values: Sequence[float]) -> Optional[float]:
    vals = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def fmt_num(x: Optional[float]) -> str:
    if x is None:
        return "-"
    ax = abs(x)
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_ratio(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]],
             numeric: bool = True) -> List[str]:
    """A markdown table; the columns after the first are right-aligned when numeric."""
    align = "---:" if numeric else "---"
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(["---"] + [align] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


METRICS = ("wall_s", "cpu_s", "maxrss_kb", "rtime")


def summarize(runs: List[Dict[str, Any]], programs: List[str],
              allocs: List[str]) -> Dict[str, Any]:
    """Per program and allocator: medians, failures; then ratios to glibc and to best peer."""
    cells: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for prog in programs:
        cells[prog] = {}
        for alloc in allocs:
            rs = [r for r in runs if r["program"] == prog and r["alloc"] == alloc]
            ok = [r for r in rs if r["outcome"]["kind"] == "ok"]
            bad = [r for r in rs if r["outcome"]["kind"] != "ok"]
            cell: Dict[str, Any] = {"runs": len(rs), "failed": len(bad),
                                    "failures": sorted({Outcome(**r["outcome"]).text()
                                                        for r in bad})}
            for key in METRICS:
                vals = [r[key] for r in ok if r.get(key) is not None]
                cell[key] = statistics.median(vals) if vals else None
            cell["score_s"] = cell["rtime"] if cell["rtime"] is not None else cell["wall_s"]
            cells[prog][alloc] = cell
    peers = [p for p in allocs if p in PEERS]
    geo: Dict[str, Dict[str, Any]] = {a: {} for a in allocs}
    for key in (*METRICS, "score_s"):
        for alloc in allocs:
            vs_sys: List[float] = []
            vs_peer: List[float] = []
            for prog in programs:
                cell = cells[prog][alloc]
                mine = cell[key] if not cell["failed"] else None
                sys_cell = cells[prog].get("glibc")
                base = sys_cell[key] if sys_cell and not sys_cell["failed"] else None
                r_sys = mine / base if mine is not None and base else None
                best_name, best = None, None
                for p in peers:
                    pc = cells[prog][p]
                    if p != alloc and not pc["failed"] and pc[key] is not None and \
                            (best is None or pc[key] < best):
                        best_name, best = p, pc[key]
                r_peer = mine / best if mine is not None and best else None
                cell.setdefault("vs_glibc", {})[key] = r_sys
                cell.setdefault("vs_best_peer", {})[key] = r_peer
                cell.setdefault("best_peer", {})[key] = best_name
                if r_sys is not None:
                    vs_sys.append(r_sys)
                if r_peer is not None:
                    vs_peer.append(r_peer)
            geo[alloc][key] = {"vs_glibc": geomean(vs_sys), "vs_glibc_n": len(vs_sys),
                               "vs_best_peer": geomean(vs_peer), "vs_best_peer_n": len(vs_peer)}
    return {"cells": cells, "geomean": geo}


def cell_value(cell: Dict[str, Any], key: str) -> str:
    v = cell[key]
    if key == "maxrss_kb" and v is not None:
        v = v / 1024
    if cell["runs"] and cell["failed"] == cell["runs"]:
        return "**FAIL** " + ", ".join(cell["failures"])
    text = fmt_num(v)
    if cell["failed"]:
        text += f" **FAIL {cell['failed']}/{cell['runs']}** " + ", ".join(cell["failures"])
    return text


def markdown_report(data: Dict[str, Any]) -> str:
    meta = data["meta"]
    allocs: List[str] = list(data["allocators"])
    programs: List[str] = data["programs_run"]
    summary = data["summary"]
    cells, geo = summary["cells"], summary["geomean"]
    has_sys = "glibc" in allocs
    L: List[str] = ["# mimalloc-bench under pyalloc and peers", ""]
    L.append(f"{meta['date']}; {meta['cpu']}, {meta['ncpu']} CPUs, {meta['mem_gib']} GiB; "
             f"kernel {meta['kernel']}; {meta['libc']}; threads N = {meta['threads']}; "
             f"{meta['rounds']} interleaved rounds (medians); pyalloc {meta['pyalloc_git']}.")
    if meta.get("loadavg_before_runs"):
        la = meta["loadavg_before_runs"]
        L.append(f"1-minute load average before the runs: median {la['median']:.2f}, "
                 f"max {la['max']:.2f} (one run at a time adds about 1 to 2).")
    L.append("")
    L.append("Command: `" + meta["command"] + "`")
    L.append("")
    L += md_table(["allocator", "library", "environment"],
                  [[a, (info["package"] or (f"{info['lib']} (sha256 {info['sha256'][:12]})"
                                            if info["lib"] else "(libc)")),
                    " ".join(f"{k}={v}" for k, v in info["env"].items()
                             if k != "LD_PRELOAD") or "-"]
                   for a, info in data["allocators"].items()], numeric=False)
    if data.get("interrupted"):
        L += ["**Interrupted**: the tables cover only the rounds that ran.", ""]
    if data.get("warnings"):
        L += ["Warnings:", ""] + [f"- {w}" for w in data["warnings"]] + [""]

    L += ["## Summary (geometric means of per-program ratios; lower is better)", ""]
    hdr = ["allocator"]
    if has_sys:
        hdr += ["time vs glibc", "suite-style time vs glibc", "RSS vs glibc"]
    hdr += ["time vs best peer", "suite-style time vs best peer", "RSS vs best peer"]
    hdr += ["CPU time vs glibc"] if has_sys else []
    hdr += ["CPU time vs best peer", "failed cells"]
    rows = []
    for a in allocs:
        g = geo[a]
        row = [a]
        if has_sys:
            row += [fmt_ratio(g[k]["vs_glibc"]) for k in ("wall_s", "score_s", "maxrss_kb")]
        row += [fmt_ratio(g[k]["vs_best_peer"]) for k in ("wall_s", "score_s", "maxrss_kb")]
        row += [fmt_ratio(g["cpu_s"][k]) for k in ("vs_glibc", "vs_best_peer") if has_sys or
                k != "vs_glibc"]
        failed = [p for p in programs if cells[p][a]["failed"]]
        row.append(", ".join(failed) if failed else "0")
        rows.append(row)
    L += md_table(hdr, rows)
    rated = ", ".join(p for p in programs if data["programs"][p]["rate"])
    L += ["time = wall time; suite-style time = the same" +
          (f", except for the fixed-duration programs ({rated}), where it is the suite's "
           "rate-derived relative time" if rated else "") +
          "; CPU time = user + system.  Best peer = the best of " + "/".join(PEERS) +
          " other than the allocator itself.  Failed cells are left out of the means.", ""]

    def section(key: str, title: str, only: Optional[List[str]] = None) -> None:
        progs = only if only is not None else programs
        if not progs:
            return
        L.extend([f"## {title}", ""])
        L.extend(md_table(["program", *allocs],
                          [[p, *(cell_value(cells[p][a], key) for a in allocs)]
                           for p in progs]))
        if has_sys:
            L.extend([f"### {title}: ratio to glibc", ""])
            rows = [[p, *(fmt_ratio(cells[p][a]["vs_glibc"][key]) for a in allocs)]
                    for p in progs]
            rows.append(["**geomean**", *(fmt_ratio(geo[a][key]["vs_glibc"]) for a in allocs)])
            L.extend(md_table(["program", *allocs], rows))
        L.extend([f"### {title}: ratio to the best peer (which one: je/mi/tc)", ""])
        rows = []
        for p in progs:
            row = [p]
            for a in allocs:
                c = cells[p][a]
                r = c["vs_best_peer"][key]
                row.append("-" if r is None else
                           f"{r:.2f} {SHORT.get(c['best_peer'][key], c['best_peer'][key])}")
            rows.append(row)
        rows.append(["**geomean**", *(fmt_ratio(geo[a][key]["vs_best_peer"]) for a in allocs)])
        L.extend(md_table(["program", *allocs], rows))

    section("wall_s", "Wall time (s, median)")
    section("cpu_s", "CPU time, user + system (s, median)")
    section("maxrss_kb", "Peak RSS (MiB, median of ru_maxrss)")
    section("rtime", "Suite relative time of the fixed-duration programs (s, median)",
            [p for p in programs if data["programs"][p]["rate"]])

    fails = [(p, a, cells[p][a]) for p in programs for a in allocs if cells[p][a]["failed"]]
    L += ["## Failures", ""]
    if fails:
        L += md_table(["program", "allocator", "failed rounds", "how"],
                      [[p, a, f"{c['failed']}/{c['runs']}", ", ".join(c["failures"])]
                       for p, a, c in fails], numeric=False)
    else:
        L += ["None: every run exited 0.", ""]
    if data["not_built"]:
        L += ["Not built (skipped): " + ", ".join(data["not_built"]) + ".", ""]
    L += ["## Command lines", ""]
    L += [f"- {p}: `{data['programs'][p]['command']}`" for p in programs]
    return "\n".join(L) + "\n"


# ----------------------------------------------------------------------------------------------
# security


SEC_LABELS = {  # label: (caught, mark in the per-case table)
    "caught": (True, "+"),
    "timeout": (True, "T"),
    "not caught": (False, "-"),
    "late crash": (False, "L"),
    "late timeout": (False, "LT"),
}


def classify(stdout: str, outcome: Outcome) -> str:
    if "NOT_CAUGHT" in stdout:
        if outcome.kind == "timeout":
            return "late timeout"
        return "not caught" if outcome.kind == "ok" else "late crash"
    return "timeout" if outcome.kind == "timeout" else "caught"


def security_cases(suite: str) -> List[str]:
    d = os.path.join(suite, "security")
    if not os.path.isdir(d):
        raise SystemExit(f"mbench: {d} does not exist (build the suite's security tests)")
    return sorted(f for f in os.listdir(d)
                  if os.path.isfile(os.path.join(d, f)) and os.access(os.path.join(d, f), os.X_OK))


def run_case(exe: str, env: Dict[str, str], cgroup: MemCgroup, workdir: str,
             timeout: float) -> Tuple[Outcome, str, str]:
    with tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        proc = subprocess.Popen([exe], stdin=subprocess.DEVNULL, stdout=fout, stderr=ferr,
                                env=env, cwd=workdir, preexec_fn=cgroup.enter)
        try:
            proc.wait(timeout=timeout)
            outcome = decode_status(_wait_status(proc.returncode))
        except subprocess.TimeoutExpired:
            cgroup.kill_all()
            proc.wait()
            outcome = Outcome("timeout")
        except BaseException:
            cgroup.kill_all()
            proc.wait()
            raise
        cgroup.kill_all()
        return outcome, _read_back(fout), _read_back(ferr)


def run_security(args: argparse.Namespace, allocs: List[Allocator], cgroup: MemCgroup,
                 workdir: str, meta: Dict[str, Any]) -> Dict[str, Any]:
    """Every case under every allocator, --security-runs times (rounds outermost); a case's
    label is its most frequent one over the runs ("stable" when all runs agree; a tie goes to
    the label listed first in SEC_LABELS, so use an odd number of runs)."""
    cases = security_cases(args.suite)
    base_env = clean_env()
    runs: Dict[str, Dict[str, List[Dict[str, Any]]]] = {c: {a.name: [] for a in allocs}
                                                        for c in cases}
    interrupted = False
    try:
        for rnd in range(1, args.security_runs + 1):
            for i, case in enumerate(cases, 1):
                exe = os.path.join(args.suite, "security", case)
                marks = []
                for a in allocs:
                    outcome, out, err = run_case(exe, {**base_env, **a.env}, cgroup, workdir,
                                                 args.security_timeout)
                    label = classify(out, outcome)
                    runs[case][a.name].append({"label": label,
                                               "outcome": dataclasses.asdict(outcome),
                                               "stdout": clip(out, 300),
                                               "stderr": clip(err, 300)})
                    marks.append(f"{a.name}={SEC_LABELS[label][1]}")
                print(f"[{rnd}/{args.security_runs}] [{i}/{len(cases)}] {case}: "
                      + " ".join(marks), file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
    results: Dict[str, Dict[str, Any]] = {c: {} for c in cases}
    totals: Dict[str, Dict[str, Any]] = {}
    for a in allocs:
        t: Dict[str, Any] = {label: 0 for label in SEC_LABELS}
        per_run = [0] * args.security_runs
        unstable = []
        for case in cases:
            rs = runs[case][a.name]
            if not rs:
                continue
            labels = [r["label"] for r in rs]
            label = max(SEC_LABELS, key=labels.count)  # ties: the earlier label in SEC_LABELS
            results[case][a.name] = {"label": label, "caught": SEC_LABELS[label][0],
                                     "labels": labels, "stable": len(set(labels)) == 1,
                                     "runs": rs}
            t[label] += 1
            for j, lab in enumerate(labels):
                per_run[j] += SEC_LABELS[lab][0]
            if len(set(labels)) > 1:
                unstable.append(case)
        t["caught_total"] = sum(n for label, n in t.items() if SEC_LABELS[label][0])
        t["cases"] = sum(1 for c in cases if a.name in results[c])
        t["caught_per_run"] = per_run
        t["unstable"] = unstable
        totals[a.name] = t
    return {"meta": meta, "interrupted": interrupted, "cases": cases, "totals": totals,
            "results": results,
            "definition": "caught = NOT_CAUGHT absent from stdout (stopped by a signal, a "
                          "non-zero exit or the timeout before printing it), as the suite "
                          "counts ([+] and [timeout]); with several runs, the most frequent "
                          "label of each case"}


def _wait_status(returncode: int) -> int:
    """A Popen return code (negative: signal) back to a wait status for decode_status."""
    return (-returncode) & 0x7F if returncode < 0 else (returncode & 0xFF) << 8


def security_markdown(data: Dict[str, Any]) -> str:
    allocs = list(data["totals"])
    meta = data["meta"]
    nruns = meta["security_runs"]
    L = ["# mimalloc-bench security tests", "",
         f"{meta['date']}; {meta['libc']}; pyalloc {meta['pyalloc_git']}; timeout "
         f"{meta['security_timeout']} s per case; {nruns} run(s) of each case.", "",
         "Caught = the program was stopped before printing NOT_CAUGHT (signal, non-zero exit, "
         "or the timeout: the suite's `[+]` and `[timeout]`).  Marks: + caught, T caught by "
         "timeout, - not caught, L late crash (after NOT_CAUGHT), LT late timeout"
         + ("; with several runs a case shows its most frequent label, and * marks a case "
            "whose runs disagreed." if nruns > 1 else "."), ""]
    if data.get("interrupted"):
        L += ["**Interrupted**: not every case ran.", ""]
    hdr = ["allocator", "caught", "of", *(f"{m} ({label})" for label, (_, m) in SEC_LABELS.items())]
    if nruns > 1:
        hdr += ["caught per run", "unstable cases"]
    rows = []
    for a, t in data["totals"].items():
        row = [a, str(t["caught_total"]), str(t["cases"]), *(str(t[k]) for k in SEC_LABELS)]
        if nruns > 1:
            row += [" ".join(map(str, t["caught_per_run"])), str(len(t["unstable"]))]
        rows.append(row)
    L += md_table(hdr, rows)
    L += ["## Per case", ""]

    def mark(case: str, alloc: str) -> str:
        r = data["results"][case].get(alloc)
        if r is None:
            return "?"
        return SEC_LABELS[r["label"]][1] + ("" if r["stable"] else "*")

    L += md_table(["case", *allocs], [[c, *(mark(c, a) for a in allocs)]
                                      for c in data["cases"]])
    return "\n".join(L) + "\n"


# ----------------------------------------------------------------------------------------------
# main


def bench_source(suite: str, given: Optional[str]) -> str:
    if given:
        return os.path.abspath(given)
    try:
        with open(os.path.join(suite, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CMAKE_HOME_DIRECTORY:"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return os.path.join(os.path.dirname(suite), "bench")


def machine_meta(args: argparse.Namespace, allocs: List[Allocator]) -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "cpu": cpu, "ncpu": os.cpu_count(), "mem_gib": round(mem / (1 << 30)),
        "kernel": platform.release(), "libc": " ".join(platform.libc_ver()),
        "threads": args.threads, "rounds": args.rounds, "suite": args.suite,
        "bench_src": args.bench_src, "timeout_s": args.timeout, "mem_limit": args.mem_limit,
        "security_timeout": args.security_timeout, "security_runs": args.security_runs,
        "pyalloc_git": git_describe(REPO),
        "launcher": not args.no_launcher,
        "lib_sha256": {a.name: file_sha256(a.snapshot or a.lib) for a in allocs if a.lib},
    }


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default=os.environ.get("MIMALLOC_BENCH"),
                    help="the suite's cmake build directory (env MIMALLOC_BENCH)")
    ap.add_argument("--bench-src", help="the suite's bench/ source directory (default: from "
                    "CMakeCache.txt)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="N for the ...N programs (default: CPUs)")
    ap.add_argument("--alloc", default=DEFAULT_ALLOCS,
                    help=f"comma-separated allocators (default {DEFAULT_ALLOCS})")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME:VAR=VAL[,VAR=VAL]: an allocator NAME = BASE-suffix (or "
                    "NAME@BASE) run with these variables; repeatable")
    ap.add_argument("--lib", action="append", default=[],
                    help="NAME=PATH: the library for allocator NAME (new names allowed)")
    ap.add_argument("--programs", help="comma-separated program names (default: all built)")
    ap.add_argument("--json", help="write the raw runs and the summary here")
    ap.add_argument("--markdown", help="write the markdown report here")
    ap.add_argument("--security", action="store_true",
                    help="run the security tests instead of the benchmarks")
    ap.add_argument("--security-timeout", type=float, default=1.0,
                    help="seconds per security case (the suite uses 1)")
    ap.add_argument("--security-runs", type=int, default=1,
                    help="runs of each security case (label: the most frequent)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    ap.add_argument("--mem-limit", default="6G", help="memory cap of the cgroup (default 6G)")
    ap.add_argument("--no-launcher", action="store_true",
                    help="fork programs from Python (RSS then includes Python's own)")
    ap.add_argument("--list", action="store_true", help="print the programs and exit")
    args = ap.parse_args(argv)
    if not args.suite:
        ap.error("--suite (or MIMALLOC_BENCH) is required")
    args.suite = os.path.abspath(args.suite)
    if not os.path.isdir(args.suite):
        ap.error(f"{args.suite} is not a directory")
    if args.rounds < 1 or args.threads < 1 or args.security_runs < 1:
        ap.error("--rounds, --threads and --security-runs must be at least 1")
    args.bench_src = bench_source(args.suite, args.bench_src)
    return args


def select_programs(args: argparse.Namespace) -> Tuple[List[Program], List[str]]:
    by_name = {p.name: p for p in PROGRAMS}
    if args.programs:
        names = [n.strip() for n in args.programs.split(",") if n.strip()]
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise SystemExit(f"mbench: unknown programs {unknown}; known: {list(by_name)}")
        chosen = [by_name[n] for n in names]
    else:
        chosen = [p for p in PROGRAMS if p.default and (args.threads > 1 or not p.multi)]
    built = [p for p in chosen if os.access(os.path.join(args.suite, p.exe), os.X_OK)]
    missing = [p.name for p in chosen if p not in built]
    for p in built:
        if p.stdin and not os.path.isfile(os.path.join(args.bench_src, p.stdin)):
            raise SystemExit(f"mbench: {p.name}: input {p.stdin} not in {args.bench_src} "
                             "(give --bench-src)")
    return built, missing


def loadavg() -> Optional[float]:
    """The 1-minute load average just before a run (other work on the machine adds noise)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def write_text(path: Optional[str], text: str) -> None:
    if path:
        with open(path, "w") as f:
            f.write(text)
        print(f"mbench: wrote {path}", file=sys.stderr)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    programs, not_built = select_programs(args)
    if args.list:
        for p in PROGRAMS:
            state = "" if os.access(os.path.join(args.suite, p.exe), os.X_OK) else "  [not built]"
            extra = " (default)" if p.default else " (on request)"
            stdin = f" < {os.path.join(args.bench_src, p.stdin)}" if p.stdin else ""
            print(f"{p.name:16} {' '.join(p.argv(args.suite, args.bench_src, args.threads))}"
                  f"{stdin}{extra}{state}")
        return 0
    libs = parse_kv(",".join(args.lib), "--lib")
    allocs = build_allocators([a.strip() for a in args.alloc.split(",") if a.strip()],
                              args.variant, libs)
    signal.signal(signal.SIGTERM, _on_sigterm)
    workdir = tempfile.mkdtemp(prefix="mbench-")
    cgroup: Optional[MemCgroup] = None
    try:
        snapshot_libs(allocs, workdir)
        meta = machine_meta(args, allocs)
        cgroup = MemCgroup(parse_size(args.mem_limit))
        if args.security:
            data = run_security(args, allocs, cgroup, workdir, meta)
            data["allocators"] = {a.name: {"lib": a.lib, "env": a.env,
                                           "sha256": meta["lib_sha256"].get(a.name)}
                                  for a in allocs}
            for a, t in data["totals"].items():
                print(f"{a:16} caught {t['caught_total']:3} of {t['cases']}  "
                      + " ".join(f"{k}={t[k]}" for k in SEC_LABELS)
                      + (f"  per run {t['caught_per_run']}, {len(t['unstable'])} unstable"
                         if args.security_runs > 1 else ""))
            write_text(args.json, json.dumps(data, indent=1) + "\n")
            write_text(args.markdown, security_markdown(data))
            return 130 if data["interrupted"] else 0
        launcher = None if args.no_launcher else build_launcher(workdir)
        if launcher is None and not args.no_launcher:
            print("mbench: warning: no launcher; peak RSS includes Python's", file=sys.stderr)
            meta["launcher"] = False
        runner = Runner(cgroup, launcher, workdir, args.timeout)
        data = run_benchmarks(args, allocs, programs, not_built, runner, meta)
    finally:
        if cgroup is not None:
            cgroup.remove()
        shutil.rmtree(workdir, ignore_errors=True)
    text = markdown_report(data)
    write_text(args.json, json.dumps(data, indent=1) + "\n")
    write_text(args.markdown, text)
    if not args.markdown:
        sys.stdout.write(text)
    else:
        summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
        sys.stdout.write("## Summary" + summary)
    return 130 if data["interrupted"] else 0


def run_benchmarks(args: argparse.Namespace, allocs: List[Allocator], programs: List[Program],
                   not_built: List[str], runner: Runner, meta: Dict[str, Any]) -> Dict[str, Any]:
    runs: List[Dict[str, Any]] = []
    interrupted = False
    warnings: List[str] = []
    if not_built:
        print(f"mbench: not built, skipped: {', '.join(not_built)}", file=sys.stderr)
    t_start = time.monotonic()
    try:
        for rnd in range(1, args.rounds + 1):
            t_round = time.monotonic()
            shift = (rnd - 1) % len(allocs)
            order = allocs[shift:] + allocs[:shift]
            for prog in programs:
                argv = prog.argv(args.suite, args.bench_src, args.threads)
                stdin = os.path.join(args.bench_src, prog.stdin) if prog.stdin else None
                for a in order:
                    res = runner.run(argv, a.env, stdin)
                    rate, rtime = (None, None)
                    if prog.rate and res.outcome.kind == "ok":
                        rate, rtime = RATE_PARSERS[prog.rate](res.stdout)
                    runs.append({
                        "round": rnd, "program": prog.name, "alloc": a.name,
                        "outcome": dataclasses.asdict(res.outcome), "wall_s": res.wall_s,
                        "maxrss_kb": res.maxrss_kb, "user_s": res.user_s, "sys_s": res.sys_s,
                        "cpu_s": (res.user_s + res.sys_s
                                  if res.user_s is not None and res.sys_s is not None else None),
                        "loadavg": loadavg(),
                        "cgroup_peak_kb": res.cgroup_peak_kb, "rate": rate, "rtime": rtime,
                        "stdout": clip(res.stdout), "stderr": clip(res.stderr, 2000)})
                    rss = f"{res.maxrss_kb / 1024:.1f} MiB" if res.maxrss_kb else "-"
                    extra = f" rtime {rtime:.3f}" if rtime is not None else ""
                    print(f"[{rnd}/{args.rounds}] {prog.name:15} {a.name:14} "
                          f"{fmt_num(res.wall_s):>6} s {rss:>10} {res.outcome.text()}{extra}",
                          file=sys.stderr)
            print(f"mbench: round {rnd} took {time.monotonic() - t_round:.0f} s",
                  file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        print("mbench: interrupted; reporting the runs so far", file=sys.stderr)
    meta["elapsed_s"] = round(time.monotonic() - t_start, 1)
    loads = sorted(r["loadavg"] for r in runs if r["loadavg"] is not None)
    if loads:
        meta["loadavg_before_runs"] = {"min": loads[0], "median": statistics.median(loads),
                                       "max": loads[-1]}
    for a in allocs:
        if a.lib and file_sha256(a.lib) != meta["lib_sha256"].get(a.name):
            warnings.append(f"{a.lib} ({a.name}) was rebuilt during the run; the runs used "
                            "the copy taken at the start (sha256 in meta.lib_sha256)")
    prog_names = [p.name for p in programs if any(r["program"] == p.name for r in runs)]
    data: Dict[str, Any] = {
        "meta": meta,
        "interrupted": interrupted,
        "warnings": warnings,
        "allocators": {a.name: {"base": a.base, "lib": a.lib, "env": a.env,
                                "sha256": meta["lib_sha256"].get(a.name),
                                "package": package_of(a.lib)} for a in allocs},
        "programs": {p.name: {"command": " ".join(p.argv(args.suite, args.bench_src,
                                                         args.threads)) +
                              (f" < {os.path.join(args.bench_src, p.stdin)}" if p.stdin else ""),
                              "rate": p.rate} for p in programs},
        "programs_run": prog_names,
        "not_built": not_built,
        "runs": runs,
    }
    data["summary"] = summarize(runs, prog_names, [a.name for a in allocs])
    return data


if __name__ == "__main__":
    sys.exit(main())
