"""Fixtures for the libpyalloc.so tests: the library, compiled C test programs, and the
configurations every real program is run under."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[2]
CTESTS = ROOT / "csrc" / "tests"
POLICIES = ("best", "worst", "first", "fifo")

# (policy, thread caches) - each policy with caches on and off, and the default policy in
# PYALLOC_SECURE=1 mode (tcache "secure": caches on, secure on).
SECURE = "secure"
CONFIGS: List[tuple] = [(p, t) for p in POLICIES for t in (True, False)] + [("best", SECURE)]
CONFIG_IDS = [f"{p}-{t if t == SECURE else 'tcache' if t else 'notcache'}" for p, t in CONFIGS]


def config_env(policy: Optional[str], tcache, **extra: str) -> Dict[str, str]:
    from pyalloc.preload import env_for

    if tcache == SECURE:
        env = env_for(policy=policy, tcache=True, secure=True)
    else:
        env = env_for(policy=policy, tcache=tcache)
    env.update(extra)
    return env


def plain_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYALLOC_")}
    env.pop("LD_PRELOAD", None)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def libpyalloc() -> str:
    from pyalloc.preload import LibraryNotFound, library_path

    try:
        return library_path()
    except LibraryNotFound as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def cc() -> str:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    pytest.skip("no C compiler")


class CBuild:
    """Compiles csrc/tests/*.c once per session (per flag set)."""

    def __init__(self, cc: str, outdir: Path):
        self.cc = cc
        self.outdir = outdir
        self.cache: Dict[tuple, str] = {}

    def __call__(self, name: str, flags: Sequence[str] = ("-O2",), tag: str = "") -> str:
        key = (name, tuple(flags))
        if key in self.cache:
            return self.cache[key]
        out = self.outdir / f"{name}{tag}"
        cmd = [self.cc, "-std=gnu11", "-g", "-fno-builtin", "-Wall", "-Wextra", "-Werror",
               *flags, "-pthread", "-o", str(out), str(CTESTS / f"{name}.c"), "-ldl"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            pytest.fail(f"cannot compile {name}: {' '.join(cmd)}\n{res.stderr}")
        self.cache[key] = str(out)
        return str(out)


@pytest.fixture(scope="session")
def cbuild(cc, tmp_path_factory) -> CBuild:
    return CBuild(cc, tmp_path_factory.mktemp("ctests"))


def run(cmd: List[str], env: Dict[str, str], timeout: float = 120,
        **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, timeout=timeout, **kw)


def no_pyalloc_noise(stderr: bytes) -> None:
    """The library must stay silent in a correct program."""
    text = stderr.decode(errors="replace")
    assert "pyalloc" not in text, text[-2000:]


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable
