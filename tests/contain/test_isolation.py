"""Isolation: processes, hostname, filesystem, privileges, devices and network."""

from __future__ import annotations

import os
import socket
import threading

import pytest

import pycontain
from pycontain import ContainerError


def sh(rt, rootfs: str, script: str, **kw):  # type: ignore[no-untyped-def]
    return pycontain.run(["/bin/sh", "-c", script], rootfs=rootfs, capture_output=True,
                         **rt.kw(), **kw)


def test_own_pid_namespace_and_hostname(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    r = sh(rt, busybox_rootfs, "echo $$; hostname; ls /proc | grep -c '^[0-9]'",
           hostname="box1")
    assert r.exit_code == 0, r.stderr
    pid, host, nprocs = r.stdout.decode().split()
    assert pid == "2"  # PID 1 is the init
    assert host == "box1"
    assert int(nprocs) <= 4  # init, sh, ls, grep


def test_no_init_makes_workload_pid1(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    r = sh(rt, busybox_rootfs, "echo $$", init=False)
    assert r.stdout.decode().strip() == "1"


def test_sees_only_its_root_and_no_host_mounts(rt, busybox_rootfs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "host-secret"
    marker.write_text("x")
    r = sh(rt, busybox_rootfs, f"ls /; cat /proc/self/mountinfo; test -e {marker} && echo LEAK")
    out = r.stdout.decode()
    assert "LEAK" not in out
    listing = pycontain.run(["/bin/ls", "/"], rootfs=busybox_rootfs, capture_output=True,
                            **rt.kw()).stdout.decode().split()
    assert set(listing) <= {"bin", "proc", "dev", "sys", "tmp", "etc", "root", "data"}
    mounts = [line.split()[4] for line in out.splitlines() if " - " in line]
    assert mounts[0] == "/"
    allowed = ("/", "/proc", "/dev", "/sys")
    assert all(m == "/" or m.startswith(allowed[1:]) for m in mounts), mounts
    with open("/proc/self/mountinfo") as f:
        host_mounts = {line.split()[4] for line in f}
    leaked = [m for m in mounts if m in host_mounts and m not in allowed
              and not m.startswith(("/proc/", "/dev/", "/sys/"))]
    assert not leaked


def test_host_image_is_read_only_and_private(rt, tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "written-by-container"
    r = pycontain.run(["sh", "-c", f"echo hi > {target} && cat {target}"],
                      capture_output=True, **rt.kw())
    assert r.exit_code == 0 and r.stdout == b"hi\n"
    assert not target.exists()  # the write went to the container's upper dir


@pytest.mark.parametrize(
    ("what", "script"),
    [
        ("mount", "mount -t tmpfs tmpfs /tmp"),
        ("proc/sys", "echo evil > /proc/sys/kernel/hostname"),
        ("sysfs", "echo 1 > /sys/kernel/profiling || touch /sys/x"),
        ("mknod", "mknod /tmp/sda b 8 0"),
        ("mknod-char", "mknod /tmp/mem c 1 1"),
        ("modules", "echo 1 > /proc/sys/kernel/modules_disabled"),
        ("hostname", "hostname evil"),
        ("sysrq", "echo h > /proc/sysrq-trigger"),
        ("kcore", "test -s /proc/kcore && head -c1 /proc/kcore"),
    ],
)
def test_privileged_operations_fail(rt, busybox_rootfs, what, script) -> None:  # type: ignore[no-untyped-def]
    r = sh(rt, busybox_rootfs, script)
    assert r.exit_code != 0, f"{what} succeeded inside the container"


def test_capabilities_and_no_new_privs(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    r = sh(rt, busybox_rootfs, "grep -E '^(Cap|NoNewPrivs)' /proc/self/status")
    fields = dict(line.split(":\t") for line in r.stdout.decode().splitlines())
    expected = (1 << 5) | (1 << 10) | (1 << 29)  # KILL, NET_BIND_SERVICE, AUDIT_WRITE
    for key in ("CapBnd", "CapEff", "CapPrm"):
        assert int(fields[key], 16) == expected, (key, fields[key])
    assert int(fields["CapInh"], 16) == 0 and int(fields["CapAmb"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"


def test_minimal_dev(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    r = sh(rt, busybox_rootfs, "ls /dev; ls -l /dev/ptmx /dev/fd; echo x > /dev/null; "
                               "head -c 4 /dev/urandom | wc -c; cat /proc/self/mountinfo")
    out = r.stdout.decode()
    assert r.exit_code == 0, r.stderr
    names = set(out.split("\n", 1)[0].split()) | set(out.split())
    for dev in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx",
                "stdin", "stdout", "stderr", "fd", "mqueue"):
        assert dev in names, dev
    assert "pts/ptmx" in out and "/proc/self/fd" in out
    assert "devpts" in out and "ptmxmode=666" in out


def test_device_cgroup_blocks_host_devices(rt) -> None:  # type: ignore[no-untyped-def]
    """A host device node bound into the container cannot be opened (devices cgroup)."""
    candidates = ["/dev/loop0", "/dev/autofs", "/dev/loop-control", "/dev/tty1"]
    usable = []
    for path in candidates:
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            usable.append(path)
        except OSError:
            continue
    if not usable:
        pytest.skip("no host device node the host itself can open")
    dev = usable[0]
    code = ("import os\ntry:\n os.open('/mnt/dev', os.O_RDONLY | os.O_NONBLOCK)\n"
            "except OSError as e:\n print(e.errno)")
    r = pycontain.run(["python3", "-c", code], volumes=[f"{dev}:/mnt/dev"], capture_output=True,
                      **rt.kw())
    assert r.stdout.decode().strip() == "1", (dev, r.stdout, r.stderr)  # EPERM


def test_clean_environment(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    os.environ["PYCONTAIN_TEST_LEAK"] = "1"
    try:
        r = pycontain.run(["/bin/env"], rootfs=busybox_rootfs, capture_output=True,
                          env=["FOO=bar", "EMPTY="], hostname="h1", **rt.kw())
    finally:
        del os.environ["PYCONTAIN_TEST_LEAK"]
    env = dict(line.split("=", 1) for line in r.stdout.decode().splitlines())
    assert set(env) == {"PATH", "HOSTNAME", "TERM", "FOO", "EMPTY"}
    assert env["HOSTNAME"] == "h1" and env["FOO"] == "bar" and env["EMPTY"] == ""


def test_volumes(rt, busybox_rootfs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "in.txt").write_text("from host")
    r = sh(rt, busybox_rootfs, "cat /data/in.txt; echo back > /data/out.txt",
           volumes=[f"{tmp_path}:/data"])
    assert r.exit_code == 0 and r.stdout == b"from host"
    assert (tmp_path / "out.txt").read_text() == "back\n"
    r = sh(rt, busybox_rootfs, "echo no > /ro/x", volumes=[f"{tmp_path}:/ro:ro"])
    assert r.exit_code != 0 and not (tmp_path / "x").exists()


def _tcp_server():  # type: ignore[no-untyped-def]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.sendall(b"hello-from-host")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv


CONNECT = """
import socket, sys
s = socket.socket(); s.settimeout(2)
try:
    s.connect(("127.0.0.1", {port})); print(s.recv(100).decode())
except OSError as e:
    print("refused", e.errno); sys.exit(3)
"""


def test_net_none_cannot_reach_host_loopback(rt) -> None:  # type: ignore[no-untyped-def]
    srv = _tcp_server()
    port = srv.getsockname()[1]
    try:
        r = pycontain.run(["python3", "-c", CONNECT.format(port=port)], net="none",
                          capture_output=True, **rt.kw())
        assert r.exit_code == 3, r.stdout + r.stderr
        r = pycontain.run(["python3", "-c", CONNECT.format(port=port)], net="host",
                          capture_output=True, **rt.kw())
        assert r.exit_code == 0 and b"hello-from-host" in r.stdout, r.stderr
    finally:
        srv.close()


def test_net_none_has_loopback_up(rt) -> None:  # type: ignore[no-untyped-def]
    script = (
        "import os, socket\n"
        "print(sorted(os.listdir('/sys/class/net')))\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
        "c = socket.create_connection(s.getsockname(), timeout=2); print('ok')\n"
    )
    r = pycontain.run(["python3", "-c", script], capture_output=True, **rt.kw())
    assert r.exit_code == 0, r.stderr
    assert r.stdout.decode().split("\n")[:2] == ["['lo']", "ok"]


def test_read_only_root(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    r = sh(rt, busybox_rootfs, "touch /tmp/x", read_only=True)
    assert r.exit_code != 0


def test_setup_errors_leave_nothing(rt) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ContainerError) as exc:
        pycontain.run(["/definitely/not/here"], **rt.kw())
    assert exc.value.exit_code == 127
