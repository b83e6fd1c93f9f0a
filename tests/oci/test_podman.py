"""A real engine drives pycontain-oci: ``podman --runtime $(command -v pycontain-oci) run ...``.

Podman runs with a private configuration only (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF,
CONTAINERS_REGISTRIES_CONF, --root/--runroot/--tmpdir in a temporary directory, vfs storage,
cgroupfs, file events, no network), and default ulimits within this machine's hard limits (which
cannot be raised here). The image is a local busybox rootfs tar (``podman import``): no network.
pycontain-oci's state goes to a private root: the runtime podman is given is a two-line wrapper
``exec pycontain-oci --root DIR "$@"`` (podman passes neither its environment nor
``--runtime-flag`` to every runtime call: not to the ``delete`` of its cleanup process).
Everything is removed afterwards: containers, images, cgroups, mounts, the temporary directory.
"""

from __future__ import annotations

import glob
import os
import resource
import shutil
import subprocess
import tarfile
import time
from typing import Iterator, List

import pytest

from tests.oci.conftest import IS_ROOT, OCI_BIN, make_rootfs

PODMAN = shutil.which("podman")
IMAGE = "localhost/pycontain-busybox:latest"
CGROUP_PARENT = "pycontain-podman-test"

pytestmark = [
    pytest.mark.skipif(not IS_ROOT, reason="needs root"),
    pytest.mark.skipif(PODMAN is None, reason="podman is not installed (apt-get install podman)"),
    pytest.mark.skipif(OCI_BIN is None, reason="pycontain-oci is not installed (make build)"),
]


class Podman:
    def __init__(self, base: str) -> None:
        self.base = base
        self.oci_root = os.path.join(base, "oci-state")
        # podman passes neither its environment nor --runtime-flag to every runtime call (not to
        # the delete of its cleanup process): the runtime it is given carries the root itself.
        self.runtime = os.path.join(base, "pycontain-oci")
        with open(self.runtime, "w") as f:
            f.write(f'#!/bin/sh\nexec {OCI_BIN} --root {self.oci_root} "$@"\n')
        os.chmod(self.runtime, 0o755)
        for d in ("storage", "run", "tmp", "volumes", "net"):
            os.makedirs(os.path.join(base, d))
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        nofile = 1 << 20 if nofile == resource.RLIM_INFINITY else nofile
        nproc = 4096 if nproc == resource.RLIM_INFINITY else min(nproc, 4096)
        conf = os.path.join(base, "containers.conf")
        with open(conf, "w") as f:
            f.write(f"""[containers]
netns = "none"
default_ulimits = ["nofile={min(1024, nofile)}:{nofile}", "nproc={nproc}:{nproc}"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base}/events.log"
tmp_dir = "{base}/tmp"
volume_path = "{base}/volumes"
runtime = "pycontain"

[engine.runtimes]
pycontain = ["{self.runtime}"]

[network]
network_config_dir = "{base}/net"
""")
        storage = os.path.join(base, "storage.conf")
        with open(storage, "w") as f:
            f.write(f'[storage]\ndriver = "vfs"\ngraphroot = "{base}/storage"\n'
                    f'runroot = "{base}/run"\n')
        registries = os.path.join(base, "registries.conf")
        with open(registries, "w") as f:
            f.write("unqualified-search-registries = []\n")
        self.env = dict(os.environ, CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage,
                        CONTAINERS_REGISTRIES_CONF=registries)
        self.global_args = ["--root", f"{base}/storage", "--runroot", f"{base}/run",
                            "--tmpdir", f"{base}/tmp", "--runtime", self.runtime,
                            "--cgroup-manager", "cgroupfs", "--events-backend", "file"]

    def __call__(self, *args: str, timeout: float = 60,
                 **kw: object) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("cwd", self.base)  # conmon drops files (an "oom" marker) in its cwd
        return subprocess.run([str(PODMAN), *self.global_args, *args], env=self.env,
                              timeout=timeout, **kw)  # type: ignore[call-overload]

    def import_busybox(self) -> None:
        """IMAGE: a busybox rootfs made here, imported from a tar (no registry, no network)."""
        rootfs = os.path.join(self.base, "rootfs")
        make_rootfs(rootfs)
        tar = os.path.join(self.base, "busybox.tar")
        with tarfile.open(tar, "w") as t:
            t.add(rootfs, arcname=".")
        r = self("import", "--change", "CMD=[\"sh\"]", tar, IMAGE)
        assert r.returncode == 0, r.stderr.decode()

    def run(self, *args: str, **kw: object) -> subprocess.CompletedProcess:
        return self("run", "--network", "none", "--cgroup-parent", "/" + CGROUP_PARENT, *args,
                    **kw)


