"""Rootless start-to-exit latency: ``pycontain run --rm --rootfs R -- /bin/true`` as a normal
user against ``bwrap --unshare-all`` of the same busybox rootfs, side by side.

Both run as the same unprivileged user (made for the run, as tests/rootless does), each in a
new user, pid, mount, network, ipc, uts and cgroup namespace with /proc, /dev and a tmpfs
/tmp; pycontain also keeps a state record, masks runc's paths, drops capabilities and runs its
init. Both with Debian's interpreter-free peer (bwrap is C) and pycontain on Debian's python3
(/usr/bin/python3 -m pycontain, byte-code compiled first). Needs root (to make the user) and
bubblewrap.

    python3 -m pytest bench/test_bench_rootless.py --benchmark-only
"""

from __future__ import annotations

import compileall
import os
import shutil
import subprocess
from typing import Callable, Dict, Iterator, List

import pytest

from tests.busybox import make_busybox_root
from tests.rootless.conftest import AsUser, User, tree, user  # noqa: F401 - fixtures

BWRAP = shutil.which("bwrap")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to make the user)"),
    pytest.mark.skipif(BWRAP is None, reason="bubblewrap is not installed"),
]


@pytest.fixture(scope="module")
def rootfs(user: User, tree: str) -> Iterator[str]:  # noqa: F811
    import tempfile

    compileall.compile_dir(os.path.join(tree, "pycontain"), quiet=1)
    d = tempfile.mkdtemp(prefix="pycontain-rl-bench-")
    os.chmod(d, 0o755)
    root = os.path.join(d, "rootfs")
    make_busybox_root(root)
    for sub in ("proc", "dev", "tmp", "sys"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    yield root
    shutil.rmtree(d, ignore_errors=True)


def _as_user(user: User, tree: str, cmd: List[str],  # noqa: F811
             **extra: str) -> Callable[[], None]:
    env: Dict[str, str] = user.env(tree, **extra)

    def run() -> None:
        subprocess.run(cmd, check=True, env=env, user=user.uid, group=user.gid,
                       extra_groups=[], cwd=user.home, stdin=subprocess.DEVNULL)

    return run


@pytest.mark.benchmark(group="rootless-run-true", min_rounds=20, warmup=True)
def test_bwrap(benchmark, user, tree, rootfs) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    benchmark.extra_info.update(impl="bwrap --unshare-all", baseline="bwrap --unshare-all")
    benchmark(_as_user(user, tree, [str(BWRAP), "--unshare-all", "--die-with-parent",
                                    "--bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev",
                                    "--tmpfs", "/tmp", "--", "/bin/true"]))


@pytest.mark.benchmark(group="rootless-run-true", min_rounds=20, warmup=True)
def test_pycontain_rootless(benchmark, user, tree, rootfs) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    benchmark.extra_info.update(impl="pycontain run (rootless)", baseline="bwrap --unshare-all")
    a = AsUser(user, tree)
    benchmark(_as_user(user, tree, ["/usr/bin/python3", "-m", "pycontain", "run", "--rm",
                                    "--rootfs", rootfs, "--", "/bin/true"]))
    assert a.containers() == []


@pytest.mark.benchmark(group="rootless-run-true", min_rounds=20, warmup=True)
def test_pycontain_rootless_single_id(benchmark, user, tree, rootfs) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The same with one id mapped (PYCONTAIN_SUBIDS=0): no newuidmap/newgidmap to run."""
    benchmark.extra_info.update(impl="pycontain run (rootless, single id)",
                                baseline="bwrap --unshare-all")
    benchmark(_as_user(user, tree, ["/usr/bin/python3", "-m", "pycontain", "run", "--rm",
                                    "--rootfs", rootfs, "--", "/bin/true"],
                       PYCONTAIN_SUBIDS="0"))


@pytest.mark.benchmark(group="rootless-run-true", min_rounds=20, warmup=True)
def test_python_startup_rootless(benchmark, user, tree) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    benchmark.extra_info.update(impl="python3 -c pass (reference)",
                                baseline="bwrap --unshare-all")
    benchmark(_as_user(user, tree, ["/usr/bin/python3", "-c", "pass"]))
