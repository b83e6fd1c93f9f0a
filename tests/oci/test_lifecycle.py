"""The OCI lifecycle (runtime-spec "Lifecycle" and "Operations") driven through pycontain-oci on
busybox bundles written by ``runc spec`` and edited by the tests."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.oci.conftest import RUNC, Bundle, Oci

STATE_KEYS = {"ociVersion", "id", "status", "pid", "bundle", "annotations"}


def test_create_start_state_delete(oci: Oci, bundle: Bundle) -> None:
    bundle.set_args("sh", "-c", "echo out-$(hostname); echo err >&2; read x; exit 3")
    bundle.edit(lambda c: c.update(annotations={"org.example/k": "v"}))
    cid = oci.new_id()
    pid_file = os.path.join(oci.base, "pid")
    r = oci.create(bundle, cid, "--pid-file", pid_file, input=b"line\n")
    assert r.stdout == b""  # nothing runs before start
    st = oci.state(cid)
    assert STATE_KEYS <= set(st)
    assert st["status"] == "created" and st["id"] == cid and st["bundle"] == bundle.path
    assert st["annotations"] == {"org.example/k": "v"}
    with open(pid_file) as f:
        assert int(f.read()) == st["pid"] > 0
    # the process exists, inside the new namespaces, but the user program has not run yet
    with open(f"/proc/{st['pid']}/cmdline", "rb") as f:
        assert b"echo out" not in f.read()
    assert os.readlink(f"/proc/{st['pid']}/ns/pid") != os.readlink("/proc/self/ns/pid")
    # wrong-state operations fail and change nothing
    assert oci.run("delete", cid).returncode == 1
    assert oci.state(cid)["status"] == "created"
    oci.run("start", cid, check=0)
    assert oci.run("start", cid).returncode == 1  # only a created container starts
    assert oci.reap(st["pid"]) == 3
    st = oci.wait_status(cid, "stopped")
    assert st["pid"] == 0
    assert oci.run("kill", cid, "KILL").returncode == 1  # stopped: nothing to signal
    assert oci.run("start", cid).returncode == 1
    oci.run("delete", cid, check=0)
    r = oci.run("state", cid)
    assert r.returncode == 1 and b"does not exist" in r.stderr
    assert oci.run("delete", cid).returncode == 1
    oci.run("delete", "--force", cid, check=0)  # runc: --force on a missing id is not an error


def test_stdio_is_inherited_from_create(oci: Oci, bundle: Bundle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The container's stdio is create's (engines pass their pipes to create)."""
    import subprocess

    cid = oci.new_id()
    bundle.set_args("sh", "-c", "read x; echo got:$x; echo oops >&2", cgroup=oci.cgroup(cid))
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        p = subprocess.run(oci.cmd("create", "--bundle", bundle.path, cid), input=b"hello\n",
                           stdout=out, stderr=err, timeout=30)
    assert p.returncode == 0
    pid = oci.state(cid)["pid"]
    oci.pids.append(pid)
    oci.run("start", cid, check=0)
    assert oci.reap(pid) == 0
    assert (tmp_path / "out").read_bytes() == b"got:hello\n"
    assert (tmp_path / "err").read_bytes() == b"oops\n"
    oci.run("delete", cid, check=0)


def test_kill_and_force_delete(oci: Oci, bundle: Bundle) -> None:
    bundle.set_args("sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.05; done")
    cid = oci.new_id()
    oci.create(bundle, cid)
    pid = oci.state(cid)["pid"]
    oci.run("start", cid, check=0)
    assert oci.state(cid)["status"] == "running"
    time.sleep(0.2)  # let the shell install its trap
    oci.run("kill", cid, "TERM", check=0)
    assert oci.reap(pid) == 42
    oci.wait_status(cid, "stopped")
    oci.run("delete", cid, check=0)
    # a running container: delete refuses, --force kills and removes
    bundle.set_args("sleep", "100")
    cid = oci.new_id()
    oci.create(bundle, cid)
    pid = oci.state(cid)["pid"]
    oci.run("start", cid, check=0)
    r = oci.run("delete", cid)
    assert r.returncode == 1 and b"running" in r.stderr
    assert oci.state(cid)["status"] == "running"
    oci.run("delete", "--force", cid, check=0)
    assert oci.reap(pid) == -signal.SIGKILL