def _cgroup_dirs() -> List[str]:
    return sorted(glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}")
                  + glob.glob(f"/sys/fs/cgroup/{CGROUP_PARENT}"))


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    base = str(tmp_path_factory.mktemp("podman"))
    pm = Podman(base)
    pm.import_busybox()
    pre_existing = set(_cgroup_dirs())
    yield pm
    pm("rm", "--all", "--force", "--time", "0")
    pm("rmi", "--all", "--force")
    leftovers = _states(pm)
    for name in leftovers:
        subprocess.run([str(OCI_BIN), "--root", pm.oci_root, "delete", "--force", name],
                       capture_output=True)
    pm("system", "reset", "--force")
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if base in line]
    for m in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    for d in sorted(set(_cgroup_dirs()) - pre_existing):
        for sub in sorted(glob.glob(d + "/*/"), reverse=True):
            try:
                os.rmdir(sub)
            except OSError:
                pass
        try:
            os.rmdir(d)
        except OSError:
            pass
    shutil.rmtree(base, ignore_errors=True)
    assert not leftovers, f"pycontain-oci containers left behind by podman: {leftovers}"
    assert not mounts, f"mounts left behind: {mounts}"


def _states(pm: Podman) -> List[str]:
    """Containers in pycontain-oci's root (not its .seccomp-cache)."""
    if not os.path.isdir(pm.oci_root):
        return []
    return [n for n in os.listdir(pm.oci_root) if not n.startswith(".")]


def _containers(pm: Podman) -> List[str]:
    return pm("ps", "--all", "--quiet").stdout.decode().split()


def test_run_output_and_exit_code(podman: Podman) -> None:
    r = podman.run("--rm", IMAGE, "sh", "-c", "echo hello from $(cat /proc/1/comm); "
                   "echo to-stderr >&2")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"hello from sh\n"
    assert b"to-stderr" in r.stderr
    r = podman.run("--rm", IMAGE, "sh", "-c", "exit 7")
    assert r.returncode == 7
    r = podman.run("--rm", IMAGE, "/no/such/binary")
    assert r.returncode in (126, 127), r.stderr.decode()


def test_read_only_and_tmpfs_etc(podman: Podman) -> None:
    """podman --read-only mounts tmpfs with tmpcopyup on /tmp, /var/tmp, /run; --tmpfs /etc
    keeps /etc's files: no warning, and the files are there."""
    r = podman.run("--rm", "--read-only", IMAGE, "sh", "-c",
                   "touch /tmp/x && echo tmp-ok; touch /x 2>/dev/null || echo root-ro")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.split() == [b"tmp-ok", b"root-ro"]
    assert b"warning" not in r.stderr.lower(), r.stderr
    r = podman.run("--rm", "--tmpfs", "/etc", IMAGE, "sh", "-c",
                   "grep -c root /etc/passwd; grep ' /etc ' /proc/mounts | cut -d' ' -f3")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.split() == [b"1", b"tmpfs"], r.stdout


def test_rm_leaves_nothing(podman: Podman) -> None:
    assert os.path.isdir(os.path.join(podman.oci_root, ".seccomp-cache"))  # the private root
    before = _containers(podman)
    r = podman.run("--rm", "--name", "pyc-rm", IMAGE, "true")
    assert r.returncode == 0, r.stderr.decode()
    assert _containers(podman) == before
    deadline = time.monotonic() + 5
    while _states(podman):
        assert time.monotonic() < deadline, _states(podman)
        time.sleep(0.05)
    assert not glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}/libpod-*")


def test_memory_limit(podman: Podman) -> None:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        show = "cat /sys/fs/cgroup/memory.max"
    else:
        show = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    r = podman.run("--rm", "--memory", "32m", IMAGE, "sh", "-c", show)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.strip() == str(32 << 20).encode()
    r = podman.run("--rm", "--memory", "16m", "--memory-swap", "16m", IMAGE, "sh", "-c",
                   "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived")
    assert r.returncode == 137 and b"survived" not in r.stdout


def test_exec_and_lifecycle(podman: Podman) -> None:
    r = podman.run("-d", "--name", "pyc-bg", IMAGE, "sleep", "100")
    assert r.returncode == 0, r.stderr.decode()
    try:
        ps = podman("ps", "--filter", "name=pyc-bg", "--format", "{{.Status}}")
        assert ps.stdout.decode().startswith("Up")
        r = podman("exec", "pyc-bg", "sh", "-c", "echo in-exec $(cat /proc/1/cmdline | "
                   "tr '\\0' ' '); exit 3")
        assert r.returncode == 3, r.stderr.decode()
        assert r.stdout.decode().split() == ["in-exec", "sleep", "100"]
        r = podman("exec", "-e", "V=1", "-w", "/tmp", "pyc-bg", "sh", "-c", "echo $V $(pwd)")
        assert r.stdout == b"1 /tmp\n"
        r = podman("exec", "-t", "pyc-bg", "tty")
        assert r.returncode == 0 and r.stdout.strip().startswith(b"/dev/pts/")
        top = podman("top", "pyc-bg")
        assert b"sleep 100" in top.stdout
        r = podman("kill", "--signal", "KILL", "pyc-bg")
        assert r.returncode == 0, r.stderr.decode()
        r = podman("wait", "pyc-bg")
        assert r.stdout.strip() == b"137"
        inspect = podman("inspect", "--format", "{{.State.Status}}", "pyc-bg")
        assert inspect.stdout.strip() == b"exited"
        r = podman("start", "pyc-bg")  # a stopped container starts again (create + start)
        assert r.returncode == 0, r.stderr.decode()
        r = podman("stop", "--time", "1", "pyc-bg")
        assert r.returncode == 0, r.stderr.decode()
    finally:
        r = podman("rm", "--force", "--time", "0", "pyc-bg")
        assert r.returncode == 0, r.stderr.decode()


