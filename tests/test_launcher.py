"""The fast console scripts (pycontain/launcher.py): written with -I -S, they run the CLI with
no site and no PYTHON* variables, find pycontain and cffi's backend on their fixed paths, and
say what to do when the installation moved."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from pycontain import launcher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(bindir: Any) -> None:
    r = subprocess.run([sys.executable, "-m", "pycontain.launcher", "--bindir", str(bindir)],
                       capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr


def test_scripts_run_isolated_and_without_site(tmp_path: Any) -> None:
    for name in launcher.SCRIPTS:
        (tmp_path / name).write_text("#!/bin/sh\nexit 3\n")
    _write(tmp_path)
    first = (tmp_path / "pycontain-oci").read_text().splitlines()[0]
    assert first == f"#!{sys.executable} -IS"
    # A PYTHONPATH with a shadowing `pycontain` package is ignored (-I).
    shadow = tmp_path / "shadow" / "pycontain"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit('shadow package imported')\n")
    env = dict(os.environ, PYTHONPATH=str(shadow.parent))
    r = subprocess.run([str(tmp_path / "pycontain-oci"), "--version"], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "pycontain-oci" in r.stdout or "version" in r.stdout
    r = subprocess.run([str(tmp_path / "pycontain"), "--help"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert "run" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pycontain.launcher", "--bindir", str(tmp_path),
                        "--check"], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0 and r.stdout.count("fast launcher") == 2, r.stdout


def test_a_moved_installation_fails_with_one_line(tmp_path: Any) -> None:
    script = tmp_path / "pycontain-oci"
    script.write_text(launcher.render("pycontain.oci.cli", path_list=[str(tmp_path / "gone")]))
    script.chmod(0o755)
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert r.returncode == 125
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "pycontain.launcher" in lines[0], r.stderr


def test_check_reports_standard_scripts_and_missing_ones(tmp_path: Any) -> None:
    (tmp_path / "pycontain").write_text("#!/usr/bin/python3\nprint('standard')\n")
    r = subprocess.run([sys.executable, "-m", "pycontain.launcher", "--bindir", str(tmp_path),
                        "--check"], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 1
    assert "standard script" in r.stdout and "not installed" in r.stdout, r.stdout


def test_missing_cffi_is_named_in_one_line(tmp_path: Any) -> None:
    """Without site-packages on the path (python3 -S), the error names cffi's backend, not a
    native module that is in fact built; nothing is left in the state root."""
    env = dict(os.environ, PYTHONPATH=ROOT, PYCONTAIN_ROOT=str(tmp_path / "state"),
               PYCONTAIN_STORAGE=str(tmp_path / "storage"))
    for cmd, code in ((["-m", "pycontain", "run", "--rm", "--rootfs", "/", "--", "true"], 125),
                      (["-m", "pycontain.oci.cli", "--root", str(tmp_path / "oci"), "create",
                        "--bundle", str(tmp_path), "c1"], 1)):
        r = subprocess.run([sys.executable, "-S", *cmd], capture_output=True, text=True, env=env,
                           cwd=str(tmp_path))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == code and len(lines) == 1, r.stderr
        assert "_cffi_backend" in lines[0] and "not built" not in lines[0], lines[0]
    oci_root = tmp_path / "oci"
    assert not oci_root.exists() or not os.listdir(oci_root)
