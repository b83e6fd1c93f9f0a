"""Fixtures for the rootless tests: a normal user, this tree readable by it, and helpers that run
``pycontain`` (and Python code using the API) as that user.

The tests run as root (CI's way) and drop to a user made for the session (``useradd``, removed
afterwards with what it owned). The user gets a subordinate id range in /etc/subuid and
/etc/subgid, the files Debian's newuidmap/newgidmap read (they take no other path): a range
already there for it is used, else one that overlaps no other line is added and removed again.
The interpreter is Debian's /usr/bin/python3 (the default one lives under /root, mode 700),
with this tree (pycontain, pyalloc, the built native modules) copied to a world-readable
directory on PYTHONPATH.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest

from tests.busybox import make_busybox_root
from tests.reap import reap_all

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
USER = "pycontain-rl"
SUBID_COUNT = 65536

pytestmark = [pytest.mark.root]


def _ranges(path: str) -> List[List[str]]:
    try:
        with open(path) as f:
            return [line.strip().split(":") for line in f if line.count(":") == 2]
    except FileNotFoundError:
        return []


def _free_start(paths: List[str]) -> int:
    """A subordinate range start overlapping no line of the given files."""
    used = [(int(r[1]), int(r[1]) + int(r[2])) for p in paths for r in _ranges(p)
            if r[1].isdigit() and r[2].isdigit()]
    start = 200000
    while any(a < start + SUBID_COUNT and start < b for a, b in used):
        start += SUBID_COUNT
    return start


class User:
    def __init__(self, name: str, home: str) -> None:
        pw = pwd.getpwnam(name)
        self.name, self.uid, self.gid, self.home = name, pw.pw_uid, pw.pw_gid, home
        self.subuid_start = 0

    def env(self, tree: str, **extra: str) -> Dict[str, str]:
        env = {"HOME": self.home, "USER": self.name, "LOGNAME": self.name,
               "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": tree,
               "XDG_RUNTIME_DIR": os.path.join(self.home, "run"), "LANG": "C.UTF-8"}
        env.update(extra)
        return env


@pytest.fixture(scope="session")
def user() -> Iterator[User]:
    if os.geteuid() != 0:
        pytest.skip("the rootless tests make a user: run them as root")
    if not os.path.exists(PYTHON):
        pytest.skip(f"{PYTHON} (Debian's python3) is needed to run as a normal user")
    home = tempfile.mkdtemp(prefix="pycontain-rl-home-")
    subprocess.run(["userdel", "-r", USER], capture_output=True)
    subprocess.run(["useradd", "-M", "-d", home, "-s", "/bin/sh", USER], check=True,
                   capture_output=True)
    u = User(USER, home)
    os.chown(home, u.uid, u.gid)
    os.chmod(home, 0o700)
    run_dir = os.path.join(home, "run")
    os.mkdir(run_dir, 0o700)
    os.chown(run_dir, u.uid, u.gid)
    added = []
    files = ["/etc/subuid", "/etc/subgid"]
    for path in files:
        mine = [r for r in _ranges(path) if r[0] in (USER, str(u.uid))]
        if mine:
            u.subuid_start = int(mine[0][1])
            continue
        start = _free_start(files)
        with open(path, "a") as f:
            f.write(f"{USER}:{start}:{SUBID_COUNT}\n")
        added.append((path, f"{USER}:{start}:{SUBID_COUNT}"))
        u.subuid_start = start
    yield u
    for path, line in added:
        with open(path) as f:
            lines = [x for x in f.read().splitlines() if x != line]
        with open(path, "w") as f:
            f.write("".join(x + "\n" for x in lines))
    subprocess.run(["pkill", "-KILL", "-u", USER], capture_output=True)
    subprocess.run(["userdel", USER], capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def tree(user: User) -> Iterator[str]:
    """This checkout's packages, readable by the user (pycontain with its native module built,
    pyalloc with libpyalloc.so)."""
    probe = subprocess.run([PYTHON, "-c", "import _cffi_backend"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"{PYTHON} has no cffi backend (Debian: apt-get install "
                    "python3-cffi-backend)")
    d = tempfile.mkdtemp(prefix="pycontain-rl-tree-")
    for pkg in ("pycontain", "pyalloc"):
        shutil.copytree(os.path.join(ROOT_DIR, pkg), os.path.join(d, pkg), symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for dirpath, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            os.chmod(p, os.stat(p).st_mode | 0o444 | (0o111 if os.path.isdir(p) else 0))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def box(user: User, tree: str) -> Iterator[str]:
    """A busybox rootfs tar the user can read, for ``image import``."""
    d = tempfile.mkdtemp(prefix="pycontain-rl-box-")
    os.chmod(d, 0o755)
    root = os.path.join(d, "root")
    make_busybox_root(root, files={
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
        "etc/group": "root:x:0:\nnogroup:x:65534:\n"})
    os.makedirs(os.path.join(root, "home", "app"))
    with open(os.path.join(root, "home", "app", "owned"), "w") as f:
        f.write("app's\n")
    for p in ("home/app", "home/app/owned"):
        os.chown(os.path.join(root, p), 1000, 1000)
    tar = os.path.join(d, "box.tar")
    subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
    os.chmod(tar, 0o644)
    yield tar
    shutil.rmtree(d, ignore_errors=True)


class AsUser:
    """Runs pycontain (or Python) as the test user; checks afterwards that nothing it made is
    left: no container state, upper dir or mount, and no process of the user."""

    def __init__(self, user: User, tree: str) -> None:
        self.user, self.tree = user, tree
        self.state = os.path.join(user.home, "run", "pycontain")
        self.storage = os.path.join(user.home, ".local", "share", "pycontain")

    def run(self, *args: str, env: Optional[Dict[str, str]] = None, timeout: float = 60,
            input: Optional[bytes] = None, **kw: Any) -> subprocess.CompletedProcess:
        return self.python("-m", "pycontain", *args, env=env, timeout=timeout, input=input,
                           **kw)

    def python(self, *args: str, env: Optional[Dict[str, str]] = None, timeout: float = 60,
               input: Optional[bytes] = None, netns: str = "",
               **kw: Any) -> subprocess.CompletedProcess:
        """``python3 ARGS`` as the user; with ``netns``, inside that network namespace (entered
        as root with nsenter, then the user's ids with setpriv)."""
        kw.setdefault("capture_output", True)
        common = dict(env=self.user.env(self.tree, **(env or {})), cwd=self.user.home,
                      timeout=timeout, input=input,
                      stdin=None if input is not None else subprocess.DEVNULL)
        if netns:
            return subprocess.run(["nsenter", f"--net={netns}", "setpriv",
                                   f"--reuid={self.user.uid}", f"--regid={self.user.gid}",
                                   "--clear-groups", PYTHON, *args], **common, **kw)
        return subprocess.run([PYTHON, *args], user=self.user.uid, group=self.user.gid,
                              extra_groups=[], **common, **kw)

    def ok(self, *args: str, **kw: Any) -> str:
        r = self.run(*args, **kw)
        assert r.returncode == 0, (f"pycontain {' '.join(args)} -> {r.returncode}\n"
                                   f"{r.stderr.decode(errors='replace')}")
        return r.stdout.decode()

    def containers(self) -> List[str]:
        d = self.state
        return sorted(n for n in os.listdir(d) if not n.startswith(".")) \
            if os.path.isdir(d) else []

    def leftovers(self) -> List[str]:
        out = []
        if self.containers():
            out.append(f"state: {self.containers()}")
        cdir = os.path.join(self.storage, "containers")
        if os.path.isdir(cdir) and os.listdir(cdir):
            out.append(f"container dirs: {os.listdir(cdir)}")
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if self.user.home in line]
        if mounts:
            out.append(f"mounts: {mounts}")
        deadline = time.monotonic() + 3  # a supervisor may still be writing its record
        while True:
            reap_all()  # supervisors reparented to us when another suite made us subreaper
            procs = subprocess.run(["pgrep", "-a", "-u", str(self.user.uid)],
                                   capture_output=True)
            live = [p for p in procs.stdout.decode().splitlines() if "<defunct>" not in p]
            if not live or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if live:
            out.append(f"processes: {live}")
        return out


