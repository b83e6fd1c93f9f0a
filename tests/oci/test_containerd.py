"""containerd drives pycontain-oci as it drives runc (the path Kubernetes takes to a runtime):
a private containerd (its own root, state and socket in a temporary directory, the CRI and
other plugins it does not need disabled), an image imported with ``ctr``, and ``ctr run
--runc-binary pycontain-oci``: output, exit code, exec, kill, a memory limit, and nothing left
after ``ctr task delete``. No network: the image is a busybox rootfs exported by pycontain.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from typing import Iterator, List

import pytest

from tests.oci.conftest import IS_ROOT, OCI_BIN, make_rootfs

CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
IMAGE = "localhost/pycontain-busybox:ctr"

pytestmark = [
    pytest.mark.skipif(not IS_ROOT, reason="needs root"),
    pytest.mark.skipif(CONTAINERD is None or CTR is None,
                       reason="containerd is not installed (apt-get install containerd)"),
    pytest.mark.skipif(OCI_BIN is None, reason="pycontain-oci is not installed (make build)"),
]

DISABLED = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing",
            "io.containerd.tracing.processor.v1.otlp"]


class Containerd:
    def __init__(self, base: str) -> None:
        self.base = base
        self.sock = os.path.join(base, "containerd.sock")
        self.ns = f"pyctest{os.getpid()}"
        conf = os.path.join(base, "config.toml")
        with open(conf, "w") as f:
            f.write(f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
                    f"disabled_plugins = {DISABLED!r}\n".replace("'", '"')
                    + f'[grpc]\n  address = "{self.sock}"\n'
                    f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
                    f'[debug]\n  address = "{base}/debug.sock"\n[metrics]\n  address = ""\n')
        self.log = open(os.path.join(base, "containerd.log"), "wb")
        self.proc = subprocess.Popen([CONTAINERD, "--config", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while self.ctr("version", check=None).returncode != 0:
            assert self.proc.poll() is None, "containerd exited: " + self.log_text()
            assert time.monotonic() < deadline, "containerd did not start"
            time.sleep(0.05)

    def log_text(self) -> str:
        with open(os.path.join(self.base, "containerd.log"), errors="replace") as f:
            return f.read()[-3000:]

    def ctr(self, *args: str, check: object = 0, timeout: float = 60,
            **kw: object) -> subprocess.CompletedProcess:
        p = subprocess.run([CTR, "-a", self.sock, "-n", self.ns, *args], capture_output=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
        if check is not None:
            assert p.returncode == check, (args, p.stdout, p.stderr)
        return p

    def run(self, cid: str, *cmd: str, extra: List[str] = (), check: object = None,  # type: ignore[assignment]
            ) -> subprocess.CompletedProcess:
        return self.ctr("run", "--runc-binary", str(OCI_BIN), *extra, IMAGE, cid, *cmd,
                        check=check)

    def stop(self) -> None:
        for c in self.ctr("containers", "ls", "-q", check=None).stdout.decode().split():
            self.ctr("task", "kill", "-s", "SIGKILL", c, check=None)
            self.ctr("task", "delete", "-f", c, check=None)
            self.ctr("containers", "delete", c, check=None)
        self.ctr("images", "rm", IMAGE, check=None)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _runtime_leftovers(ctd: Containerd) -> List[str]:
    """What pycontain-oci (run by the shim with --root /run/containerd/runc/NS) and the
    cgroups (containerd's default path /NS/ID) hold for this namespace."""
    out = []
    root = f"/run/containerd/runc/{ctd.ns}"
    if os.path.isdir(root):
        out += [f"state {n}" for n in os.listdir(root) if not n.startswith(".")]
    for d in ("memory", "pids", "cpu", "freezer"):
        p = f"/sys/fs/cgroup/{d}/{ctd.ns}"
        if os.path.isdir(p):
            out += [f"cgroup {d}/{e.name}" for e in os.scandir(p) if e.is_dir()]
    with open("/proc/self/mountinfo") as f:
        out += [f"mount {line.split()[4]}" for line in f if f"/{ctd.ns}/" in line]
    return out


@pytest.fixture(scope="module")
def ctd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    base = str(tmp_path_factory.mktemp("containerd"))
    c = Containerd(base)
    try:
        rootfs = os.path.join(base, "rootfs")
        make_rootfs(rootfs)
        rtar = os.path.join(base, "rootfs.tar")
        with tarfile.open(rtar, "w") as tf:
            tf.add(rootfs, arcname=".")
        env = dict(os.environ, PYCONTAIN_ROOT=os.path.join(base, "pyc-root"),
                   PYCONTAIN_STORAGE=os.path.join(base, "pyc-storage"))
        image_tar = os.path.join(base, "image.tar")
        for args in (["image", "import", rtar, "--name", IMAGE],
                     ["image", "export", IMAGE, image_tar]):
            subprocess.run([os.sys.executable, "-m", "pycontain", *args], env=env, check=True,  # type: ignore[attr-defined]
                           capture_output=True)
        c.ctr("images", "import", image_tar)
        yield c
    finally:
        c.stop()
        for p in (f"/sys/fs/cgroup/{d}/{c.ns}" for d in ("memory", "pids", "cpu", "cpuacct",
                                                          "devices", "freezer", "blkio")):
            try:
                os.rmdir(p)
            except OSError:
                pass
        shutil.rmtree(f"/run/containerd/runc/{c.ns}", ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def test_ctr_run_output_and_exit_code(ctd: Containerd) -> None:
    r = ctd.run("out", "sh", "-c", "echo hello from pid $$; echo err >&2; exit 3",
                extra=["--rm"])
    assert r.returncode == 3, r.stderr
    assert r.stdout.decode().strip() == "hello from pid 1"  # its own pid namespace
    assert _runtime_leftovers(ctd) == []


def test_ctr_exec_kill_memory_limit_and_delete(ctd: Containerd) -> None:
    r = ctd.run("det", "sh", "-c", "echo started; sleep 60",
                extra=["-d", "--memory-limit", str(64 << 20)])
    assert r.returncode == 0, r.stderr
    try:
        tasks = ctd.ctr("task", "ls").stdout.decode()
        assert "det" in tasks and "RUNNING" in tasks, tasks
        with open(f"/sys/fs/cgroup/memory/{ctd.ns}/det/memory.limit_in_bytes") as f:
            assert int(f.read()) == 64 << 20
        e = ctd.ctr("task", "exec", "--exec-id", "e1", "det", "sh", "-c",
                    "echo in; cat /proc/1/cmdline | tr '\\0' ' '; exit 4", check=None)
        assert e.returncode == 4, e.stderr
        assert e.stdout.decode().split() == ["in", "sleep", "60"]  # the container's PID 1
        ctd.ctr("task", "kill", "-s", "SIGKILL", "det")
        deadline = time.monotonic() + 10
        while "STOPPED" not in ctd.ctr("task", "ls").stdout.decode():
            assert time.monotonic() < deadline, "the task did not stop"
            time.sleep(0.05)
    finally:
        ctd.ctr("task", "delete", "-f", "det", check=None)
        ctd.ctr("containers", "delete", "det", check=None)
    assert _runtime_leftovers(ctd) == []


def test_ctr_memory_limit_is_enforced(ctd: Containerd) -> None:
    """A container over its limit is OOM-killed (exit 137), as under runc."""
    r = ctd.run("oom", "sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' x); echo $x",
                extra=["--rm", "--memory-limit", str(16 << 20)])
    assert r.returncode == 137, (r.returncode, r.stderr)
    assert _runtime_leftovers(ctd) == []