def test_tty(podman: Podman) -> None:
    r = podman.run("--rm", "-t", IMAGE, "sh", "-c", "tty; test -t 0 && echo stdin-is-a-tty")
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().replace("\r", "").split("\n")
    assert lines[0] == "/dev/pts/0" and lines[1] == "stdin-is-a-tty"


def test_preload_annotation(podman: Podman) -> None:
    try:
        from pyalloc import preload  # type: ignore[import-not-found]

        if not os.path.isfile(str(preload.library_path())):
            raise FileNotFoundError
    except Exception:
        pytest.skip("libpyalloc.so not available")
    r = podman.run("--rm", "--annotation", "org.pyalloc.preload=best", IMAGE, "sh", "-c",
                   "echo $LD_PRELOAD $PYALLOC_POLICY")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.split() == [b"/.pyalloc/libpyalloc.so", b"best"]


def test_runtime_name(podman: Podman) -> None:
    info = podman("info", "--format", "{{.Host.OCIRuntime.Path}} {{.Host.OCIRuntime.Version}}")
    assert info.returncode == 0, info.stderr.decode()
    assert podman.runtime.encode() in info.stdout and b"pycontain-oci" in info.stdout




def test_pause_unpause(podman: Podman) -> None:
    """podman pause/unpause drive pycontain-oci pause/resume (the cgroup freezer)."""
    r = podman.run("-d", "--name", "pyc-pause", IMAGE, "sh", "-c",
                   "i=0; while true; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; "
                   "sleep 0.02; done")
    assert r.returncode == 0, r.stderr.decode()
    try:
        time.sleep(0.3)
        r = podman("pause", "pyc-pause")
        assert r.returncode == 0, r.stderr.decode()
        status = podman("inspect", "--format", "{{.State.Status}}", "pyc-pause")
        assert status.stdout.strip() == b"paused"
        r = podman("unpause", "pyc-pause")
        assert r.returncode == 0, r.stderr.decode()
        status = podman("inspect", "--format", "{{.State.Status}}", "pyc-pause")
        assert status.stdout.strip() == b"running"
        first = podman("exec", "pyc-pause", "cat", "/tmp/n").stdout
        time.sleep(0.2)
        assert int(podman("exec", "pyc-pause", "cat", "/tmp/n").stdout) > int(first)
    finally:
        r = podman("rm", "--force", "--time", "0", "pyc-pause")
        assert r.returncode == 0, r.stderr.decode()


def test_uidmap(podman: Podman) -> None:
    """podman --uidmap: the runtime creates the user namespace with podman's maps (podman
    prepares the image's files for them); root inside is 100000 outside."""
    r = podman.run("--rm", "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536", IMAGE,
                   "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; "
                   "touch /made && ls -ln /made | tr -s ' ' | cut -d' ' -f3,4; "
                   "sleep 0.2 & wait")
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().split("\n")
    assert lines[0].split() == ["0", "100000", "65536"], r.stdout
    assert lines[1].split() == ["0", "100000", "65536"], r.stdout
    assert lines[2:4] == ["0", "0 0"], r.stdout
    # exec joins the container's user namespace: the same map, root inside, never the host's
    name = "pyc-uidmap"
    r = podman.run("-d", "--name", name, "--uidmap", "0:100000:65536", "--gidmap",
                   "0:100000:65536", IMAGE, "sleep", "30")
    assert r.returncode == 0, r.stderr.decode()
    try:
        r = podman("exec", name, "sh", "-c", "cat /proc/self/uid_map; id -u; "
                   "cat /proc/self/status | grep -E '^(Uid|CapEff)'")
        assert r.returncode == 0, r.stderr.decode()
        out = r.stdout.decode().split("\n")
        assert out[0].split() == ["0", "100000", "65536"], r.stdout
        assert out[1] == "0"
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
        with open(f"/proc/{pid}/status") as f:  # seen from the host: uid 100000
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert uids == ["100000"] * 4
    finally:
        podman("rm", "--force", "--time", "0", name)
