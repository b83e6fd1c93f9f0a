"""Fixtures for the pycontain tests.

Every test that runs containers takes the ``rt`` fixture: a private state root and storage root,
and after the test a check that it left no cgroup under the ``pycontain`` subtree, no mount
mentioning its roots, no upper dir and no state (whatever is left is then removed, so that one
failure does not cascade).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Optional, Set

import pytest

from tests.busybox import make_busybox_root

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IS_ROOT = os.geteuid() == 0

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (namespaces, mounts, cgroups)")


def _ensure_native() -> None:
    """Build pycontain.runtime._sys_native in place if it is missing (plain `pytest` in a clone)."""
    try:
        import pycontain.runtime._sys_native  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.join(ROOT_DIR, "pycontain", "runtime"))
        import _sys_build  # type: ignore[import-not-found]

        _sys_build.build_inplace()


_ensure_native()

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def cgroup_dirs() -> Set[str]:
    """Every container cgroup directory under the pycontain subtree, in every hierarchy."""
    found: Set[str] = set()
    for parent in glob.glob("/sys/fs/cgroup/*/pycontain") + glob.glob("/sys/fs/cgroup/pycontain"):
        for entry in os.scandir(parent):
            if entry.is_dir():
                found.add(entry.path)
    return found


class RuntimeRoots:
    """A private state root + storage root, and helpers to drive the CLI and API with them."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.root = os.path.join(base, "state")
        self.storage = os.path.join(base, "storage")
        os.makedirs(self.root)
        os.makedirs(self.storage)
        self.env = dict(os.environ, PYCONTAIN_ROOT=self.root, PYCONTAIN_STORAGE=self.storage,
                        PYTHONPATH=ROOT_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def cli(self, *args: str, timeout: float = 60, check: Optional[int] = None,
            input: Optional[bytes] = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "pycontain", *args], env=self.env,
                              capture_output=True, timeout=timeout, input=input, cwd=ROOT_DIR)
        if check is not None:
            assert proc.returncode == check, (
                f"pycontain {' '.join(args)} -> {proc.returncode}\n"
                f"stdout: {proc.stdout.decode(errors='replace')}\n"
                f"stderr: {proc.stderr.decode(errors='replace')}")
        return proc

    def popen(self, *args: str, **kw: object) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "pycontain", *args], env=self.env,
                                cwd=ROOT_DIR, **kw)  # type: ignore[call-overload]

    def inspect(self, name: str) -> Dict:
        return json.loads(self.cli("inspect", name, check=0).stdout)

    def state(self, name: str) -> Dict:
        with open(os.path.join(self.root, name, "state.json")) as f:
            return json.load(f)

    def kw(self) -> Dict[str, str]:
        """Keyword arguments for the Python API."""
        return {"root": self.root, "storage": self.storage}

    def wait_state(self, name: str, pred, timeout: float = 10.0) -> Dict:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        last: Dict = {}
        while time.monotonic() < deadline:
            try:
                last = self.state(name)
                if pred(last):
                    return last
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        raise AssertionError(f"state of {name} never matched: {last}")

    def leftovers(self) -> List[str]:
        out = []
        names = [n for n in os.listdir(self.root)] if os.path.isdir(self.root) else []
        if names:
            out.append(f"state dirs: {names}")
        cdir = os.path.join(self.storage, "containers")
        if os.path.isdir(cdir) and os.listdir(cdir):
            out.append(f"container dirs: {os.listdir(cdir)}")
        with open("/proc/self/mountinfo") as f:
            mounts = [line for line in f if self.base in line]
        if mounts:
            out.append(f"mounts: {mounts}")
        return out

    def force_clean(self) -> None:
        from pycontain.runtime.runtime import Runtime

        rt = Runtime(self.root, self.storage)
        for c in rt.containers():
            try:
                c.remove(force=True)
            except Exception:
                pass


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A minimal root filesystem: a static busybox and its applet symlinks."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed")
    root = str(tmp_path_factory.mktemp("busybox") / "rootfs")
    make_busybox_root(root, files={"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n"})
    return root


@pytest.fixture
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeRoots]:
    if not IS_ROOT:
        pytest.skip("needs root (namespaces, mounts, cgroups)")
    base = str(tmp_path_factory.mktemp("pyc"))
    roots = RuntimeRoots(base)
    before = cgroup_dirs()
    yield roots
    problems = roots.leftovers()
    new_cgroups = sorted(cgroup_dirs() - before)
    if new_cgroups:
        problems.append(f"cgroups: {new_cgroups}")
    if problems:
        roots.force_clean()
    shutil.rmtree(base, ignore_errors=True)
    assert not problems, "the test left traces behind: " + "; ".join(problems)
