"""Fixtures for the pycontain-oci tests.

* ``oci``: drives the installed ``pycontain-oci`` command with a private ``--root``; after the
  test, checks that no container state, cgroup or mount is left behind (and removes whatever is).
  The test process is made a child subreaper, as conmon is, so container processes become its
  children once ``create`` exits: ``oci.reap(pid)`` returns their exit status like an engine's.
* ``bundle``: a fresh bundle (busybox-static rootfs + the ``runc spec`` config, or our
  ``pycontain-oci spec`` one when runc is absent) whose config the test edits with ``bundle.edit``.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from tests.busybox import make_busybox_root
from tests.reap import reap_all

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IS_ROOT = os.geteuid() == 0
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
RUNC = shutil.which("runc")
CGROUP_PARENT = "pycontain-oci-test"


def _oci_bin() -> Optional[str]:
    """The command under test: $PYCONTAIN_OCI if set (e.g. the installed console script),
    else a launcher for *this* tree's pycontain.oci.cli: the script ``make build`` installs
    (pycontain/launcher.py: -I -S, fixed paths), bound to this tree rather than to wherever the
    shared editable install currently points."""
    if os.environ.get("PYCONTAIN_OCI"):
        return os.environ["PYCONTAIN_OCI"]
    import hashlib
    import tempfile

    tag = hashlib.sha1(ROOT_DIR.encode()).hexdigest()[:10]
    d = os.path.join(tempfile.gettempdir(), f"pycontain-oci-launcher-{tag}")
    path = os.path.join(d, "pycontain-oci")
    from pycontain import launcher

    os.makedirs(d, exist_ok=True)
    launcher.write_script(path, "pycontain.oci.cli", [ROOT_DIR, *launcher.paths()])
    return path


OCI_BIN = _oci_bin()

pytestmark = [pytest.mark.root]


def make_rootfs(root: str) -> None:
    make_busybox_root(root, files={
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        "etc/group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"})


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed")
    root = str(tmp_path_factory.mktemp("oci-rootfs") / "rootfs")
    make_rootfs(root)
    return root


def cgroup_dirs() -> List[str]:
    """Container cgroup directories under the tests' cgroup parent, in every hierarchy."""
    return sorted(glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}/*/")
                  + glob.glob(f"/sys/fs/cgroup/{CGROUP_PARENT}/*/"))


class Bundle:
    def __init__(self, path: str, rootfs_template: str, oci: Oci) -> None:
        self.path = path
        self.rootfs = os.path.join(path, "rootfs")
        shutil.copytree(rootfs_template, self.rootfs, symlinks=True)
        if RUNC:
            subprocess.run([RUNC, "spec"], cwd=path, check=True)
        else:
            oci.run("spec", "--bundle", path, check=0)
        def defaults(c: Dict[str, Any]) -> None:
            c["process"]["terminal"] = False
            c["root"]["readonly"] = False  # runc spec's default is read-only; tests write /tmp

        self.edit(defaults)

    @property
    def config_path(self) -> str:
        return os.path.join(self.path, "config.json")

    def config(self) -> Dict[str, Any]:
        with open(self.config_path) as f:
            return json.load(f)

    def edit(self, fn: Callable[[Dict[str, Any]], Any]) -> Dict[str, Any]:
        cfg = self.config()
        fn(cfg)
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=1)
        return cfg

    def set_args(self, *args: str, cgroup: Optional[str] = None) -> None:
        def fn(c: Dict[str, Any]) -> None:
            c["process"]["args"] = list(args)
            if cgroup is not None:
                c["linux"]["cgroupsPath"] = cgroup

        self.edit(fn)


