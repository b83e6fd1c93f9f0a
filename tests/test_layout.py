"""The shape of the pycontain package: no import cycles between its modules, each subsystem
importing only the layers below it, the lazily resolved names pointing at what exists, and
the start-up paths of the two command lines importing only what they use.

Imports are read from the source (every ``import`` statement, also those inside functions, but
not those under ``if TYPE_CHECKING:``, which never run), so a cycle that only a rarely used
path would close is found too.
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from typing import Dict, List, Set

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "pycontain")

# Which subsystem may import which (besides itself and the top-level helpers).
BASE = {"pycontain.defaults", "pycontain.errors", "pycontain.jsonfast"}
ALLOWED = {
    "image": set(),
    "net": set(),
    "runtime": {"image", "net"},
    "oci": {"runtime"},
    "cli": {"runtime", "image", "net"},
}


def _modules() -> Dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(PKG):
        for f in files:
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out[".".join(rel)] = os.path.join(dirpath, f)
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: str, module: str) -> Set[str]:
    """The pycontain modules that ``module`` imports when it runs."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found: Set[str] = set()
    is_pkg = path.endswith("__init__.py")

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for a in child.names:
                    found.add(a.name)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = module.split(".")
                    keep = len(parts) - child.level + (1 if is_pkg else 0)
                    base = ".".join(parts[:keep] + ([base] if base else []))
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    found.add(sub if sub in MODULES else base)
            visit(child)

    visit(tree)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {m: _imports(p, m) for m, p in MODULES.items()}


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_import_reader_sees_imports() -> None:
    """The reader is not blind: known edges, a nested (lazy) one and a package import."""
    assert "pycontain.runtime.container" in GRAPH["pycontain.runtime.runtime"]
    assert "pycontain.runtime.exec" in GRAPH["pycontain.runtime.container"]  # inside a method
    assert "pycontain.runtime.cgroups" in GRAPH["pycontain.runtime.container"]
    assert "pycontain.image.store" not in GRAPH["pycontain.image.importer"]  # TYPE_CHECKING
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert _cycles(GRAPH) == []


def _subsystem(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else ""


def test_each_subsystem_imports_only_the_layers_below_it() -> None:
    wrong = []
    for m, deps in GRAPH.items():
        sub = _subsystem(m)
        if m in BASE:
            wrong += [f"{m} -> {d}" for d in deps]
            continue
        if not sub:
            continue  # the top-level API, demo and __main__ may use everything
        for d in deps:
            dsub = _subsystem(d)
            if d in BASE or dsub == sub or dsub in ALLOWED[sub]:
                continue
            wrong.append(f"{m} -> {d}")
    assert wrong == []


def test_lazily_resolved_names_exist() -> None:
    """What `pycontain.X`, `pycontain.image.X` and the CLI's verb table resolve on first use."""
    import pycontain
    import pycontain.image
    from pycontain import cli

    for name in pycontain._LAZY:
        assert getattr(pycontain, name) is not None
    for name in pycontain.__all__:
        assert hasattr(pycontain, name), name
    for name in pycontain.image._LAZY:
        assert getattr(pycontain.image, name) is not None
    for verb, (module, func) in cli.COMMANDS.items():
        mod = importlib.import_module(f"pycontain.cli.{module}")
        assert callable(getattr(mod, func)), verb
    with pytest.raises(AttributeError):
        pycontain.nope  # noqa: B018


def _loaded_by(code: str) -> Set[str]:
    """The modules ``code`` imports beyond what the interpreter's start-up already did, started
    the way the console scripts start it (pycontain/launcher.py: -I -S, fixed paths)."""
    from pycontain import launcher

    paths = launcher.paths()

    def modules(src: str) -> Set[str]:
        out = subprocess.run(
            [sys.executable, "-I", "-S", "-c",
             f"import sys\nsys.path[0:0] = {paths!r}\n{src}\n"
             "print('\\n'.join(sorted(sys.modules)))"],
            capture_output=True, text=True, check=True, cwd=ROOT)
        return set(out.stdout.split())

    return modules(code) - modules("pass")


def test_start_up_paths_import_only_what_they_use() -> None:
    """`pycontain run --rootfs` parses without argparse and needs neither the image store nor
    the OCI code; `pycontain-oci state` (engines call it again and again) needs neither the
    docker-like CLI nor images nor the container process and the syscall layer; neither loads
    the `signal` module's enums, nor `json` (whose `re` brings enum, functools and
    collections: pycontain.jsonfast drives the C accelerator instead), `shutil` or `socket`."""
    heavy = {"json", "re", "enum", "functools", "collections", "shutil", "socket", "signal",
             "argparse", "typing", "dataclasses"}
    run = _loaded_by("from pycontain.cli import parser, containers\n"
                     "parser.fast_run_args(['run', '--rm', '--rootfs', '/', '--', 'true'])\n"
                     "from pycontain.runtime import runtime")
    assert "argparse" not in run
    assert not {m for m in run if m.startswith(("pycontain.image", "pycontain.oci"))}
    assert "pycontain.runtime.exec" not in run
    assert heavy & run == set()
    oci = _loaded_by("from pycontain.oci import cli, runtime")
    assert not {m for m in oci if m.startswith(("pycontain.cli", "pycontain.image"))}
    assert not {"pycontain.runtime.process", "pycontain.runtime._sys",
                "pycontain.runtime.spec"} & oci
    assert heavy & oci == set()


# Folders docs/architecture.md names as the place for work not done yet.
PLANNED = {"pycontain/image/registry"}


def test_paths_named_in_the_docs_exist() -> None:
    """Every source path README.md and docs/*.md mention is in the tree (moves update docs)."""
    import glob
    import re

    pat = re.compile(r"(?<![\w/.])((?:csrc|pycontain|pyalloc|tests|bench|scripts|docs)/"
                     r"[\w/.-]*\w)")
    missing = []
    for doc in [os.path.join(ROOT, "README.md"), *glob.glob(os.path.join(ROOT, "docs", "*.md"))]:
        with open(doc) as f:
            for m in pat.finditer(f.read()):
                if m.group(1) not in PLANNED and not os.path.exists(os.path.join(ROOT, m.group(1))):
                    missing.append(f"{os.path.basename(doc)}: {m.group(1)}")
    assert missing == []
