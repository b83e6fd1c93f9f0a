"""Real programs under libpyalloc.so, every policy with thread caches on and off; each output
is compared with a run of the same program without the library.

CPython's own test suite (PYTHONMALLOC=malloc so every object goes through malloc): the slice
of 8 test modules runs under all 8 configurations, ~25 s each with caches on and 30-45 s with
them off on 2 cores (about 4.5 minutes in all). Set PYALLOC_TEST_QUICK=1 to run only a
5-module subset outside the default configuration. See docs/preload.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import CONFIG_IDS, CONFIGS, config_env, no_pyalloc_noise, plain_env, run

SQL = (Path(__file__).resolve().parents[2] / "bench" / "preload" / "workload.sql").read_text()

CPY_TESTS_FULL = ["test_dict", "test_list", "test_set", "test_unicode", "test_json", "test_re",
                  "test_threading", "test_subprocess"]
CPY_TESTS_SUBSET = ["test_dict", "test_list", "test_set", "test_json", "test_re"]
FULL_CONFIGS = ({("best", True)} if os.environ.get("PYALLOC_TEST_QUICK")
                else {(p, t) for p in ("best", "worst", "first", "fifo") for t in (True, False)})
# Fails without the library too on hosts whose site-packages .pth files import threading.
CPY_IGNORE = ["test_import_from_another_thread"]


def _compare(cmd, env, cwd=None, stdin=None, timeout=300):
    base = run(cmd, plain_env(), cwd=cwd, input=stdin, timeout=timeout)
    res = run(cmd, env, cwd=cwd, input=stdin, timeout=timeout)
    assert base.returncode == 0, base.stderr.decode()[-2000:]
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert res.stdout == base.stdout
    no_pyalloc_noise(res.stderr)
    return res


@pytest.mark.timeout(300)
@pytest.mark.skipif(not shutil.which("sqlite3"), reason="sqlite3 not installed (apt sqlite3)")
@pytest.mark.parametrize("policy,tcache", CONFIGS, ids=CONFIG_IDS)
def test_sqlite3(libpyalloc, tmp_path, policy, tcache):
    env = config_env(policy, tcache)
    for name in ("base.db", "pyalloc.db"):
        (tmp_path / name).unlink(missing_ok=True)
    base = run(["sqlite3", str(tmp_path / "base.db")], plain_env(), input=SQL.encode())
    res = run(["sqlite3", str(tmp_path / "pyalloc.db")], env, input=SQL.encode())
    assert base.returncode == 0, base.stderr.decode()
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert res.stdout == base.stdout
    assert b"ok" in res.stdout
    no_pyalloc_noise(res.stderr)
    _compare(["sqlite3", ":memory:"], env, stdin=SQL.replace("PRAGMA journal_mode=WAL;", "")
             .encode())


def _git_env(env):
    env = dict(env)
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com", GIT_AUTHOR_DATE="2024-01-01T00:00:00Z",
               GIT_COMMITTER_DATE="2024-01-01T00:00:00Z", GIT_CONFIG_NOSYSTEM="1",
               HOME="/nonexistent", GIT_CONFIG_GLOBAL="/dev/null")
    return env


def _git_session(root: Path, env) -> bytes:
    """init, add, commit (twice), log, gc; returns everything printed."""
    out = []

    def git(*args):
        res = run(["git", "-C", str(root), *args], env, timeout=120)
        assert res.returncode == 0, f"git {' '.join(args)}: {res.stderr.decode()[-2000:]}"
        no_pyalloc_noise(res.stderr)
        out.append(res.stdout)

    root.mkdir()
    git("init", "-q", "-b", "main")
    for i in range(300):
        d = root / f"dir{i % 13}"
        d.mkdir(exist_ok=True)
        text = "".join(f"line {j} of file {i}\n" for j in range(i % 50 + 1))
        (d / f"file{i}.txt").write_text(text)
    git("add", "-A")
    git("commit", "-q", "-m", "first")
    for i in range(0, 300, 7):
        p = root / f"dir{i % 13}" / f"file{i}.txt"
        p.write_text(p.read_text().upper())
    git("add", "-A")
    git("commit", "-q", "-m", "second")
    git("log", "--stat", "--format=%H %T %s")
    git("gc", "-q", "--aggressive")
    git("fsck", "--no-progress")
    git("log", "-p", "-1", "--format=%H")
    git("count-objects", "-v")
    return b"".join(out).replace(str(root).encode(), b"ROOT")


@pytest.mark.timeout(300)
@pytest.mark.skipif(not shutil.which("git"), reason="git not installed")
@pytest.mark.parametrize("policy,tcache", CONFIGS, ids=CONFIG_IDS)
def test_git(libpyalloc, tmp_path, policy, tcache):
    base = _git_session(tmp_path / "base", _git_env(plain_env()))
    res = _git_session(tmp_path / "pyalloc", _git_env(config_env(policy, tcache)))
    # count-objects reports sizes that can differ by compression timing: compare the rest.
    strip = lambda b: b"\n".join(ln for ln in b.split(b"\n") if not ln.startswith(b"size"))  # noqa: E731
    assert strip(res) == strip(base)


PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct node { struct node *l, *r; int key; char name[24]; };
static struct node *ins(struct node *t, int k) {
    if (!t) {
        t = calloc(1, sizeof *t); t->key = k;
        snprintf(t->name, sizeof t->name, "n%d", k); return t;
    }
    if (k < t->key) t->l = ins(t->l, k); else t->r = ins(t->r, k);
    return t;
}
static long sum(struct node *t) { return t ? t->key + sum(t->l) + sum(t->r) : 0; }
static void drop(struct node *t) { if (t) { drop(t->l); drop(t->r); free(t); } }
int main(void) {
    struct node *t = NULL; unsigned x = 12345;
    for (int i = 0; i < 100000; i++) {
        x = x * 1103515245u + 12345u; t = ins(t, (int)(x >> 8) % 1000000);
    }
    char *s = NULL; size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        s = realloc(s, n + 16); n += (size_t)sprintf(s + n, "%d,", i);
    }
    printf("%ld %zu %.20s\n", sum(t), strlen(s), s);
    drop(t); free(s);
    return 0;
}
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("policy,tcache", CONFIGS, ids=CONFIG_IDS)
def test_cc_builds_a_program(libpyalloc, cc, tmp_path, policy, tcache):
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    env = config_env(policy, tcache)
    outs = {}
    for tag, e in (("plain", plain_env()), ("pyalloc", env)):
        obj = tmp_path / f"prog-{tag}.o"
        res = run([cc, "-O2", "-g", "-c", "-o", str(obj), str(src)], e, cwd=tmp_path)
        assert res.returncode == 0, res.stderr.decode()[-3000:]
        no_pyalloc_noise(res.stderr)
        exe = tmp_path / f"prog-{tag}"
        res = run([cc, "-o", str(exe), str(obj)], e, cwd=tmp_path)
        assert res.returncode == 0, res.stderr.decode()[-3000:]
        outs[tag] = obj.read_bytes()
        res = run([str(exe)], e)  # the built program runs under the library too
        assert res.returncode == 0
        outs[tag + "-out"] = res.stdout
    assert outs["pyalloc"] == outs["plain"], "the compiler produced different code"
    assert outs["pyalloc-out"] == outs["plain-out"]


def _cpython_test_available(python_exe) -> bool:
    res = subprocess.run([python_exe, "-c", "import test.test_dict, test.libregrtest"],
                         capture_output=True)
    return res.returncode == 0


@pytest.mark.timeout(420)
@pytest.mark.parametrize("policy,tcache", CONFIGS, ids=CONFIG_IDS)
def test_cpython_test_suite(libpyalloc, python_exe, tmp_path, policy, tcache):
    if not _cpython_test_available(python_exe):
        pytest.skip("CPython's test package is not installed (Debian: libpython3.X-testsuite)")
    tests = CPY_TESTS_FULL if (policy, tcache) in FULL_CONFIGS else CPY_TESTS_SUBSET
    env = config_env(policy, tcache, PYTHONMALLOC="malloc")
    cmd = [python_exe, "-m", "test", "-j2", "--timeout", "300"]
    for pat in CPY_IGNORE:
        cmd += ["-i", pat]
    res = run(cmd + tests, env, cwd=tmp_path, timeout=400)
    text = res.stdout.decode(errors="replace")
    detail = text[-4000:] + res.stderr.decode(errors="replace")[-2000:]
    assert res.returncode == 0 and "Result: SUCCESS" in text, detail
    assert "pyalloc:" not in text + res.stderr.decode(errors="replace")
