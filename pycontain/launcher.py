"""Fast console scripts: ``python3 -m pycontain.launcher [--bindir DIR] [--check]``.

The scripts pip writes for ``pycontain`` and ``pycontain-oci`` start a full interpreter:
``site`` runs and imports whatever the ``.pth`` files of site-packages import (on some machines
that alone takes 20 ms or more), before a line of pycontain runs. Engines call
``pycontain-oci`` several times per container, so this cost is paid again and again.

This module rewrites those two scripts so that the interpreter runs with ``-I -S``: isolated
(no ``PYTHON*`` variables, no user site, no current directory on the path) and without
``site``. The script then puts back the only directories pycontain needs: the one holding the
``pycontain`` (and ``pyalloc``) packages, and the one holding ``_cffi_backend``. Both are found
when the script is written. ``.pth`` files are not processed; pycontain needs none.
``make build`` runs it after ``pip install``. A later ``pip install`` puts the standard scripts
back, and those work too, only slower. ``--check`` reports whether the installed scripts are
the fast kind. A launcher whose directories have moved fails with one line that says to run this
module again.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Sequence

SCRIPTS = {"pycontain": "pycontain.cli", "pycontain-oci": "pycontain.oci.cli"}
MARK = "# pycontain fast launcher"


def paths() -> List[str]:
    """The directories a launcher puts on sys.path: pycontain's, then _cffi_backend's."""
    import _cffi_backend  # type: ignore[import-not-found]

    import pycontain

    out = [os.path.dirname(os.path.dirname(os.path.abspath(pycontain.__file__))),
           os.path.dirname(os.path.abspath(_cffi_backend.__file__))]
    return list(dict.fromkeys(out))


def render(module: str, python: Optional[str] = None,
           path_list: Optional[Sequence[str]] = None) -> str:
    python = python or sys.executable
    dirs = list(path_list if path_list is not None else paths())
    return (f"#!{python} -IS\n"
            f"{MARK} (python3 -m pycontain.launcher): no site, fixed paths\n"
            "import sys\n"
            f"sys.path[0:0] = {dirs!r}\n"
            "try:\n"
            f"    from {module} import run_main\n"
            "except ImportError as e:\n"
            "    sys.stderr.write(f'{sys.argv[0]}: {e}: the installation moved; run '\n"
            f"                     '{python} -m pycontain.launcher\\n')\n"
            "    sys.exit(125)\n"
            "run_main()  # main(), then os._exit: no interpreter teardown\n")


def write_script(path: str, module: str, path_list: Optional[Sequence[str]] = None) -> None:
    """Writes (atomically, mode 0755) a fast launcher of ``module`` at ``path``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(render(module, path_list=path_list))
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def scripts_dir() -> str:
    import sysconfig

    return sysconfig.get_path("scripts")


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python3 -m pycontain.launcher",
                                description="write fast pycontain and pycontain-oci scripts")
    p.add_argument("--bindir", help="where the scripts are (default: this interpreter's "
                                    "scripts directory)")
    p.add_argument("--check", action="store_true", help="only report which kind is installed")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing when all went well")
    args = p.parse_args(argv)
    bindir = args.bindir or scripts_dir()
    status = 0
    for name, module in SCRIPTS.items():
        path = os.path.join(bindir, name)
        try:
            with open(path) as f:
                fast = MARK in f.read(4096)
        except OSError:
            if args.check:
                print(f"{path}: not installed")
                status = 1
            else:  # nothing to rewrite: the package runs as `python3 -m pycontain`
                print(f"{path}: not installed, left alone", file=sys.stderr)
            continue
        if args.check:
            print(f"{path}: {'fast launcher' if fast else 'standard script'}")
            continue
        write_script(path, module)
        if not args.quiet:
            print(f"{path}: fast launcher")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