@pytest.fixture
def rl(user: User, tree: str) -> Iterator[AsUser]:
    a = AsUser(user, tree)
    yield a
    problems = a.leftovers()
    if problems:
        for name in a.containers():
            a.run("rm", "-f", name)
        subprocess.run(["pkill", "-KILL", "-u", str(user.uid)], capture_output=True)
    assert not problems, "the test left traces behind: " + "; ".join(problems)


@pytest.fixture
def delegated(user: User) -> Iterator[str]:
    """A cgroup v1 subtree delegated to the user (made in each controller's hierarchy and
    chowned, as an administrator would), named for PYCONTAIN_CGROUP_PARENT."""
    name = f"pycontain-rl-{os.getpid()}"
    made = []
    for c in ("memory", "pids", "cpu", "cpuacct", "freezer"):
        root = f"/sys/fs/cgroup/{c}"
        if not os.path.isdir(root) or (not os.path.ismount(root) and c in ("memory", "pids")):
            pytest.skip("needs cgroup v1 memory and pids hierarchies (this machine's kind)")
        if not os.path.ismount(root):
            continue
        d = os.path.join(root, name)
        os.mkdir(d)
        made.append(d)
        for p in [d, *glob.glob(d + "/*")]:
            os.chown(p, user.uid, user.gid)
    yield name
    for d in made:
        left = [e.path for e in os.scandir(d) if e.is_dir()]
        for sub in left:
            try:
                os.rmdir(sub)
            except OSError:
                pass
        os.rmdir(d)
        assert not left, f"cgroups left behind: {left}"
