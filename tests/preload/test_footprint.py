"""Peak RSS of libpyalloc.so against glibc on the random allocation fuzzer
(csrc/tests/fuzz_alloc.c: 2 threads x 1,000,000 operations, 1 B - 4 MiB, every block
pattern-checked), under every policy with thread caches on and off, and in the shared-slots
mode (blocks freed by other threads than the allocating one) under the default configuration.

Targets: peak RSS <= 1.25 x glibc's for best and first (best is the default policy),
<= 3 x for worst and fifo. Every run is inside its own cgroup-v1 memory cgroup capped at
CAP_BYTES, so a runaway footprint is killed there rather than by the machine's OOM killer;
such a run fails with a message saying the cap was hit. Needs root and
/sys/fs/cgroup/memory (otherwise skipped). About 10 s per run on 2 cores, 11 runs.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
from conftest import CONFIG_IDS, CONFIGS, CBuild, config_env, no_pyalloc_noise, plain_env

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1200)]

THREADS = 2
OPS = 1_000_000
SEED = 1
CAP_BYTES = 3 << 30
RUN_TIMEOUT = 300.0
DEFAULT_POLICY = "best"  # PYALLOC_POLICY unset (docs/preload.md)
RSS_TARGET: Dict[str, float] = {"best": 1.25, "first": 1.25, "worst": 3.0, "fifo": 3.0}
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
SUMMARY = re.compile(
    rb"^fuzz: ops=(\d+) threads=(\d+) peak_rss_kb=(\d+) errors=(\d+)$", re.MULTILINE)

_cgroup_seq = itertools.count()


class CgroupUnavailable(Exception):
    pass


class MemCgroup:
    """A fresh memory cgroup (v1) with a hard limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.path = CGROUP_ROOT / f"pyalloc-test-{os.getpid()}-{next(_cgroup_seq)}"

    def create(self) -> None:
        try:
            self.path.mkdir()
        except OSError as exc:
            raise CgroupUnavailable(f"cannot create {self.path}: {exc}") from exc
        try:
            (self.path / "memory.limit_in_bytes").write_text(str(self.limit))
            memsw = self.path / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # no swapping past the cap either
                memsw.write_text(str(self.limit))
            if int((self.path / "memory.limit_in_bytes").read_text()) > self.limit:
                raise OSError(errno.EINVAL, "limit not applied")
        except OSError as exc:
            self.remove()
            raise CgroupUnavailable(f"cannot set the limit of {self.path}: {exc}") from exc

    def enter_self(self) -> None:
        """preexec_fn: moves the child (between fork and exec) into the cgroup."""
        fd = os.open(str(self.path / "cgroup.procs"), os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def stat(self, name: str) -> int:
        return int((self.path / name).read_text())

    def oom_kills(self) -> int:
        for line in (self.path / "memory.oom_control").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        for _ in range(100):  # charges of a just-reaped child can keep it busy a moment
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                time.sleep(0.05)
        self.path.rmdir()


@dataclass
class FuzzRun:
    label: str
    returncode: int
    rss_kb: int  # ru_maxrss of the child, from wait4
    summary: Optional[re.Match]
    stdout: bytes
    stderr: bytes
    seconds: float
    timed_out: bool
    cap_hit: bool
    cgroup_peak_kb: int

    def describe(self) -> str:
        return (f"{self.label}: exit {self.returncode}, peak RSS {self.rss_kb} KB, "
                f"cgroup peak {self.cgroup_peak_kb} KB, {self.seconds:.1f} s")

    def check(self) -> None:
        """The run finished by itself, under the cap, with every fuzzer check holding."""
        err = self.stderr.decode(errors="replace")[-3000:]
        if self.cap_hit:
            pytest.fail(f"{self.describe()}: killed by the {CAP_BYTES >> 20} MiB memory cap of "
                        f"its cgroup (the footprint ran away)\n{err}")
        if self.timed_out:
            pytest.fail(f"{self.describe()}: killed after {RUN_TIMEOUT:.0f} s\n{err}")
        assert self.summary is not None, f"{self.describe()}: no summary line\n{err}"
        errors = int(self.summary.group(4))
        assert errors == 0, f"{self.describe()}: {errors} failed checks (corruption)\n{err}"
        assert self.returncode == 0, f"{self.describe()}\n{err}"
        assert int(self.summary.group(1)) == OPS and int(self.summary.group(2)) == THREADS
        no_pyalloc_noise(self.stderr)


def run_capped(cmd: List[str], env: Dict[str, str], label: str) -> FuzzRun:
    """Runs cmd in a fresh memory cgroup capped at CAP_BYTES; never raises on its failure."""
    cgroup = MemCgroup(CAP_BYTES)
    try:
        cgroup.create()
    except CgroupUnavailable as exc:
        pytest.skip(f"needs a cgroup-v1 memory cgroup to cap the run: {exc}")
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.monotonic()
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, preexec_fn=cgroup.enter_self)
            lock = threading.Lock()
            state = {"exited": False, "timed_out": False}

            def kill() -> None:
                with lock:  # never signals a pid that was already reaped
                    if not state["exited"]:
                        state["timed_out"] = True
                        os.kill(proc.pid, signal.SIGKILL)

            timer = threading.Timer(RUN_TIMEOUT, kill)
            timer.start()
            try:
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            except BaseException:
                kill()
                raise
            finally:
                timer.cancel()
                with lock:
                    state["exited"] = True
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.monotonic() - start
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        oom = cgroup.oom_kills()
        peak = cgroup.stat("memory.max_usage_in_bytes") >> 10
    finally:
        cgroup.remove()
    summary = SUMMARY.search(stdout)
    cap_hit = oom > 0 or (proc.returncode == -signal.SIGKILL and not state["timed_out"]
                          and peak >= (CAP_BYTES >> 10) * 95 // 100)
    res = FuzzRun(label, proc.returncode, usage.ru_maxrss, summary, stdout, stderr, seconds,
                  state["timed_out"], cap_hit, peak)
    print(f"\n{res.describe()}")
    return res


@pytest.fixture(scope="module")
def fuzzer(cbuild: CBuild) -> str:
    return cbuild("fuzz_alloc")


def fuzz_cmd(fuzzer: str, mode: str) -> List[str]:
    return [fuzzer, str(THREADS), str(OPS), str(SEED), mode]


@pytest.fixture(scope="module")
def glibc(fuzzer: str) -> Callable[[str], FuzzRun]:
    """The glibc run of a mode ("own" or "shared"), checked, made once per module."""
    runs: Dict[str, FuzzRun] = {}

    def get(mode: str) -> FuzzRun:
        if mode not in runs:
            res = run_capped(fuzz_cmd(fuzzer, mode), plain_env(), f"glibc {mode}")
            res.check()
            runs[mode] = res
        return runs[mode]

    return get


def check_footprint(res: FuzzRun, base: FuzzRun, policy: str) -> None:
    res.check()
    ratio = res.rss_kb / base.rss_kb
    print(f"{res.label}: {ratio:.2f} x glibc's {base.rss_kb} KB")
    assert ratio <= RSS_TARGET[policy], (
        f"{res.describe()}: peak RSS {ratio:.2f} x glibc's {base.rss_kb} KB, "
        f"target <= {RSS_TARGET[policy]} x")


def test_fuzz_glibc(glibc: Callable[[str], FuzzRun]) -> None:
    """The fuzzer's checks all hold under glibc, in both modes (the baselines)."""
    for mode in ("own", "shared"):
        assert glibc(mode).rss_kb > 0


@pytest.mark.parametrize("policy,tcache", CONFIGS, ids=CONFIG_IDS)
def test_footprint(fuzzer: str, libpyalloc: str, glibc: Callable[[str], FuzzRun], policy: str,
                   tcache: bool) -> None:
    base = glibc("own")
    label = f"pyalloc {policy} {'tcache' if tcache else 'notcache'} own"
    res = run_capped(fuzz_cmd(fuzzer, "own"), config_env(policy, tcache), label)
    check_footprint(res, base, policy)


@pytest.mark.parametrize("tcache", [None, False], ids=["default", "notcache"])
def test_footprint_cross_thread_free(fuzzer: str, libpyalloc: str,
                                     glibc: Callable[[str], FuzzRun],
                                     tcache: Optional[bool]) -> None:
    """Shared slots: most blocks are reallocated or freed by another thread."""
    base = glibc("shared")
    label = f"pyalloc default {'notcache' if tcache is False else 'tcache'} shared"
    res = run_capped(fuzz_cmd(fuzzer, "shared"), config_env(None, tcache), label)
    check_footprint(res, base, DEFAULT_POLICY)