class Oci:
    """Runs ``pycontain-oci --root <private root> ...``."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.root = os.path.join(base, "state")
        self.log = os.path.join(base, "oci.log")
        self._n = 0
        self.pids: List[int] = []

    def cmd(self, *args: str) -> List[str]:
        assert OCI_BIN is not None
        return [OCI_BIN, "--root", self.root, *args]

    def run(self, *args: str, check: Optional[int] = None, timeout: float = 30,
            input: Optional[bytes] = None, **kw: Any) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.cmd(*args), capture_output=True, timeout=timeout,
                              input=input, **kw)
        if check is not None:
            assert proc.returncode == check, (
                f"pycontain-oci {' '.join(args)} -> {proc.returncode}\n"
                f"stdout: {proc.stdout.decode(errors='replace')}\n"
                f"stderr: {proc.stderr.decode(errors='replace')}")
        return proc

    def state(self, cid: str) -> Dict[str, Any]:
        return json.loads(self.run("state", cid, check=0).stdout)

    def new_id(self, prefix: str = "c") -> str:
        self._n += 1
        return f"{prefix}{os.getpid()}-{self._n}"

    def cgroup(self, cid: str) -> str:
        return f"/{CGROUP_PARENT}/{cid}"

    def create(self, bundle: Bundle, cid: str, *extra: str, check: Optional[int] = 0,
               **kw: Any) -> subprocess.CompletedProcess:
        bundle.edit(lambda c: c["linux"].update(cgroupsPath=self.cgroup(cid)))
        # The container keeps create's stdio: files, not pipes (whose EOF would never come).
        out_path = os.path.join(self.base, f"{cid}.out")
        err_path = os.path.join(self.base, f"{cid}.err")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            raw = subprocess.run(self.cmd("create", "--bundle", bundle.path, *extra, cid),
                                 stdout=out, stderr=err, timeout=30,
                                 stdin=None if "input" in kw else subprocess.DEVNULL, **kw)
        with open(out_path, "rb") as f:
            raw.stdout = f.read()
        with open(err_path, "rb") as f:
            raw.stderr = f.read()
        proc = raw
        if check is not None:
            assert proc.returncode == check, (
                f"pycontain-oci create {cid} -> {proc.returncode}\n"
                f"stderr: {proc.stderr.decode(errors='replace')}")
        if proc.returncode == 0:
            self.pids.append(self.state(cid)["pid"])
        return proc

    def complete(self, bundle: Bundle, *args: str, edit: Optional[Callable] = None,
                 prefix: str = "c") -> Tuple[int, str, str]:
        """create + start + wait + delete; (exit code, stdout, stderr) of the container."""
        bundle.set_args(*args)
        if edit is not None:
            bundle.edit(edit)
        cid = self.new_id(prefix)
        r = self.create(bundle, cid)
        pid = self.state(cid)["pid"]
        self.run("start", cid, check=0)
        code = self.reap(pid)
        self.run("delete", cid, check=0)
        with open(os.path.join(self.base, f"{cid}.out"), "rb") as f:
            out = f.read().decode(errors="replace")
        with open(os.path.join(self.base, f"{cid}.err"), "rb") as f:
            err = f.read().decode(errors="replace")[len(r.stderr):]
        return code, out, err

    def reap(self, pid: int, timeout: float = 10) -> int:
        """Exit code of a container process (we are its subreaper, as conmon would be)."""
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                raise AssertionError(f"process {pid} did not exit within {timeout}s")
            time.sleep(0.01)

    def wait_status(self, cid: str, status: str, timeout: float = 10) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st["status"] == status:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"{cid} never became {status}: {st}")
            time.sleep(0.02)

    def leftovers(self) -> List[str]:
        out = []
        if os.path.isdir(self.root):
            names = [n for n in os.listdir(self.root) if not n.startswith(".")]
            if names:
                out.append(f"state dirs: {names}")
        with open("/proc/self/mountinfo") as f:
            mounts = [line for line in f if self.base in line]
        if mounts:
            out.append(f"mounts: {mounts}")
        return out


@pytest.fixture(scope="session", autouse=True)
def _subreaper() -> Iterator[None]:
    """Be the containers' subreaper (as conmon is); afterwards drop the test cgroup parent."""
    if IS_ROOT:
        from pycontain.runtime import _sys

        _sys.prctl(_sys.PR_SET_CHILD_SUBREAPER, 1)
    yield
    if OCI_BIN and not os.environ.get("PYCONTAIN_OCI"):
        shutil.rmtree(os.path.dirname(OCI_BIN), ignore_errors=True)
    for d in glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}") + \
            glob.glob(f"/sys/fs/cgroup/{CGROUP_PARENT}"):
        try:
            os.rmdir(d)
        except OSError:
            pass


@pytest.fixture
def oci(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oci]:
    if not IS_ROOT:
        pytest.skip("needs root (namespaces, mounts, cgroups)")
    if OCI_BIN is None:
        pytest.skip("pycontain-oci is not installed (make build)")
    base = str(tmp_path_factory.mktemp("oci"))
    o = Oci(base)
    before = set(cgroup_dirs())
    yield o
    problems = o.leftovers()
    new_cgroups = sorted(set(cgroup_dirs()) - before)
    if new_cgroups:
        problems.append(f"cgroups: {new_cgroups}")
    if problems:
        for name in os.listdir(o.root) if os.path.isdir(o.root) else []:
            subprocess.run(o.cmd("delete", "--force", name), capture_output=True)
    for pid in o.pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.01)
    reap_all()
    shutil.rmtree(base, ignore_errors=True)
    assert not problems, "the test left traces behind: " + "; ".join(problems)


@pytest.fixture
def bundle(oci: Oci, rootfs_template: str, tmp_path: Any) -> Bundle:
    return Bundle(str(tmp_path / "bundle"), rootfs_template, oci)


class ConsoleSocket:
    """A --console-socket listener, as conmon provides: receives the pty master (SCM_RIGHTS)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(10)

    def receive(self) -> Any:
        conn, _ = self.sock.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        assert fds, "no file descriptor received on the console socket"
        return msg.decode(), fds[0]

    def close(self) -> None:
        self.sock.close()


def read_until(fd: int, needle: bytes, timeout: float = 10) -> bytes:
    import select

    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the slave side is closed
            break
        if not chunk:
            break
        buf += chunk
    return buf


__all__ = ["Bundle", "ConsoleSocket", "Oci", "read_until", "sys"]
