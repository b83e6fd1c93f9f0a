"""Pull throughput from a local registry: ``pycontain pull`` against ``podman pull`` (which
also unpacks into its store, overlay driver) and ``skopeo copy docker://... oci:DIR`` (which
only writes the blobs), side by side on the same registry in the same run.

Debian's docker-registry serves one image on 127.0.0.1 (plain HTTP): a busybox rootfs with a
128 MiB file of random bytes, so the layer is about 128 MiB compressed too. Every round starts
from an empty store (a new directory), so nothing is reused. The figure includes each client's
start-up. Needs root (podman's overlay storage), docker-registry, skopeo and podman.

    python3 -m pytest bench/test_bench_registry.py --benchmark-only
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Callable, Dict, Iterator, List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.busybox import make_busybox_root  # noqa: E402
from tests.images.regserver import REGISTRY, SKOPEO, Pc, Registry  # noqa: E402

PODMAN = shutil.which("podman")
SIZE_MIB = 128

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not (REGISTRY and SKOPEO and PODMAN),
                       reason="docker-registry, skopeo and podman are needed"),
]


class Setup:
    def __init__(self, base: str, address: str) -> None:
        self.base, self.address = base, address
        self.ref = f"{address}/bench/big:1"
        self.round = 0

    def fresh(self, name: str) -> str:
        self.round += 1
        d = os.path.join(self.base, f"{name}-{self.round}")
        os.makedirs(d)
        return d


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    base = tempfile.mkdtemp(prefix="bench-registry-")
    try:
        with Registry(os.path.join(base, "registry")) as reg:
            root = os.path.join(base, "root")
            make_busybox_root(root)
            with open(os.path.join(root, "big"), "wb") as f:
                for _ in range(SIZE_MIB):
                    f.write(os.urandom(1 << 20))
            tar = os.path.join(base, "big.tar")
            subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
            shutil.rmtree(root)
            pc = Pc(os.path.join(base, "seed"))
            pc.ok("image", "import", "-q", tar, "--name", "big:1")
            os.unlink(tar)
            pc.ok("push", "-q", "--tls-verify=false", "big:1", f"{reg.address}/bench/big:1")
            shutil.rmtree(os.path.join(base, "seed"), ignore_errors=True)
            yield Setup(base, reg.address)
    finally:
        subprocess.run(["umount", "-R", "-l", base], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _pycontain(s: Setup) -> None:
    d = s.fresh("pc")
    pc = Pc(d)
    pc.ok("pull", "-q", "--tls-verify=false", s.ref)


def _skopeo(s: Setup) -> None:
    d = s.fresh("sk")
    subprocess.run([str(SKOPEO), "copy", "-q", "--src-tls-verify=false", f"docker://{s.ref}",
                    f"oci:{d}/layout:1"], check=True, capture_output=True)


def _podman(s: Setup) -> None:
    d = s.fresh("pm")
    subprocess.run([str(PODMAN), "--root", f"{d}/root", "--runroot", f"{d}/run",
                    "--storage-driver", "overlay", "pull", "-q", "--tls-verify=false",
                    s.ref], check=True, capture_output=True,
                   env=dict(os.environ, CONTAINERS_CONF="/dev/null"))
    subprocess.run([str(PODMAN), "--root", f"{d}/root", "--runroot", f"{d}/run",
                    "--storage-driver", "overlay", "system", "reset", "-f"],
                   capture_output=True, env=dict(os.environ, CONTAINERS_CONF="/dev/null"))


IMPLS: Dict[str, Callable[[Setup], None]] = {
    "pycontain": _pycontain, "podman": _podman, "skopeo-oci": _skopeo}


@pytest.mark.benchmark(group=f"registry-pull-{SIZE_MIB}MiB")
@pytest.mark.parametrize("impl", list(IMPLS))
def test_pull_throughput(benchmark, setup: Setup, impl: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(impl=impl, baseline="podman")
    times: List[float] = []

    def one() -> None:
        import time

        t0 = time.perf_counter()
        IMPLS[impl](setup)
        times.append(time.perf_counter() - t0)

    benchmark.pedantic(one, rounds=5, iterations=1, warmup_rounds=1)
    times.sort()
    benchmark.extra_info["MiB_per_s_median"] = round(SIZE_MIB / times[len(times) // 2], 0)
