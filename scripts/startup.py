#!/usr/bin/env python3
"""Where the start-up time of each command goes: interpreter, imports, the runtime's own work;
runc's command beside each, trees compared side by side (before/after a change).

    python3 scripts/startup.py [--rounds N] [--tree NAME=DIR[:plain]]... [--markdown]

Run as root from the repository's root. Every round runs, for each tree and for runc, in turn:
``run --rm /bin/true`` (pycontain's docker-like CLI against ``runc run``), then the OCI
sequence an engine drives: ``create``, ``state``, ``start``, (the container exits; this process
is its subreaper and reaps it), ``delete``. All use one busybox bundle (``runc spec``, not a
terminal, with a cgroup namespace) made in a temporary directory and removed at the end.

A tree's commands run the way its console scripts start them: ``DIR:plain`` as pip writes
them (``python3`` with ``site``: whatever the ``.pth`` files of site-packages import), else as
``pycontain/launcher.py`` writes them (``python3 -I -S``, fixed paths, ``run_main``). Per
command, the medians of:

    total       the command's wall time, from the caller's fork to its exit
    interpreter the same interpreter, started the same way, running ``pass``
    imports     the in-process time of the command minus its work (below)
    work        the command's main() in a process that imported everything first
    rest        total - interpreter - imports - work (exit, teardown, unaccounted)

Default trees: this repository (``after``). Compare with an older commit:
``git worktree add /tmp/before COMMIT && (cd /tmp/before && python3 setup.py -q build_ext
--inplace && python3 -m compileall -q pycontain)``, then ``--tree before=/tmp/before:plain
--tree after=.``.
"""

from __future__ import annotations

import argparse
import ast
import ctypes
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("run", "create", "state", "start", "delete")
_ids = itertools.count()


def cffi_dir() -> str:
    import _cffi_backend  # type: ignore[import-not-found]

    return os.path.dirname(os.path.abspath(_cffi_backend.__file__))


