"""OCI runtime start-up latency: ``pycontain-oci`` against ``runc``, the way an engine drives them.

One round = ``create --bundle B --pid-file F ID`` + ``start ID`` + wait for the container process
to exit (this process is the subreaper, as conmon is, and reaps it) + ``delete ID``, on the same
busybox bundle (``runc spec`` config, not a terminal) running ``/bin/true`` with pid, network,
ipc, uts, mount and cgroup namespaces and a fresh cgroup each time. Needs root, runc, busybox and
the native module built (``make build``). The command measured is a launcher of this tree's
``pycontain.oci.cli`` (the console script's two lines), or ``$PYCONTAIN_OCI``.

    python3 -m pytest bench/test_bench_oci.py --benchmark-only
    python3 -m pytest bench/test_bench_oci.py -k interleaved -s     # medians side by side
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, Iterator, List

import pytest

RUNC = shutil.which("runc")
BUSYBOX = shutil.which("busybox")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from procstat import peak_rss_kb  # noqa: E402


def _launcher() -> str:
    """The console script ``make build`` installs (pycontain/launcher.py: ``-I -S``, fixed
    paths), bound to this tree and to this interpreter, written next to the other temporary
    files."""
    import tempfile

    from pycontain import launcher

    d = tempfile.mkdtemp(prefix="pycontain-oci-bench-")
    path = os.path.join(d, "pycontain-oci")
    launcher.write_script(path, "pycontain.oci.cli", [ROOT, *launcher.paths()])
    return path


# $PYCONTAIN_OCI (e.g. the installed console script), else a launcher for this tree
OCI = os.environ.get("PYCONTAIN_OCI") or _launcher()
CGROUP_PARENT = "pycontain-oci-bench"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(RUNC is None, reason="runc is not installed"),
    pytest.mark.skipif(BUSYBOX is None, reason="busybox-static is not installed"),
]

_counter = itertools.count()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, str]]:
    from pycontain.runtime import _sys

    _sys.prctl(_sys.PR_SET_CHILD_SUBREAPER, 1)
    base = tmp_path_factory.mktemp("ocibench")
    rootfs = base / "rootfs"
    for d in ("bin", "proc", "dev", "sys", "tmp"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy2(str(BUSYBOX), rootfs / "bin" / "busybox")
    for applet in ("sh", "true"):
        os.symlink("busybox", rootfs / "bin" / applet)
    subprocess.run([str(RUNC), "spec"], cwd=base, check=True)
    with open(base / "config.json") as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    if "cgroup" not in {n["type"] for n in cfg["linux"]["namespaces"]}:
        cfg["linux"]["namespaces"].append({"type": "cgroup"})
    with open(base / "config.json", "w") as f:
        json.dump(cfg, f)
    paths = {"bundle": str(base), "runc_root": str(base / "runc-state"),
             "oci_root": str(base / "oci-state"), "pid": str(base / "pid")}
    yield paths
    if not os.environ.get("PYCONTAIN_OCI"):
        shutil.rmtree(os.path.dirname(OCI), ignore_errors=True)
    for d in glob_dirs():
        try:
            os.rmdir(d)
        except OSError:
            pass


def glob_dirs() -> List[str]:
    import glob

    return glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}") + glob.glob(
        f"/sys/fs/cgroup/{CGROUP_PARENT}")


def _cycle(binary: str, root: str, b: Dict[str, str]) -> Callable[[], None]:
    """create + start + wait + delete, with the cgroup path runc would use for the id."""
    cfg_path = os.path.join(b["bundle"], "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    devnull = subprocess.DEVNULL

    def run() -> None:
        cid = f"b{os.getpid()}-{next(_counter)}"
        cfg["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}"
        # one config per id, written before the clock of this round matters for both alike
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        base = [binary, "--root", root]
        subprocess.run([*base, "create", "--bundle", b["bundle"], "--pid-file", b["pid"], cid],
                       check=True, stdin=devnull, stdout=devnull)
        with open(b["pid"]) as f:
            pid = int(f.read())
        subprocess.run([*base, "start", cid], check=True, stdin=devnull)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        subprocess.run([*base, "delete", cid], check=True, stdin=devnull)

    return run


def _new_id(b: Dict[str, str], prefix: str) -> str:
    """A fresh container id, with the bundle's cgroupsPath set to the one runc would use."""
    cid = f"{prefix}{os.getpid()}-{next(_counter)}"
    cfg_path = os.path.join(b["bundle"], "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}"
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    return cid


def _run_rss(binary: str, root: str, b: Dict[str, str]) -> int:
    """Peak RSS of the runtime process for a whole `run` (create, start, wait, delete)."""
    cid = _new_id(b, "rss")
    return peak_rss_kb([binary, "--root", root, "run", "--bundle", b["bundle"], cid], runs=1)


@pytest.mark.benchmark(group="oci-create-start-delete", min_rounds=15, warmup=True)
def test_runc_create_start_delete(benchmark, bundle) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(impl="runc", baseline="runc")
    benchmark(_cycle(str(RUNC), bundle["runc_root"], bundle))
    benchmark.extra_info["peak_rss_kb"] = _run_rss(str(RUNC), bundle["runc_root"], bundle)


@pytest.mark.benchmark(group="oci-create-start-delete", min_rounds=15, warmup=True)
def test_pycontain_oci_create_start_delete(benchmark, bundle) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(impl="pycontain-oci", baseline="runc")
    benchmark(_cycle(str(OCI), bundle["oci_root"], bundle))
    benchmark.extra_info["peak_rss_kb"] = _run_rss(str(OCI), bundle["oci_root"], bundle)


@pytest.fixture(scope="module")
def created(bundle):  # type: ignore[no-untyped-def]
    """One created (not started) container per runtime, for ``state``: engines call it again
    and again on such containers."""
    ids = {}
    for name, binary, root in (("runc", str(RUNC), bundle["runc_root"]),
                               ("pycontain-oci", str(OCI), bundle["oci_root"])):
        cid = _new_id(bundle, "st")
        subprocess.run([binary, "--root", root, "create", "--bundle", bundle["bundle"], cid],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        ids[name] = (binary, root, cid)
    yield ids
    for binary, root, cid in ids.values():
        subprocess.run([binary, "--root", root, "delete", "--force", cid], capture_output=True)


def _state(binary: str, root: str, cid: str) -> Callable[[], None]:
    cmd = [binary, "--root", root, "state", cid]

    def run() -> None:
        out = subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE).stdout
        assert json.loads(out)["status"] == "created"

    return run


@pytest.mark.benchmark(group="oci-state", min_rounds=20, warmup=True)
def test_runc_state(benchmark, created) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(impl="runc", baseline="runc")
    benchmark(_state(*created["runc"]))


@pytest.mark.benchmark(group="oci-state", min_rounds=20, warmup=True)
def test_pycontain_oci_state(benchmark, created) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info.update(impl="pycontain-oci", baseline="runc")
    benchmark(_state(*created["pycontain-oci"]))


def test_interleaved(bundle) -> None:  # type: ignore[no-untyped-def]
    """Both runtimes alternated, so that machine drift hits them alike; prints medians."""
    fns = {"runc": _cycle(str(RUNC), bundle["runc_root"], bundle),
           "pycontain-oci": _cycle(str(OCI), bundle["oci_root"], bundle)}
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(20):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("\n" + "\n".join(f"{k:>14}: {v * 1e3:7.2f} ms  ({v / med['runc']:.2f}x runc)"
                           for k, v in med.items()))
