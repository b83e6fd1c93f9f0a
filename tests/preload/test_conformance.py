"""The C conformance test, the multi-threaded stress and the fork test: plain, preloaded
under every configuration, and (the test programs themselves) under ASan/UBSan."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import CONFIG_IDS, CONFIGS, SECURE, config_env, plain_env, run

pytestmark = pytest.mark.timeout(300)


def test_conformance_plain(cbuild):
    res = run([cbuild("conformance")], plain_env())
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert b"system malloc" in res.stdout and b" 0 failures" in res.stdout


@pytest.mark.parametrize("policy,tcache", CONFIGS, ids=CONFIG_IDS)
def test_conformance_preloaded(cbuild, libpyalloc, policy, tcache):
    res = run([cbuild("conformance")], config_env(policy, tcache, PYALLOC_CHECK="quiet"))
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()[-3000:]
    assert b"conformance (pyalloc)" in res.stdout and b" 0 failures" in res.stdout


def test_conformance_invalid_pointer_warnings(cbuild, libpyalloc):
    """PYALLOC_CHECK=warn: one line per invalid pointer, program continues."""
    res = run([cbuild("conformance")], config_env(None, None, PYALLOC_CHECK="warn"))
    assert res.returncode == 0
    lines = [ln for ln in res.stderr.decode().splitlines() if ln.startswith("pyalloc:")]
    assert lines and all(("invalid pointer" in ln or "double free" in ln) and
                         ln.endswith("ignored") for ln in lines)
    assert any("double free" in ln for ln in lines)


@pytest.mark.parametrize("policy,tcache", CONFIGS, ids=CONFIG_IDS)
def test_mt_stress(cbuild, libpyalloc, policy, tcache):
    res = run([cbuild("mt_stress"), "4", "60000", "2"], config_env(policy, tcache))
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()[-3000:]
    assert b" 0 failures" in res.stdout
    assert b"pyalloc" not in res.stderr


@pytest.mark.parametrize("policy,tcache", [("best", True), ("fifo", False), ("best", SECURE)],
                         ids=["best-tcache", "fifo-notcache", "best-secure"])
def test_fork_while_allocating(cbuild, libpyalloc, policy, tcache):
    res = run([cbuild("fork_alloc"), "60", "3"], config_env(policy, tcache))
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()[-3000:]
    assert b" 0 failures" in res.stdout


def test_stress_with_stats_and_trace(cbuild, libpyalloc, tmp_path):
    """The counting and tracing paths under threads and fork."""
    env = config_env(None, None, PYALLOC_STATS=str(tmp_path / "st-%p.json"),
                     PYALLOC_TRACE=str(tmp_path / "tr-%p.bin"))
    res = run([cbuild("mt_stress"), "3", "20000", "1"], env)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    res = run([cbuild("fork_alloc"), "10", "2"], env)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert len(list(tmp_path.glob("st-*.json"))) == 2
    assert len(list(tmp_path.glob("tr-*.bin"))) >= 2


@pytest.mark.parametrize("san", ["address,undefined"])
def test_c_tests_under_sanitizers(cbuild, san):
    """The test programs themselves are clean (run with the system malloc under ASan)."""
    flags = ["-O1", f"-fsanitize={san}", "-fno-omit-frame-pointer",
             "-fno-sanitize-recover=undefined"]
    try:
        conf = cbuild("conformance", flags, tag="-asan")
        stress = cbuild("mt_stress", flags, tag="-asan")
    except BaseException as exc:  # pragma: no cover - no sanitizer runtime
        pytest.skip(f"sanitizers unavailable: {exc}")
    env = plain_env(ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1")
    res = run([conf], env, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    res = run([stress, "2", "20000", "1"], env, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-3000:]


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind not installed")
def test_trace_replay_under_valgrind(cbuild, libpyalloc, tmp_path, cc):
    """The replay engine (C, in the cffi module) is memcheck-clean: built here as a tiny
    program over csrc/preload/replay.c and the core."""
    from conftest import ROOT

    trace = tmp_path / "t.bin"
    res = run([cbuild("mt_stress"), "2", "3000", "1"],
              config_env(None, None, PYALLOC_TRACE=str(trace)))
    assert res.returncode == 0
    main = tmp_path / "replay_main.c"
    main.write_text(
        '#include <stdio.h>\n#include "preload/trace.h"\n'
        "int main(int c, char **v) { pa_replay_result r; int rc = 0;\n"
        "  for (int p = 0; p < 4; p++) rc |= pa_trace_replay(v[1], p, &r);\n"
        '  printf("%llu\\n", (unsigned long long)r.peak_live); return rc; }\n')
    exe = tmp_path / "replay"
    srcs = [str(ROOT / "csrc" / f) for f in ("core/arena.c", "core/freeindex.c",
                                             "core/pool.c", "core/slab.c", "preload/replay.c")]
    subprocess.run([cc, "-std=gnu11", "-O1", "-g", "-I", str(ROOT / "csrc" / "core"), "-I",
                    str(ROOT / "csrc"), "-o", str(exe), str(main), *srcs, "-pthread"],
                   check=True)
    res = run(["valgrind", "-q", "--error-exitcode=9", str(exe), str(trace)], plain_env(),
              timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