def test_kill_signal_forms_and_all(oci: Oci, bundle: Bundle) -> None:
    bundle.set_args("sh", "-c", "sleep 100 & sleep 100 & wait")
    cid = oci.new_id()
    oci.create(bundle, cid)
    pid = oci.state(cid)["pid"]
    oci.run("start", cid, check=0)
    deadline = time.monotonic() + 5
    while len(json.loads(oci.run("ps", "--format", "json", cid, check=0).stdout)) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pids = json.loads(oci.run("ps", "--format", "json", cid, check=0).stdout)
    assert pid in pids
    assert oci.run("kill", cid, "NOSUCHSIG").returncode == 1
    oci.run("kill", "--all", cid, "9", check=0)
    assert oci.reap(pid) == -9
    oci.wait_status(cid, "stopped")
    oci.run("delete", cid, check=0)


def test_delete_created_container_needs_force(oci: Oci, bundle: Bundle) -> None:
    bundle.set_args("true")
    cid = oci.new_id()
    oci.create(bundle, cid)
    pid = oci.state(cid)["pid"]
    assert oci.run("delete", cid).returncode == 1
    oci.run("kill", cid, "KILL", check=0)  # a created container can be killed
    assert oci.reap(pid) == -9
    assert oci.wait_status(cid, "stopped")["pid"] == 0
    oci.run("delete", cid, check=0)


def test_create_errors(oci: Oci, bundle: Bundle) -> None:
    cid = oci.new_id()
    bundle.set_args("true")
    oci.create(bundle, cid)
    r = oci.create(bundle, cid, check=1)
    assert b"already exists" in r.stderr
    oci.run("delete", "--force", cid, check=0)
    r = oci.run("create", "--bundle", "/nonexistent", oci.new_id(), check=1)
    assert b"config.json" in r.stderr
    bundle.set_args("/bin/not-there")
    r = oci.create(bundle, oci.new_id(), check=1)
    assert b"not found" in r.stderr
    bundle.set_args("true")
    bundle.edit(lambda c: c["linux"]["namespaces"].append({"type": "user"}))
    r = oci.create(bundle, oci.new_id(), check=1)
    assert b"needs linux.uidMappings" in r.stderr  # (tests/oci/test_userns.py for the rest)
    assert oci.run("--systemd-cgroup", "create", "--bundle", bundle.path, "x").returncode == 1
    assert oci.run("create", "--no-such-flag", "x").returncode == 1
    r = oci.run("state", "../etc")
    assert r.returncode == 1 and b"invalid container id" in r.stderr
    assert not os.path.isdir(oci.root) or os.listdir(oci.root) == []  # failures leave nothing


