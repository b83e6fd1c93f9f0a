"""config.json features honoured by pycontain-oci: process, mounts, linux.*, hooks, seccomp,
terminal over --console-socket, the allocator annotation, and reports of unsupported fields."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from typing import Any, Dict

import pytest

from tests.oci.conftest import Bundle, ConsoleSocket, Oci, read_until


def test_process_user_env_cwd_umask_rlimits(oci: Oci, bundle: Bundle) -> None:
    def edit(c: Dict[str, Any]) -> None:
        p = c["process"]
        p["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [5, 7], "umask": 0o077}
        p["env"] = ["PATH=/bin", "HELLO=world"]
        p["cwd"] = "/tmp"
        p["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 321, "soft": 123}]
        p["oomScoreAdj"] = 432

    code, out, err = oci.complete(
        bundle, "sh", "-c",
        "id -u; id -g; id -G; umask; echo $HELLO; pwd; ulimit -n; ulimit -Hn; "
        "cat /proc/self/oom_score_adj", edit=edit)
    assert code == 0, err
    assert out.split() == ["1000", "1001", "1001", "5", "7", "0077", "world", "/tmp", "123",
                           "321", "432"]


def test_capabilities_and_no_new_privs(oci: Oci, bundle: Bundle) -> None:
    def edit(c: Dict[str, Any]) -> None:
        caps = ["CAP_KILL", "CAP_CHOWN"]
        c["process"]["capabilities"] = {k: list(caps) for k in
                                        ("bounding", "effective", "permitted")}
        c["process"]["noNewPrivileges"] = True

    code, out, err = oci.complete(bundle, "sh", "-c", "grep -E 'Cap(Bnd|Eff)|NoNewPrivs' "
                                  "/proc/self/status", edit=edit)
    assert code == 0, err
    fields = dict(line.split(":\t") for line in out.strip().splitlines())
    mask = (1 << 5) | (1 << 0)
    assert int(fields["CapBnd"], 16) == mask and int(fields["CapEff"], 16) == mask
    assert fields["NoNewPrivs"].strip() == "1"
    # a non-root user with an ambient capability keeps it across exec
    def edit2(c: Dict[str, Any]) -> None:
        caps = ["CAP_NET_BIND_SERVICE"]
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["capabilities"] = {k: list(caps) for k in ("bounding", "effective",
                                                                "permitted", "inheritable",
                                                                "ambient")}

    code, out, err = oci.complete(bundle, "sh", "-c", "grep -E 'Cap(Eff|Amb)' /proc/self/status",
                                  edit=edit2)
    assert code == 0, err
    fields = dict(line.split(":\t") for line in out.strip().splitlines())
    assert int(fields["CapEff"], 16) == 1 << 10 and int(fields["CapAmb"], 16) == 1 << 10


def test_hostname_domainname_sysctl_readonly_root(oci: Oci, bundle: Bundle) -> None:
    def edit(c: Dict[str, Any]) -> None:
        c["hostname"] = "oci-host"
        c["domainname"] = "oci.example"
        c["linux"]["sysctl"] = {"kernel.shmmni": "1234", "net.ipv4.ip_forward": "1"}
        c["root"]["readonly"] = True

    code, out, err = oci.complete(
        bundle, "sh", "-c", "hostname; cat /proc/sys/kernel/domainname "
        "/proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_forward; touch /x 2>&1 || echo ro",
        edit=edit)
    assert code == 0, err
    lines = out.split("\n")
    assert lines[:4] == ["oci-host", "oci.example", "1234", "1"]
    assert out.strip().endswith("ro")
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read().strip() != "1234"  # the host is untouched
    # a sysctl that is not namespaced is refused
    bundle.edit(lambda c: c["linux"].update(sysctl={"vm.swappiness": "1"}))
    r = oci.create(bundle, oci.new_id(), check=1)
    assert b"not namespaced" in r.stderr


def test_mounts_masked_readonly_devices(oci: Oci, bundle: Bundle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "share"
    src.mkdir()
    (src / "f").write_text("from-host")

    def edit(c: Dict[str, Any]) -> None:
        c["mounts"] += [
            {"destination": "/data/ro", "type": "bind", "source": str(src),
             "options": ["rbind", "ro", "rprivate"]},
            {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "size=1m", "mode=1777"]},
        ]
        c["linux"]["maskedPaths"] = ["/etc/group", "/data/ro/f"]
        c["linux"]["readonlyPaths"] = ["/proc/sys"]
        c["linux"]["devices"] = [{"path": "/dev/fuse-like", "type": "c", "major": 1,
                                  "minor": 7, "fileMode": 0o600, "uid": 0, "gid": 0}]

    code, out, err = oci.complete(
        bundle, "sh", "-c",
        "cat /data/ro/f; echo; echo x > /data/ro/g 2>/dev/null || echo ro-bind; "
        "grep ' /scratch ' /proc/mounts | cut -d' ' -f3; wc -c < /etc/group; "
        "echo 1 > /proc/sys/kernel/shmmni 2>/dev/null || echo ro-proc; "
        "ls -l /dev/fuse-like | cut -c1-10; head -c 4 /dev/fuse-like | wc -c; "
        "ls /sys/fs/cgroup | grep -c memory", edit=edit)
    assert code == 0, err
    lines = out.split("\n")
    assert lines[0] == ""  # masked file reads empty
    assert lines[1:5] == ["ro-bind", "tmpfs", "0", "ro-proc"]
    assert lines[5] == "crw-------"
    assert lines[6] == "4"  # a 1:7 node reads like /dev/full: zeros
    assert int(lines[7]) >= 1  # the cgroup mount shows the container's hierarchies


def test_fifo_devices_and_tmpcopyup(oci: Oci, bundle: Bundle) -> None:
    """linux.devices of type p are FIFOs (runtime-tools linux_devices); a tmpfs mount with
    tmpcopyup starts with what the directory held (podman --tmpfs /etc, --read-only)."""
    with open(os.path.join(bundle.rootfs, "etc", "motd"), "w") as f:
        f.write("kept\n")
    os.symlink("motd", os.path.join(bundle.rootfs, "etc", "motd.link"))

    def edit(c: Dict[str, Any]) -> None:
        c["linux"]["devices"] = [{"path": "/dev/pipe0", "type": "p", "fileMode": 0o620}]
        c["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                            "options": ["nosuid", "tmpcopyup", "mode=755"]})

    code, out, err = oci.complete(
        bundle, "sh", "-c", "ls -l /dev/pipe0 | cut -c1-10; cat /etc/motd.link; "
        "grep ' /etc ' /proc/mounts | cut -d' ' -f3; echo new > /etc/new; cat /etc/new",
        edit=edit)
    assert code == 0, err
    assert out.split() == ["prw--w----", "kept", "tmpfs", "new"]
    assert "tmpcopyup" not in err
    assert not os.path.exists(os.path.join(bundle.rootfs, "etc", "new"))


def test_resources_in_cgroup(oci: Oci, bundle: Bundle) -> None:
    def edit(c: Dict[str, Any]) -> None:
        c["linux"]["resources"].update({
            "memory": {"limit": 64 << 20, "reservation": 32 << 20},
            "pids": {"limit": 50},
            "cpu": {"quota": 50000, "period": 100000, "shares": 512},
        })

    bundle.set_args("sleep", "100")
    bundle.edit(edit)
    cid = oci.new_id()
    oci.create(bundle, cid)
    pid = oci.state(cid)["pid"]
    cg = {}
    for line in open(f"/proc/{pid}/cgroup").read().splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(","):
            cg[c] = path
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        base = "/sys/fs/cgroup" + cg[""]
        assert open(f"{base}/memory.max").read().strip() == str(64 << 20)
        assert open(f"{base}/pids.max").read().strip() == "50"
        assert open(f"{base}/cpu.max").read().split() == ["50000", "100000"]
    else:
        mem = "/sys/fs/cgroup/memory" + cg["memory"]
        assert cg["memory"] == oci.cgroup(cid)
        assert open(f"{mem}/memory.limit_in_bytes").read().strip() == str(64 << 20)
        assert open(f"{mem}/memory.soft_limit_in_bytes").read().strip() == str(32 << 20)
        assert open(f"/sys/fs/cgroup/pids{cg['pids']}/pids.max").read().strip() == "50"
        assert open(f"/sys/fs/cgroup/cpu{cg['cpu']}/cpu.cfs_quota_us").read().strip() == "50000"
        assert open(f"/sys/fs/cgroup/cpu{cg['cpu']}/cpu.shares").read().strip() == "512"
    oci.run("delete", "--force", cid, check=0)


def test_memory_limit_oom(oci: Oci, bundle: Bundle) -> None:
    def edit(c: Dict[str, Any]) -> None:
        c["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}

    # busybox: allocate 64 MiB in a shell variable
    code, out, err = oci.complete(bundle, "sh", "-c", "x=$(head -c 67108864 /dev/zero | tr "
                                  "'\\0' a); echo survived ${#x}", edit=edit)
    assert code in (137, -9), (code, out, err)
    assert "survived" not in out


def test_join_namespace_by_path(oci: Oci, bundle: Bundle) -> None:
    bundle.set_args("sleep", "100")
    bundle.edit(lambda c: c.update(hostname="first"))
    first = oci.new_id()
    oci.create(bundle, first)
    pid = oci.state(first)["pid"]

    def edit(c: Dict[str, Any]) -> None:
        c["hostname"] = "ignored"
        c["linux"]["namespaces"] = [
            n if n["type"] not in ("uts", "network", "pid")
            else {"type": n["type"], "path": f"/proc/{pid}/ns/"
                  + {"uts": "uts", "network": "net", "pid": "pid"}[n["type"]]}
            for n in c["linux"]["namespaces"]]

    code, out, err = oci.complete(bundle, "sh", "-c", "hostname; ls /proc | grep -c '^[0-9]'",
                                  edit=edit)
    assert code == 0, err
    host, nprocs = out.split()
    assert host == "first" and int(nprocs) >= 2  # sees the first container's processes
    oci.run("delete", "--force", first, check=0)


def test_join_mount_namespace_by_path(oci: Oci, bundle: Bundle) -> None:
    """A mount namespace given by path (runtime-tools linux_ns_path) is joined and the root
    set up inside it, as in a new one: the process sees its bundle's root, not the host's."""
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "60"])
    try:
        ns = f"/proc/{holder.pid}/ns/mnt"
        deadline = time.monotonic() + 5
        while os.readlink(ns) == os.readlink("/proc/self/ns/mnt") and time.monotonic() < deadline:
            time.sleep(0.01)

        def edit(c: Dict[str, Any]) -> None:
            c["linux"]["namespaces"] = [n if n["type"] != "mount" else {"type": "mount",
                                                                         "path": ns}
                                        for n in c["linux"]["namespaces"]]

        code, out, err = oci.complete(bundle, "sh", "-c", "readlink /proc/self/ns/mnt; "
                                      "ls /bin/busybox", edit=edit)
        assert code == 0, err
        assert out.split() == [os.readlink(ns), "/bin/busybox"]
    finally:
        holder.kill()
        holder.wait()


def test_seccomp(oci: Oci, bundle: Bundle) -> None:
    from pycontain.runtime import seccomp

    if not seccomp.available():
        pytest.skip("libseccomp.so.2 is not available")

    def edit(c: Dict[str, Any]) -> None:
        c["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"},
            ],
        }

    code, out, err = oci.complete(bundle, "sh", "-c", "mkdir /tmp/d 2>&1; hostname x 2>&1; "
                                  "touch /tmp/f && echo touch-ok", edit=edit)
    assert code == 0, err
    assert "Permission denied" in out and "not permitted" in out and "touch-ok" in out
    # ... and the same filter applies to exec'd processes
    bundle.set_args("sleep", "100")
    cid = oci.new_id()
    oci.create(bundle, cid)
    oci.run("start", cid, check=0)
    r = oci.run("exec", cid, "mkdir", "/tmp/e")
    assert r.returncode != 0 and b"Permission denied" in r.stderr
    oci.run("delete", "--force", cid, check=0)
    bundle.edit(lambda c: c["linux"]["seccomp"].update(defaultAction="SCMP_ACT_BOGUS"))
    r = oci.create(bundle, oci.new_id(), check=1)
    assert b"SCMP_ACT_BOGUS" in r.stderr


def test_hooks(oci: Oci, bundle: Bundle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "hooks.log"
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\nstate=$(cat)\necho \"$1 $HOOK_ENV $state\" >> " + str(log) + "\n")
    hook.chmod(0o755)
    # createContainer/startContainer run in the container: the hook must exist in its rootfs
    inner = os.path.join(bundle.rootfs, "hook.sh")
    with open(inner, "w") as f:
        f.write("#!/bin/sh\nstate=$(cat)\necho \"$1 $state\" > /tmp/$1\n")
    os.chmod(inner, 0o755)

    def h(kind: str, path: str = str(hook)) -> Dict[str, Any]:
        return {"path": path, "args": ["hook", kind], "env": ["HOOK_ENV=e"]}

    def edit(c: Dict[str, Any]) -> None:
        c["hooks"] = {k: [h(k)] for k in ("prestart", "createRuntime", "poststart", "poststop")}
        c["hooks"]["createContainer"] = [h("createContainer")]
        c["hooks"]["startContainer"] = [h("startContainer", "/hook.sh")]

    code, out, err = oci.complete(bundle, "sh", "-c", "cat /tmp/startContainer", edit=edit)
    assert code == 0, err
    kind, state = out.split(" ", 1)
    assert kind == "startContainer" and json.loads(state)["status"] == "created"
    lines = log.read_text().splitlines()
    kinds = [line.split()[0] for line in lines]
    assert kinds == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
    states = [json.loads(line.split(" ", 2)[2]) for line in lines]
    assert [s["status"] for s in states] == ["created", "created", "created", "running",
                                             "stopped"]
    assert all(line.split()[1] == "e" for line in lines)
    assert states[0]["pid"] == states[2]["pid"] > 0  # the container process, as the host sees it
    assert {s["id"] for s in states} == {states[0]["id"]} and states[0]["bundle"] == bundle.path
    # a failing or hanging createRuntime hook fails the create and leaves nothing behind
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nsleep 5\n")
    bad.chmod(0o755)
    bundle.edit(lambda c: c.update(hooks={"createRuntime": [{"path": str(bad), "timeout": 1}]}))
    r = oci.create(bundle, oci.new_id(), check=1)
    assert b"timed out" in r.stderr


def test_unsupported_fields_are_reported(oci: Oci, bundle: Bundle) -> None:
    def edit(c: Dict[str, Any]) -> None:
        c["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE"}
        c["linux"]["intelRdt"] = {}  # empty: nothing asked for
        c["futureThing"] = 1

    bundle.set_args("true")
    bundle.edit(edit)
    cid = oci.new_id()
    r = oci.create(bundle, cid)
    text = r.stderr.decode()
    for field in ("process.ioPriority", "config.futureThing"):
        assert f"warning: {field} is not supported" in text, text
    assert "intelRdt" not in text
    oci.run("delete", "--force", cid, check=0)
    # with --log, warnings go there instead of the container's stderr
    cid = oci.new_id()
    bundle.edit(lambda c: c["linux"].update(cgroupsPath=oci.cgroup(cid)))
    r = subprocess.run(oci.cmd("--log", oci.log, "--log-format", "json", "create", "--bundle",
                               bundle.path, cid), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=open(oci.log + ".stderr", "wb"))
    r.stderr = open(oci.log + ".stderr", "rb").read()
    oci.pids.append(oci.state(cid)["pid"])
    assert r.returncode == 0 and b"warning" not in r.stderr
    with open(oci.log) as f:
        entries = [json.loads(line) for line in f]
    assert any(e["level"] == "warning" and "ioPriority" in e["msg"] for e in entries)
    oci.run("delete", "--force", cid, check=0)


@pytest.mark.parametrize("where,key,value", [
    ("process", "apparmorProfile", "docker-default"),
    ("process", "selinuxLabel", "system_u:system_r:container_t:s0"),
    ("linux", "mountLabel", "system_u:object_r:container_file_t:s0"),
    ("linux", "intelRdt", {"closID": "x"}),
    ("resources", "network", {"classID": 1}),
])
def test_protections_that_cannot_be_applied_are_refused(oci: Oci, bundle: Bundle, where: str,
                                                        key: str, value: Any) -> None:
    """As runc: a requested protection (AppArmor, SELinux, a resource control) that this
    runtime cannot apply refuses the container, with one line naming it."""
    def edit(c: Dict[str, Any]) -> None:
        target = c["linux"]["resources"] if where == "resources" else c[where]
        target[key] = value

    bundle.set_args("true")
    bundle.edit(edit)
    cid = oci.new_id()
    r = oci.create(bundle, cid, check=1)
    err = r.stderr.decode()
    assert err.count("\n") == 1 and key in err and "cannot be applied" in err, err
    assert oci.run("state", cid).returncode == 1  # nothing left


def test_unknown_capability_is_refused_at_create(oci: Oci, bundle: Bundle) -> None:
    """runtime-tools process_capabilities_fail: a value that maps to no kernel interface MUST
    fail, with one line naming it (runc runs such a container)."""
    bundle.set_args("true")
    bundle.edit(lambda c: c["process"]["capabilities"]["bounding"].append("CAP_TEST"))
    r = oci.create(bundle, oci.new_id(), check=1)
    assert r.stderr.decode().strip().endswith(
        "process.capabilities.bounding: unknown capability 'CAP_TEST'"), r.stderr


def test_no_mount_namespace_still_confines_to_root(oci: Oci, bundle: Bundle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without a mount namespace the process is chroot'ed into root.path (as runc does):
    the host's / is not visible and nothing is created on it."""
    marker = tmp_path / "host-marker"
    marker.write_text("x")
    probe = f"/pyc-nomnt-{os.getpid()}"

    def edit(c: Dict[str, Any]) -> None:
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "mount"]
        c["linux"].pop("maskedPaths", None)
        c["linux"].pop("readonlyPaths", None)

    code, out, err = oci.complete(
        bundle, "sh", "-c", f"test -e {marker} && echo LEAK; touch {probe}; ls /bin/busybox",
        edit=edit)
    assert code == 0, err
    assert "LEAK" not in out and "/bin/busybox" in out
    assert not os.path.exists(probe)
    assert os.path.exists(bundle.rootfs + probe)
    # masked paths cannot be applied without a mount namespace: refused
    bundle.edit(lambda c: c["linux"].update(maskedPaths=["/proc/kcore"]))
    r = oci.create(bundle, oci.new_id(), check=1)
    assert b"maskedPaths cannot be applied without a mount namespace" in r.stderr


