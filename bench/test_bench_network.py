"""Through a published port: request round-trip and download throughput, pycontain against
podman (runc, its CNI bridge network) on the same machine, side by side.

Both run busybox ``httpd`` from the same busybox rootfs (pycontain ``--rootfs``, podman an image
imported from it) on a bridge network of their own with ``-p 127.0.0.1:PORT:80``, inside one
network namespace made to play the host (the runtimes run there through ``nsenter --net``:
nothing touches this machine's interfaces). The client runs in that namespace too: one GET of
a 1 KiB file on a new connection per round (latency), and a 32 MiB file (throughput). Needs
root, podman, runc and the CNI plugins.

    python3 -m pytest bench/test_bench_network.py --benchmark-only
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Callable, Dict, Iterator, List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.busybox import make_busybox_root  # noqa: E402

PODMAN = shutil.which("podman")
NSENTER = shutil.which("nsenter")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(PODMAN is None or shutil.which("runc") is None,
                       reason="podman and runc are needed"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="no CNI plugins"),
    pytest.mark.skipif(NSENTER is None, reason="needs nsenter"),
]

CLIENT = r"""
import socket, sys, time
port, path, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
req = f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode()
total = 0
t0 = time.perf_counter()
for _ in range(rounds):
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(req)
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        total += len(b)
    s.close()
print(time.perf_counter() - t0, total)
"""


class Setup:
    def __init__(self, base: str) -> None:
        self.base = base
        self.ns = os.path.join(base, "hostns")
        self.env = dict(os.environ, PYCONTAIN_ROOT=os.path.join(base, "pc-state"),
                        PYCONTAIN_STORAGE=os.path.join(base, "pc-storage"), PYTHONPATH=ROOT)
        conf = os.path.join(base, "containers.conf")
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nofile = 1 << 20 if nofile == resource.RLIM_INFINITY else nofile
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        nproc = 4096 if nproc == resource.RLIM_INFINITY else min(nproc, 4096)
        with open(conf, "w") as f:
            f.write(f"""[containers]
default_ulimits = ["nofile={min(1024, nofile)}:{nofile}", "nproc={nproc}:{nproc}"]
log_driver = "k8s-file"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base}/events.log"
tmp_dir = "{base}/tmp"
[network]
network_backend = "cni"
network_config_dir = "{base}/net"
default_subnet = "10.88.7.0/24"
""")
        storage = os.path.join(base, "storage.conf")
        with open(storage, "w") as f:
            f.write(f'[storage]\ndriver = "vfs"\ngraphroot = "{base}/storage"\n'
                    f'runroot = "{base}/run"\n')
        self.penv = dict(os.environ, CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage)
        self.pargs = ["--root", f"{base}/storage", "--runroot", f"{base}/run", "--tmpdir",
                      f"{base}/tmp", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                      "--events-backend", "file"]

    def run(self, args: List[str], env: Dict[str, str], check: bool = True
            ) -> subprocess.CompletedProcess:
        r = subprocess.run([str(NSENTER), f"--net={self.ns}", *args], env=env,
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=120,
                           cwd=self.base)
        if check:
            assert r.returncode == 0, f"{args}: {r.stderr.decode()}"
        return r

    def pc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "pycontain", *args], self.env, check)

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run([str(PODMAN), *self.pargs, *args], self.penv, check)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    from pycontain.net import netns

    base = tempfile.mkdtemp(prefix="pycontain-netbench-")
    os.chmod(base, 0o755)
    s = Setup(base)
    netns.create(s.ns)
    s.run(["ip", "link", "set", "lo", "up"], s.env)
    root = os.path.join(base, "rootfs")
    make_busybox_root(root, dirs=("bin", "etc", "proc", "dev", "sys", "tmp", "www"))
    with open(os.path.join(root, "www", "small"), "wb") as f:
        f.write(b"x" * 1024)
    with open(os.path.join(root, "www", "big"), "wb") as f:
        f.write(os.urandom(1 << 20) * 32)
    tar = os.path.join(base, "box.tar")
    with tarfile.open(tar, "w") as t:
        t.add(root, arcname=".")
    try:
        s.pc("network", "create", "benchnet", "--subnet", "10.124.0.0/24")
        s.pc("run", "-d", "--name", "web", "--rootfs", root, "--network", "benchnet", "-p",
             "127.0.0.1:18080:80", "--", "httpd", "-f", "-p", "80", "-h", "/www")
        s.podman("import", tar, "localhost/netbench:1")
        s.podman("run", "-d", "--name", "web", "-p", "127.0.0.1:18081:80",
                 "localhost/netbench:1", "httpd", "-f", "-p", "80", "-h", "/www")
        for port in (18080, 18081):  # both answer before timing starts
            deadline = time.monotonic() + 20
            while s.run([sys.executable, "-c", CLIENT, str(port), "/small", "1"], s.env,
                        check=False).returncode != 0:
                assert time.monotonic() < deadline, f"port {port} never answered"
                time.sleep(0.1)
        yield s
    finally:
        s.pc("rm", "-f", "web", check=False)
        s.pc("network", "rm", "benchnet", check=False)
        s.podman("rm", "-f", "-t", "0", "web", check=False)
        s.podman("system", "reset", "--force", check=False)
        with open("/proc/self/mountinfo") as f:
            for m in sorted((line.split()[4] for line in f if base in line), reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True)
        netns.remove(s.ns)
        shutil.rmtree(base, ignore_errors=True)


def _client(s: Setup, port: int, path: str, rounds: int) -> Callable[[], float]:
    def run() -> float:
        r = s.run([sys.executable, "-c", CLIENT, str(port), path, str(rounds)], s.env)
        secs, _ = r.stdout.split()
        return float(secs)

    return run


ROUNDS = 200


def _measure(benchmark, s: Setup, port: int, path: str, rounds: int) -> List[float]:  # type: ignore[no-untyped-def]
    """Times the client run (pytest-benchmark's figure includes its interpreter start); the
    client's own timings of the transfers alone go to extra_info."""
    inner: List[float] = []
    run = _client(s, port, path, rounds)
    benchmark.pedantic(lambda: inner.append(run()), rounds=9, iterations=1, warmup_rounds=1)
    return sorted(inner)


@pytest.mark.benchmark(group="published-port-request")
@pytest.mark.parametrize("impl, port", [("podman (runc, CNI)", 18081), ("pycontain", 18080)])
def test_request_roundtrip(benchmark, setup, impl, port) -> None:  # type: ignore[no-untyped-def]
    """200 GETs of a 1 KiB file through the published port, a new connection each."""
    benchmark.extra_info.update(impl=impl, baseline="podman (runc, CNI)")
    inner = _measure(benchmark, setup, port, "/small", ROUNDS)
    benchmark.extra_info["per_request_us_median"] = round(inner[len(inner) // 2] / ROUNDS
                                                          * 1e6, 1)


@pytest.mark.benchmark(group="published-port-32MiB")
@pytest.mark.parametrize("impl, port", [("podman (runc, CNI)", 18081), ("pycontain", 18080)])
def test_download_throughput(benchmark, setup, impl, port) -> None:  # type: ignore[no-untyped-def]
    """One GET of a 32 MiB file through the published port."""
    benchmark.extra_info.update(impl=impl, baseline="podman (runc, CNI)")
    inner = _measure(benchmark, setup, port, "/big", 1)
    benchmark.extra_info["MiB_per_s_median"] = round(32 / inner[len(inner) // 2], 0)
