"""An engine's view of start-up: ``podman run --rm --network none IMAGE true`` with
pycontain-oci as podman's runtime, against the same podman with runc.

Podman runs with the private configuration of tests/oci/test_podman.py (its own storage, vfs,
cgroupfs, file events, no network; nothing of the machine's podman setup is touched) and a
busybox image imported from a local tar. pycontain-oci is the console script ``make build``
installs (pycontain/launcher.py), written for this tree. Podman calls the runtime for
``create``, ``start`` and ``delete`` of every container, so the interpreter's start-up is paid
three times per run. Needs root, podman, runc and busybox.

    python3 -m pytest bench/test_bench_podman.py --benchmark-only
    python3 -m pytest bench/test_bench_podman.py -k interleaved -s     # medians side by side
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, Iterator, List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.oci.test_podman import CGROUP_PARENT, IMAGE, Podman  # noqa: E402

RUNC = shutil.which("runc")
PODMAN = shutil.which("podman")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(RUNC is None or PODMAN is None, reason="needs podman and runc"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is not installed"),
]


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    from pycontain import launcher

    base = str(tmp_path_factory.mktemp("podman-bench"))
    oci = os.path.join(base, "pycontain-oci-script")
    launcher.write_script(oci, "pycontain.oci.cli", [ROOT, *launcher.paths()])
    pm = Podman(base)
    with open(pm.runtime, "w") as f:  # the wrapper, pointed at this tree's script
        f.write(f'#!/bin/sh\nexec {oci} --root {pm.oci_root} "$@"\n')
    pm.import_busybox()
    yield pm
    pm("rm", "--all", "--force", "--time", "0")
    pm("rmi", "--all", "--force")
    subprocess.run(["umount", "-R", base], capture_output=True)
    for d in sorted({os.path.dirname(p) for p in _cgroup_dirs()}, reverse=True) + _cgroup_dirs():
        try:
            os.rmdir(d)
        except OSError:
            pass


def _cgroup_dirs() -> List[str]:
    import glob

    return sorted(glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}/conmon")
                  + glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}"), reverse=True)


def _run(pm: Podman, runtime: str) -> Callable[[], None]:
    head = ["--runtime", str(RUNC)] if runtime == "runc" else []  # the last --runtime wins

    def run() -> None:
        r = pm(*head, "run", "--rm", "--network", "none", "--cgroup-parent",
               "/" + CGROUP_PARENT, IMAGE, "true")
        assert r.returncode == 0, r.stderr

    return run


@pytest.mark.benchmark(group="podman-run-true", min_rounds=10, warmup=True)
def test_podman_runc(benchmark, podman) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(impl="podman + runc", baseline="podman + runc")
    benchmark(_run(podman, "runc"))


@pytest.mark.benchmark(group="podman-run-true", min_rounds=10, warmup=True)
def test_podman_pycontain_oci(benchmark, podman) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(impl="podman + pycontain-oci", baseline="podman + runc")
    benchmark(_run(podman, "pycontain"))


def test_interleaved(podman) -> None:  # type: ignore[no-untyped-def]
    """Both runtimes alternated; issue 17's target: podman on pycontain-oci within 1.1x of
    podman on runc."""
    fns = {"runc": _run(podman, "runc"), "pycontain-oci": _run(podman, "pycontain")}
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(15):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [f"{k:>14}: {v * 1e3:7.1f} ms  ({v / med['runc']:.2f}x podman + runc)"
             for k, v in med.items()]
    print("\n" + "\n".join(lines))
    if med["pycontain-oci"] > 1.1 * med["runc"]:
        pytest.xfail("; ".join(lines))