def test_run_foreground_and_detached(oci: Oci, bundle: Bundle) -> None:
    cid = oci.new_id()
    bundle.set_args("sh", "-c", "echo run-output; exit 5", cgroup=oci.cgroup(cid))
    r = oci.run("run", "--bundle", bundle.path, cid)
    assert r.returncode == 5 and r.stdout == b"run-output\n"
    assert oci.run("state", cid).returncode == 1  # run deletes the container
    cid = oci.new_id()
    bundle.set_args("sleep", "100", cgroup=oci.cgroup(cid))
    import subprocess

    r = subprocess.run(oci.cmd("run", "--detach", "--bundle", bundle.path, cid),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
    assert r.returncode == 0
    st = oci.state(cid)
    oci.pids.append(st["pid"])
    assert st["status"] == "running"
    oci.run("delete", "--force", cid, check=0)


def test_exec_args_process_json_and_detach(oci: Oci, bundle: Bundle) -> None:
    bundle.set_args("sleep", "100")
    cid = oci.new_id()
    oci.create(bundle, cid)
    assert oci.run("exec", cid, "true").returncode in (0, 1)  # created: runc allows exec
    oci.run("start", cid, check=0)
    r = oci.run("exec", "--env", "FOO=bar", "--cwd", "/tmp", cid, "sh", "-c",
                'echo $FOO $(pwd) $(cat /proc/1/cmdline | tr "\\0" " "); exit 4')
    assert r.returncode == 4, r.stderr
    assert r.stdout.decode().split() == ["bar", "/tmp", "sleep", "100"]
    proc = {"args": ["sh", "-c", "id -u; id -g; echo $X"], "env": ["X=from-json", "PATH=/bin"],
            "cwd": "/", "user": {"uid": 65534, "gid": 65534}}
    path = os.path.join(oci.base, "process.json")
    with open(path, "w") as f:
        json.dump(proc, f)
    r = oci.run("exec", "--process", path, cid, check=0)
    assert r.stdout.decode().split() == ["65534", "65534", "from-json"]
    pid_file = os.path.join(oci.base, "exec.pid")
    import subprocess

    subprocess.run(oci.cmd("exec", "--detach", "--pid-file", pid_file, cid, "sleep", "7"),
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True, timeout=30)
    with open(pid_file) as f:
        epid = int(f.read())
    with open(f"/proc/{epid}/cmdline", "rb") as f:
        assert f.read() == b"sleep\x007\x00"
    os.kill(epid, signal.SIGKILL)
    assert oci.reap(epid) == -9  # reparented to us, the subreaper, like to conmon
    r = oci.run("exec", cid, "/no/such")
    assert r.returncode != 0 and b"no such file" in r.stderr.lower()
    oci.run("delete", "--force", cid, check=0)
    r = oci.run("exec", cid, "true")
    assert r.returncode == 1


def test_created_container_process_is_out_of_reach(oci: Oci, bundle: Bundle) -> None:
    """Between create and start, the container's PID 1 is the runtime's own process (a host
    interpreter waiting on exec.fifo): nothing inside may read its exe, fds or memory."""
    bundle.set_args("sleep", "100")
    cid = oci.new_id()
    oci.create(bundle, cid)
    try:
        r = oci.run("exec", cid, "sh", "-c", "readlink /proc/1/exe; readlink /proc/1/fd/0; "
                    "cat /proc/1/environ; head -c1 /proc/1/mem; echo done")
        assert r.stdout.decode().split() == ["done"], r.stdout
        assert r.stderr.decode().count("ermission denied") == 2, r.stderr  # environ, mem
    finally:
        oci.run("delete", "--force", cid, check=0)


def test_create_killed_at_many_points_leaves_only_removable_records(oci: Oci,
                                                                   bundle: Bundle) -> None:
    """SIGKILL of `create` at 20 moments of its first 150 ms: every container left is
    listed and `delete --force` removes it with its cgroup; nothing else remains."""
    import subprocess

    from tests.oci.conftest import cgroup_dirs

    bundle.set_args("sleep", "37.5")
    ids = []
    for i in range(20):
        cid = oci.new_id("kill")
        ids.append(cid)
        bundle.edit(lambda c, cid=cid: c["linux"].update(cgroupsPath=oci.cgroup(cid)))
        p = subprocess.Popen(oci.cmd("create", "--bundle", bundle.path, cid),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(i * 0.0075)
        p.kill()
        p.wait()
    listed = {s["id"] for s in json.loads(oci.run("list", "--format", "json",
                                                  check=0).stdout or b"[]")}
    assert listed <= set(ids)
    for d in cgroup_dirs():  # every cgroup made has a record
        assert os.path.basename(d.rstrip("/")) in listed, d
    for cid in listed:
        oci.run("delete", "--force", cid, check=0)
    assert json.loads(oci.run("list", "--format", "json", check=0).stdout or b"[]") == []
    assert [n for n in os.listdir(oci.root)] == [] if os.path.isdir(oci.root) else True
    assert cgroup_dirs() == []


def test_list_ps_spec_features_version(oci: Oci, bundle: Bundle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert json.loads(oci.run("list", "--format", "json", check=0).stdout or b"[]") == []
    bundle.set_args("sleep", "100")
    cid = oci.new_id()
    oci.create(bundle, cid)
    listed = json.loads(oci.run("list", "--format", "json", check=0).stdout)
    assert [s["id"] for s in listed] == [cid] and listed[0]["status"] == "created"
    table = oci.run("list", check=0).stdout.decode().splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"] and cid in table[1]
    assert oci.run("list", "-q", check=0).stdout.decode().split() == [cid]
    oci.run("start", cid, check=0)
    ps = oci.run("ps", cid, check=0).stdout.decode()
    assert "sleep 100" in ps
    oci.run("delete", "--force", cid, check=0)
    # spec
    d = tmp_path / "spec"
    d.mkdir()
    oci.run("spec", "--bundle", str(d), check=0)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["process"]["args"] == ["sh"] and cfg["root"]["path"] == "rootfs"
    assert {n["type"] for n in cfg["linux"]["namespaces"]} >= {"pid", "mount", "network"}
    assert oci.run("spec", "--bundle", str(d)).returncode == 1  # exists
    feats = json.loads(oci.run("features", check=0).stdout)
    assert feats["ociVersionMin"] and "createRuntime" in feats["hooks"]
    assert {"pid", "user"} <= set(feats["linux"]["namespaces"])
    assert feats["linux"]["cgroup"]["systemd"] is False
    v = oci.run("--version", check=0).stdout.decode()
    assert v.startswith("pycontain-oci version") and "spec: 1.0.2" in v


def test_log_file_json(oci: Oci) -> None:
    r = oci.run("--log", oci.log, "--log-format", "json", "state", "ghost")
    assert r.returncode == 1
    with open(oci.log) as f:
        entry = json.loads(f.readline())
    assert entry["level"] == "error" and "ghost" in entry["msg"] and entry["time"]


@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
def test_state_matches_runc(oci: Oci, bundle: Bundle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same bundle through runc and pycontain-oci: same state keys and statuses."""
    import subprocess

    bundle.set_args("sleep", "100")
    runc_root = str(tmp_path / "runc")
    rid = oci.new_id("runc")
    bundle.edit(lambda c: c["linux"].update(cgroupsPath=oci.cgroup(rid)))

    def runc(*a: str) -> subprocess.CompletedProcess:
        out = subprocess.PIPE if a[0] == "state" else subprocess.DEVNULL  # create: no pipes
        return subprocess.run([RUNC, "--root", runc_root, *a], stdout=out,
                              stderr=subprocess.DEVNULL, timeout=30, stdin=subprocess.DEVNULL)

    assert runc("create", "--bundle", bundle.path, rid).returncode == 0
    cid = oci.new_id()
    bundle.edit(lambda c: c["linux"].update(cgroupsPath=oci.cgroup(cid)))
    oci.create(bundle, cid)
    try:
        for step in ("created", "running", "stopped"):
            theirs = json.loads(runc("state", rid).stdout)
            ours = oci.state(cid)
            assert set(theirs) - {"rootfs", "created", "owner"} <= set(ours)
            assert theirs["status"] == ours["status"] == step
            assert (theirs["pid"] > 0) == (ours["pid"] > 0)
            if step == "created":
                assert runc("start", rid).returncode == 0
                oci.run("start", cid, check=0)
            elif step == "running":
                rpid = theirs["pid"]
                assert runc("kill", rid, "KILL").returncode == 0
                oci.run("kill", cid, "KILL", check=0)
                oci.reap(rpid)
                oci.reap(ours["pid"])
        assert runc("delete", rid).returncode == 0
        oci.run("delete", cid, check=0)
    finally:
        runc("delete", "--force", rid)


def _v1_file(controller: str, cid: str, name: str) -> str:
    from tests.oci.conftest import CGROUP_PARENT

    with open(f"/sys/fs/cgroup/{controller}/{CGROUP_PARENT}/{cid}/{name}") as f:
        return f.read().strip()


def test_pause_resume(oci: Oci, bundle: Bundle) -> None:
    bundle.set_args("sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.05; done")
    cid = oci.new_id()
    oci.create(bundle, cid)
    pid = oci.state(cid)["pid"]
    oci.run("start", cid, check=0)
    oci.run("pause", cid, check=0)
    st = oci.state(cid)
    assert st["status"] == "paused" and st["pid"] == pid
    if os.path.isdir("/sys/fs/cgroup/freezer"):
        assert _v1_file("freezer", cid, "freezer.state") == "FROZEN"
    listing = json.loads(oci.run("list", "--format", "json", check=0).stdout)
    assert [c["status"] for c in listing if c["id"] == cid] == ["paused"]
    r = oci.run("exec", cid, "true")
    assert r.returncode == 1 and b"paused" in r.stderr
    r = oci.run("pause", cid)
    assert r.returncode == 1 and b"paused" in r.stderr  # runc: only a running one pauses
    oci.run("resume", cid, check=0)
    assert oci.state(cid)["status"] == "running"
    r = oci.run("resume", cid)
    assert r.returncode == 1 and b"running" in r.stderr
    # A signal other than KILL waits for resume; KILL gets through at once.
    oci.run("pause", cid, check=0)
    oci.run("kill", cid, "TERM", check=0)
    time.sleep(0.2)
    assert oci.state(cid)["status"] == "paused"
    oci.run("resume", cid, check=0)
    assert oci.reap(pid) == 42
    oci.run("delete", cid, check=0)
    bundle.set_args("sleep", "100")
    cid = oci.new_id()
    oci.create(bundle, cid)
    pid = oci.state(cid)["pid"]
    oci.run("start", cid, check=0)
    oci.run("pause", cid, check=0)
    oci.run("kill", cid, "KILL", check=0)
    assert oci.reap(pid) == -signal.SIGKILL
    oci.run("delete", cid, check=0)


def test_update(oci: Oci, bundle: Bundle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bundle.set_args("sleep", "100")
    bundle.edit(lambda c: c["linux"].update(resources={"memory": {"limit": 64 << 20},
                                                       "pids": {"limit": 30}}))
    cid = oci.new_id()
    oci.create(bundle, cid)
    pid = oci.state(cid)["pid"]
    oci.run("start", cid, check=0)
    oci.run("update", "--memory", "128M", "--pids-limit", "60", "--cpu-quota", "20000",
            "--cpu-period", "100000", cid, check=0)
    assert _v1_file("memory", cid, "memory.limit_in_bytes") == str(128 << 20)
    assert _v1_file("pids", cid, "pids.max") == "60"
    assert _v1_file("cpu", cid, "cpu.cfs_quota_us") == "20000"
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"memory": {"limit": 96 << 20}, "pids": {"limit": 40},
                               "cpu": {"shares": 512}}))
    oci.run("update", "--resources", str(res), cid, check=0)
    assert _v1_file("memory", cid, "memory.limit_in_bytes") == str(96 << 20)
    assert _v1_file("pids", cid, "pids.max") == "40"
    assert _v1_file("cpu", cid, "cpu.shares") == "512"
    oci.run("update", "-r", "-", cid, check=0, input=b'{"pids": {"limit": -1}}')
    assert _v1_file("pids", cid, "pids.max") == "max"
    for bad, msg in ((["--memory", "lots"], b"invalid"),
                     (["--kernel-memory", "1M"], b"not supported"),
                     (["--nosuch", "1"], b"not defined"), ([], b"no resources")):
        r = oci.run("update", *bad, cid)
        assert r.returncode == 1 and msg in r.stderr and r.stderr.count(b"\n") == 1, r.stderr
    oci.run("delete", "--force", cid, check=0)
    assert oci.reap(pid) == -signal.SIGKILL
    r = oci.run("update", "--memory", "1G", cid)
    assert r.returncode == 1 and b"does not exist" in r.stderr


def test_events(oci: Oci, bundle: Bundle) -> None:
    import subprocess

    bundle.set_args("sleep", "100")
    bundle.edit(lambda c: c["linux"].update(resources={"memory": {"limit": 64 << 20},
                                                       "pids": {"limit": 30}}))
    cid = oci.new_id()
    oci.create(bundle, cid)
    pid = oci.state(cid)["pid"]
    oci.run("start", cid, check=0)
    ev = json.loads(oci.run("events", "--stats", cid, check=0).stdout)
    assert ev["type"] == "stats" and ev["id"] == cid
    data = ev["data"]
    assert data["memory"]["usage"]["limit"] == 64 << 20 and data["memory"]["usage"]["usage"] > 0
    assert data["pids"] == {"current": 1, "limit": 30}
    assert data["cpu"]["usage"]["total"] >= 0
    r = oci.run("events", "--interval", "soon", cid)
    assert r.returncode == 1 and b"interval" in r.stderr
    # Streaming: a record per interval until the container is gone.
    p = subprocess.Popen(oci.cmd("events", "--interval", "100ms", cid), stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None
        for _ in range(2):
            assert json.loads(p.stdout.readline())["type"] == "stats"
        oci.run("delete", "--force", cid, check=0)
        assert p.wait(timeout=10) == 0
    finally:
        p.kill()
    assert oci.reap(pid) == -signal.SIGKILL
    r = oci.run("events", "--stats", cid)
    assert r.returncode == 1 and b"does not exist" in r.stderr
