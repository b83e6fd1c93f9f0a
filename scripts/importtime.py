#!/usr/bin/env python3
"""What a console script's command imports, and how long that takes (``python3 -X importtime``).

    python3 scripts/importtime.py [--tree DIR] [--runs N] SCRIPT ARGS...

SCRIPT is a console script of pyproject.toml (``pycontain``, ``pycontain-oci``, ``pyalloc``);
its entry point is read from DIR's pyproject.toml (default: this repository), so two trees can
be compared (``git worktree add /tmp/before HEAD~1`` and build it in place first). The command
runs N times (default 15) with DIR first on sys.path; the figures are medians over the runs,
counting only the imports made after the interpreter's own start-up (``site`` and what it loads
are not the command's):

    modules     how many modules the command imported
    import ms   the sum of their self times (every module's own top-level code)
    pycontain   the part of that in pycontain.* modules

The command runs for real (``pycontain run`` starts a container): give it one that is cheap.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tomllib

MARK = "--pycontain-importtime-mark--"


def entry_point(tree: str, script: str) -> str:
    with open(os.path.join(tree, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    if script not in scripts:
        raise SystemExit(f"importtime: {script!r} is not a console script of {tree} "
                         f"(one of {', '.join(sorted(scripts))})")
    return str(scripts[script])


def one_run(tree: str, entry: str, args: list) -> tuple:
    module, _, func = entry.partition(":")
    code = (f"import sys; sys.path.insert(0, {tree!r}); sys.stderr.write({MARK!r} + '\\n'); "
            f"sys.argv[0] = 'x'; from {module} import {func} as _m; _r = _m()")
    env = dict(os.environ, PYTHONPATH="")
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *args],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                       check=False)
    lines = p.stderr.splitlines()
    if MARK not in lines:
        raise SystemExit(f"importtime: the command failed:\n{p.stderr[-2000:]}")
    total = ours = 0
    modules = 0
    for line in lines[lines.index(MARK) + 1:]:
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        fields = line[len("import time:"):].split("|")
        self_us, name = int(fields[0]), fields[2].strip()
        total += self_us
        modules += 1
        if name == "pycontain" or name.startswith("pycontain."):
            ours += self_us
    return modules, total / 1000, ours / 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("script")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    tree = os.path.abspath(a.tree)
    entry = entry_point(tree, a.script)
    runs = [one_run(tree, entry, a.args) for _ in range(a.runs)]
    mods = statistics.median(r[0] for r in runs)
    total = statistics.median(r[1] for r in runs)
    ours = statistics.median(r[2] for r in runs)
    print(f"{a.script} {' '.join(a.args)}  [{entry}, {tree}, {a.runs} runs]")
    print(f"  modules {mods:.0f}  import ms {total:.2f}  pycontain {ours:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
