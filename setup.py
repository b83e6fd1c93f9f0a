"""Build: the cffi extension modules and libpyalloc.so (the LD_PRELOAD library).

The C sources in csrc/ are compiled three times: into the CPython extension pyalloc._pool
(the Python API's Pool, Slab and Block as C types), into the cffi module pyalloc._native (API
mode: trace replay and benchmark loops), and, with the preload front end, into
pyalloc/libpyalloc.so which is shipped inside the package and found at run time with
importlib.resources.
"""

import os
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
# pyalloc/_sources.py is read as a plain file: importing the package needs the extension.
sys.path.insert(0, os.path.join(HERE, "pyalloc"))

from _sources import (  # noqa: E402
    CORE_CFLAGS,
    INCLUDE_DIRS,
    POOL_MODULE_SOURCES,
    PRELOAD_CFLAGS,
    PRELOAD_LDFLAGS,
    PRELOAD_SOURCES,
)


class BuildExtWithPreload(build_ext):
    """build_ext that also links libpyalloc.so next to the extension modules."""

    def run(self) -> None:
        super().run()
        if not PRELOAD_SOURCES:
            return
        if self.inplace:
            out_dir = os.path.join(HERE, "pyalloc")
        else:
            out_dir = os.path.join(self.build_lib, "pyalloc")
        os.makedirs(out_dir, exist_ok=True)
        target = os.path.join(out_dir, "libpyalloc.so")
        cc = os.environ.get("CC", "cc")
        cmd = [cc, *PRELOAD_CFLAGS, "-o", target,
               *[os.path.join(HERE, s) for s in PRELOAD_SOURCES], *PRELOAD_LDFLAGS]
        print(" ".join(cmd))
        subprocess.check_call(cmd)


CFFI_MODULES = [
    "pyalloc/_build.py:ffibuilder",
    "pycontain/runtime/_sys_build.py:ffibuilder",
]

POOL_MODULE = Extension(
    "pyalloc._pool",
    sources=POOL_MODULE_SOURCES,
    include_dirs=INCLUDE_DIRS,
    extra_compile_args=CORE_CFLAGS,
)

setup(
    ext_modules=[POOL_MODULE],
    cffi_modules=[m for m in CFFI_MODULES if os.path.exists(os.path.join(HERE, m.split(":")[0]))],
    cmdclass={"build_ext": BuildExtWithPreload},
    package_data={"pyalloc": ["libpyalloc.so"]},
)