def test_terminal_over_console_socket(oci: Oci, bundle: Bundle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sock = ConsoleSocket(str(tmp_path / "console.sock"))
    try:
        bundle.set_args("sh", "-c", "tty; stty size; read line; echo got:$line; exit 9")
        bundle.edit(lambda c: c["process"].update(terminal=True,
                                                  consoleSize={"height": 30, "width": 90}))
        cid = oci.new_id()
        import threading

        got: Dict[str, Any] = {}
        t = threading.Thread(target=lambda: got.update(zip(("name", "fd"), sock.receive())))
        t.start()
        oci.create(bundle, cid, "--console-socket", sock.path)
        t.join(10)
        assert got.get("name", "").startswith("/dev/pts/"), got
        master = got["fd"]
        pid = oci.state(cid)["pid"]
        oci.run("start", cid, check=0)
        out = read_until(master, b"30 90")
        assert b"/dev/pts/0" in out and b"30 90" in out
        os.write(master, b"typed\n")
        out = read_until(master, b"got:typed")
        assert b"got:typed" in out
        assert oci.reap(pid) == 9
        os.close(master)
        oci.run("delete", cid, check=0)
        # terminal without a console socket is refused
        r = oci.create(bundle, oci.new_id(), check=1)
        assert b"console-socket" in r.stderr
    finally:
        sock.close()


def test_preload_annotation(oci: Oci, bundle: Bundle) -> None:
    try:
        from pyalloc import preload  # type: ignore[import-not-found]

        lib = preload.library_path()
    except Exception:
        pytest.skip("pyalloc.preload / libpyalloc.so not available")
    if not os.path.isfile(str(lib)):
        pytest.skip("libpyalloc.so not built")

    def edit(c: Dict[str, Any]) -> None:
        c["annotations"] = {"org.pyalloc.preload": "best"}

    code, out, err = oci.complete(bundle, "sh", "-c", "echo $LD_PRELOAD $PYALLOC_POLICY; "
                                  "test -f /.pyalloc/libpyalloc.so && echo lib-present",
                                  edit=edit)
    assert code == 0, err
    assert out.split() == ["/.pyalloc/libpyalloc.so", "best", "lib-present"]
    bundle.edit(lambda c: c.update(annotations={"org.pyalloc.preload": "nonsense"}))
    r = oci.create(bundle, oci.new_id(), check=1)
    assert b"invalid policy" in r.stderr


def test_pid_file_and_stat_modes(oci: Oci, bundle: Bundle) -> None:
    bundle.set_args("true")
    cid = oci.new_id()
    pid_file = os.path.join(oci.base, "sub", "..", "c.pid")
    oci.create(bundle, cid, "--pid-file", pid_file)
    st = os.stat(os.path.join(oci.root, cid))
    assert stat.S_ISDIR(st.st_mode)
    fifo = os.path.join(oci.root, cid, "exec.fifo")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.stat(fifo).st_mode & 0o077 == 0
    oci.run("delete", "--force", cid, check=0)
    assert sys.platform.startswith("linux")