class Tree:
    """One pycontain tree and the way its commands start."""

    def __init__(self, name: str, path: str, plain: bool, tmp: str) -> None:
        self.name, self.path, self.plain, self.tmp = name, os.path.abspath(path), plain, tmp
        self.flags = [] if plain else ["-I", "-S"]
        self.paths = [self.path, cffi_dir()]
        self.scripts = {}
        for script, module in (("pycontain", "pycontain.cli"),
                               ("pycontain-oci", "pycontain.oci.cli")):
            p = os.path.join(tmp, f"{name}-{script}")
            with open(p, "w") as f:
                f.write(self._script(module))
            os.chmod(p, 0o755)
            self.scripts[script] = p

    def _script(self, module: str) -> str:
        if self.plain:  # what pip writes for an entry point `module:main`
            return (f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {self.path!r})\n"
                    f"from {module} import main\nsys.exit(main())\n")
        return (f"#!{sys.executable} -IS\nimport sys\nsys.path[0:0] = {self.paths!r}\n"
                f"from {module} import run_main\nrun_main()\n")

    def inproc(self, key: str, module: str, argv: List[str], preload: bool) -> float:
        """Seconds from the first import to the end of main(argv), in a fresh interpreter
        started like the script; with ``preload``, main(argv) alone after a warm import of
        every module a former run of the same command (``key``) loaded."""
        mods = _MODULES.get((self.name, key), [])
        out = os.path.join(self.tmp, "inproc.out")
        code = ("import sys, time, os\n"
                f"sys.path[0:0] = {self.paths!r}\n"
                f"pre = {mods if preload else []!r}\n"
                "for m in pre:\n    __import__(m)\n"
                "t0 = time.perf_counter()\n"
                f"from {module} import main\n"
                "code = main(sys.argv[1:])\n"
                "t1 = time.perf_counter()\n"
                "mods = sorted(m for m in sys.modules if m.startswith(('pycontain', '_cffi', "
                "'_json', 'json', 're', 'fcntl', 'select', 'socket', 'shutil')))\n"
                "sys.stdout.flush()\n"
                f"with open({out!r}, 'w') as f:\n"
                "    f.write(repr((t1 - t0, code, mods)))\n"
                "os._exit(0)\n")
        # A file, not a pipe: the container's process is a fork of this one and keeps its
        # descriptors until its exec.
        subprocess.run([sys.executable, *self.flags, "-c", code, *argv], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        with open(out) as f:
            seconds, rc, mods = ast.literal_eval(f.read())
        if rc not in (0, None):
            raise SystemExit(f"startup: {self.name}: {argv} exited {rc}")
        _MODULES.setdefault((self.name, key), mods)
        return float(seconds)


_MODULES: Dict[Tuple[str, str], List[str]] = {}


def wall(cmd: List[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def make_bundle(base: str) -> str:
    rootfs = os.path.join(base, "rootfs")
    for d in ("bin", "proc", "dev", "sys", "tmp"):
        os.makedirs(os.path.join(rootfs, d))
    busybox = shutil.which("busybox")
    if busybox is None:
        raise SystemExit("startup: busybox is not installed (apt-get install busybox-static)")
    shutil.copy2(busybox, os.path.join(rootfs, "bin", "busybox"))
    for applet in ("sh", "true"):
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    subprocess.run(["runc", "spec"], cwd=base, check=True)
    with open(os.path.join(base, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    if "cgroup" not in {n["type"] for n in cfg["linux"]["namespaces"]}:
        cfg["linux"]["namespaces"].append({"type": "cgroup"})
    with open(os.path.join(base, "config.json"), "w") as f:
        json.dump(cfg, f)
    return rootfs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--tree", action="append", default=[],
                    help="NAME=DIR or NAME=DIR:plain (default: after=. with the fast launcher)")
    ap.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("startup: run as root (containers with cgroups)")
    if shutil.which("runc") is None:
        raise SystemExit("startup: runc is not installed")
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: reap the containers
    base = tempfile.mkdtemp(prefix="pycontain-startup-")
    try:
        return measure(args, base)
    finally:
        subprocess.run(["runc", "--root", os.path.join(base, "runc"), "list"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def measure(args: argparse.Namespace, base: str) -> int:
    rootfs = make_bundle(base)
    specs = args.tree or ["after=."]
    trees = []
    for s in specs:
        name, _, rest = s.partition("=")
        path, _, kind = rest.partition(":")
        trees.append(Tree(name, path or ".", kind == "plain", base))
    # Every command started from here (scripts, in-process runs) uses roots of its own.
    os.environ.update(PYCONTAIN_ROOT=os.path.join(base, "pc-state"),
                      PYCONTAIN_STORAGE=os.path.join(base, "pc-storage"))
    res: Dict[str, Dict[str, Dict[str, List[float]]]] = {}

    def add(who: str, cmd: str, part: str, v: float) -> None:
        res.setdefault(who, {}).setdefault(cmd, {}).setdefault(part, []).append(v)

    def seq(cid: str) -> List[Tuple[str, List[str]]]:
        return [("create", ["create", "--bundle", base, "--pid-file", pidf, cid]),
                ("state", ["state", cid]), ("start", ["start", cid]),
                ("delete", ["delete", cid])]

    pidf = os.path.join(base, "pid")

    def reap() -> None:
        with open(pidf) as f:
            os.waitpid(int(f.read()), 0)

    def oci_cycle(who: str, binary: List[str], root: str, tree: Optional[Tree]) -> None:
        for cmd, a in seq(f"s{os.getpid()}-{next(_ids)}"):
            if cmd == "delete":
                reap()
            add(who, cmd, "total", wall([*binary, "--root", root, *a]))
        if tree is None:
            return
        for preload in (False, True):  # the same sequence in process: cold, then warm
            for cmd, a in seq(f"s{os.getpid()}-{next(_ids)}"):
                if cmd == "delete":
                    reap()
                t = tree.inproc(cmd, "pycontain.oci.cli", ["--root", root, *a], preload)
                add(who, cmd, "work" if preload else "inproc", t)

    run_args = ["run", "--rm", "--rootfs", rootfs, "--", "/bin/true"]
    for rnd in range(args.rounds + 1):  # round 0 warms caches and records module lists
        for tree in trees:
            who = tree.name
            add(who, "run", "total", wall([tree.scripts["pycontain"], *run_args]))
            add(who, "run", "inproc", tree.inproc("run", "pycontain.cli", run_args, False))
            add(who, "run", "work", tree.inproc("run", "pycontain.cli", run_args, True))
            add(who, "-", "interpreter",
                wall([sys.executable, *tree.flags, "-c", "pass"]))
            oci_cycle(who, [tree.scripts["pycontain-oci"]], os.path.join(base, f"oci-{who}"),
                      tree)
        add("runc", "run", "total", wall(["runc", "--root", os.path.join(base, "runc"), "run",
                                          "--bundle", base, f"r{os.getpid()}-{next(_ids)}"]))
        oci_cycle("runc", ["runc"], os.path.join(base, "runc"), None)
        if rnd == 0:
            res.clear()
    report(res, trees, args.markdown, args.rounds)
    return 0


def report(res: Dict, trees: List[Tree], markdown: bool, rounds: int) -> None:
    med = statistics.median
    runc = {c: med(res["runc"][c]["total"]) for c in COMMANDS}
    cycle_runc = runc["create"] + runc["start"] + runc["delete"]
    head = ["command", "runc", *(f"{t.name} {p}" for t in trees
                                 for p in ("total", "x runc", "interp", "imports", "work",
                                           "rest"))]
    rows = []
    for c in COMMANDS:
        row = [c, f"{runc[c] * 1e3:.1f}"]
        for t in trees:
            r = res[t.name]
            total = med(r[c]["total"])
            interp = med(r["-"]["interpreter"])
            inproc = med(r[c]["inproc"])
            work = med(r[c]["work"])
            row += [f"{total * 1e3:.1f}", f"{total / runc[c]:.2f}", f"{interp * 1e3:.1f}",
                    f"{(inproc - work) * 1e3:.1f}", f"{work * 1e3:.1f}",
                    f"{(total - interp - inproc) * 1e3:.1f}"]
        rows.append(row)
    row = ["create+start+delete", f"{cycle_runc * 1e3:.1f}"]
    for t in trees:
        r = res[t.name]
        cyc = sum(med(r[c]["total"]) for c in ("create", "start", "delete"))
        row += [f"{cyc * 1e3:.1f}", f"{cyc / cycle_runc:.2f}", "", "", "", ""]
    rows.append(row)
    print(f"medians of {rounds} rounds, ms (python: {sys.executable}, "
          f"{'.'.join(map(str, sys.version_info[:3]))})")
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head, *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))


if __name__ == "__main__":
    sys.exit(main())
