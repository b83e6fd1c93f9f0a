"""pycontain as a normal user: lifecycle, exec, images, isolation, limits, cleanup after
SIGKILL, the Python API and the sandbox recipe of docs/pycontain.md."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from typing import Any, Iterator

import pytest

from tests.images.regserver import HTPASSWD, REGISTRY, Registry, htpasswd_file
from tests.rootless.conftest import SUBID_COUNT, AsUser, User


def test_run_maps_the_user_to_root_with_its_range(rl: AsUser, user: User) -> None:
    out = rl.ok("run", "--rm", "--", "sh", "-c",
                "id -u; cat /proc/self/uid_map /proc/self/gid_map; echo pid $$; "
                "touch /etc/made-inside && echo wrote")
    lines = out.splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(user.uid), "1"]
    assert lines[2].split() == ["1", str(user.subuid_start), str(SUBID_COUNT)]
    assert lines[3].split() == ["0", str(user.gid), "1"]
    assert "wrote" in lines  # the host image's upper takes the write ...
    assert not os.path.exists("/etc/made-inside")  # ... and the host never sees it
    # state and storage are the user's own, never /run or /var
    assert os.path.isdir(rl.state) and os.stat(rl.state).st_uid == user.uid
    assert os.path.isdir(os.path.join(rl.storage, "containers"))


def test_single_id_map_without_subordinate_ids(rl: AsUser, user: User, box: str) -> None:
    env = {"PYCONTAIN_SUBIDS": "0"}
    out = rl.ok("run", "--rm", "--", "cat", "/proc/self/uid_map", "/proc/self/setgroups",
                env=env)
    assert out.split() == ["0", str(user.uid), "1", "deny"]
    # a file owned by another id cannot be made: that id does not exist in the namespace
    r = rl.run("run", "--rm", "--", "sh", "-c", "touch /tmp/f && chown 1:1 /tmp/f", env=env)
    assert r.returncode != 0


def test_detached_lifecycle_exec_logs_stop_rm(rl: AsUser, user: User) -> None:
    cid = rl.ok("run", "-d", "--name", "web", "--", "sh", "-c",
                "echo started; trap 'echo bye; exit 0' TERM; sleep 100 & wait").strip()
    assert len(cid) == 32
    ps = rl.ok("ps")
    assert "web" in ps and "running" in ps
    out = rl.ok("exec", "web", "--", "sh", "-c", "id -u; cat /proc/self/uid_map; "
                "cat /proc/1/comm; ls /proc | grep -c '^[0-9]'")
    lines = out.splitlines()
    assert lines[0] == "0" and lines[1].split() == ["0", str(user.uid), "1"]
    assert lines[3] == "pycontain-init"
    assert int(lines[-1]) <= 6  # its own pid namespace: init, sh, sleep, the exec'd sh, ls
    pid = json.loads(rl.ok("inspect", "web"))["pid"]
    with open(f"/proc/{pid}/status") as f:  # seen from the host: the user's own uid
        assert next(x for x in f if x.startswith("Uid:")).split()[1] == str(user.uid)
    deadline = time.monotonic() + 5
    while "started" not in rl.ok("logs", "web"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rl.ok("stop", "web")
    assert "bye" in rl.ok("logs", "web")
    assert "exited (0)" in rl.ok("ps", "-a")
    rl.ok("rm", "web")
    assert rl.containers() == []


def test_images_import_run_commit_rm(rl: AsUser, user: User, box: str) -> None:
    rl.ok("image", "import", box, "--name", "box:v1")
    # layers keep their owners, as the containers see them (unpacked in the mapped namespace)
    out = rl.ok("run", "--rm", "--image", "box:v1", "--", "sh", "-c",
                "ls -ln /home/app/owned | tr -s ' ' | cut -d' ' -f3,4")
    assert out.strip() == "1000 1000", out
    (owned,) = glob.glob(os.path.join(rl.storage, "layers", "sha256", "*", "home", "app",
                                      "owned"))
    assert os.stat(owned).st_uid == user.subuid_start + 999  # the range's id for 1000
    # and an export writes the ids the container sees, not the host's (digests as imported)
    out_tar = os.path.join(user.home, "export.tar")
    rl.ok("image", "export", "box:v1", out_tar)
    import tarfile

    with tarfile.open(out_tar) as layout:
        index = json.load(layout.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(layout.extractfile(  # type: ignore[arg-type]
            "blobs/sha256/" + index["manifests"][0]["digest"][7:]))
        blob = layout.extractfile("blobs/sha256/" + manifest["layers"][0]["digest"][7:])
        with tarfile.open(fileobj=blob, mode="r|*") as layer:
            owners = {m.name.lstrip("./"): (m.uid, m.gid) for m in layer}
    assert owners["home/app/owned"] == (1000, 1000) and owners["bin/busybox"] == (0, 0)
    os.unlink(out_tar)
    out = rl.ok("run", "--name", "c1", "--image", "box:v1", "--", "sh", "-c",
                "echo hello from $(hostname); rm /bin/ls; rm -rf /etc; mkdir /etc; "
                "echo only > /etc/only")
    assert out == "hello from c1\n"
    rl.ok("commit", "c1", "box:v2")
    # the deletion (a whiteout) and the opaque /etc survive the commit
    out = rl.ok("run", "--rm", "--image", "box:v2", "--", "sh", "-c",
                "ls /etc; test -e /bin/ls || echo no-ls")
    assert out.split() == ["only", "no-ls"]
    rl.ok("rm", "c1")
    rl.ok("image", "rm", "box:v2", "box:v1")
    layers = os.path.join(rl.storage, "layers", "sha256")
    assert not os.path.isdir(layers) or os.listdir(layers) == []


def test_isolation_from_the_host(rl: AsUser, user: User) -> None:
    """Root inside is the user outside: host root's files stay out of reach, through the
    host image or a bind; the host's processes are not visible; no network but loopback."""
    d = tempfile.mkdtemp(prefix="pycontain-rl-hostfiles-")
    try:
        os.chmod(d, 0o755)
        with open(os.path.join(d, "root-owned"), "w") as f:
            f.write("host\n")
        os.chmod(os.path.join(d, "root-owned"), 0o644)
        r = rl.run("run", "--rm", "-v", f"{d}:/host", "--", "sh", "-c",
                   "cat /host/root-owned; echo x >> /host/root-owned && echo WROTE; "
                   "touch /host/new && echo CREATED; chown 0 /host/root-owned && echo CHOWNED;"
                   " cat /etc/shadow >/dev/null 2>&1 && echo SHADOW; "
                   "ls -n /host/root-owned | awk '{print $3}'; ps -e | wc -l; "
                   "cat /proc/net/dev | grep -c ':'")
        out = r.stdout.decode().split()
        assert out[0] == "host" and not {"WROTE", "CREATED", "CHOWNED", "SHADOW"} & set(out)
        assert out[1] == "65534"  # host root is no one inside
        assert int(out[2]) <= 5  # ps header, init, sh, ps, wc
        assert out[3] == "1"  # only lo
        with open(os.path.join(d, "root-owned")) as f:
            assert f.read() == "host\n"
        assert os.listdir(d) == ["root-owned"]
    finally:
        import shutil

        shutil.rmtree(d)


def test_limits_without_a_cgroup(rl: AsUser, user: User) -> None:
    r = rl.run("run", "--rm", "--memory", "64m", "--", "true")
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 125 and len(lines) == 1, r.stderr
    assert "--memory" in lines[0] and "delegated" in lines[0]
    r = rl.run("pause", "nothing")
    assert r.returncode != 0
    # opting in: rlimits instead (an approximation, documented)
    out = rl.ok("run", "--rm", "--memory", "64m", "--pids", "20", "--limit-fallback",
                "rlimit", "--", "sh", "-c", "ulimit -v; grep -E 'Max (address|processes)' "
                "/proc/self/limits | tr -s ' ' | cut -d' ' -f4")
    assert out.split() == ["65536", "20", str(64 << 20)]
    r = rl.run("run", "--rm", "--cpus", "0.5", "--limit-fallback", "rlimit", "--", "true")
    assert r.returncode == 125 and b"--cpus" in r.stderr


def test_limits_in_a_delegated_cgroup_v1_subtree(rl: AsUser, delegated: str) -> None:
    env = {"PYCONTAIN_CGROUP_PARENT": delegated}
    r = rl.run("run", "--rm", "--memory", "16m", "--", "sh", "-c",
               "head -c 64m /dev/zero | tail > /dev/null", env=env)
    assert r.returncode == 137 and b"OOM" in r.stderr, r.stderr
    rl.ok("run", "-d", "--name", "lim", "--memory", "64m", "--pids", "30", "--", "sleep", "30",
          env=env)
    try:
        rl.ok("pause", "lim", env=env)
        assert json.loads(rl.ok("inspect", "lim", env=env))["state"] == "paused"
        rl.ok("unpause", "lim", env=env)
        rl.ok("update", "--memory", "128m", "lim", env=env)
        assert json.loads(rl.ok("inspect", "lim", env=env))["memory"]["limit"] == 128 << 20
        with open(f"/sys/fs/cgroup/memory/{delegated}/"
                  f"{json.loads(rl.ok('inspect', 'lim', env=env))['id']}/"
                  "memory.limit_in_bytes") as f:
            assert int(f.read()) == 128 << 20
    finally:
        rl.ok("rm", "-f", "lim", env=env)


def test_sigkill_of_the_cli_leaves_nothing(rl: AsUser, user: User) -> None:
    p = subprocess.Popen(["/usr/bin/python3", "-m", "pycontain", "run", "--name", "victim",
                          "--rm", "--", "sleep", "100"], env=user.env(rl.tree),
                         user=user.uid, group=user.gid, extra_groups=[], cwd=user.home,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while "victim" not in rl.ok("ps"):
        assert time.monotonic() < deadline, "the container never showed up"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 10  # PID 1 dies with its parent; the next command reaps
    while rl.ok("ps", "-a").count("\n") > 1:
        assert time.monotonic() < deadline, rl.ok("ps", "-a")
        time.sleep(0.05)


SANDBOX = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "examples", "sandbox.py")


@pytest.mark.parametrize("code, exit_code, stdout", [
    ("print(6 * 7)", 0, "42"),
    ("open('/etc/passwd', 'a')", 1, ""),  # read-only root
    ("import socket; socket.create_connection(('127.0.0.1', 22), 1)", 1, ""),  # no network
    ("import os; print(os.getuid(), sum(p.isdigit() for p in os.listdir('/proc')) < 5)", 0,
     "0 True"),
    ("x = bytearray(512 << 20)", 1, ""),  # MemoryError under the 256M cap
    ("while True: pass", 137, ""),  # the time limit kills it
])
def test_sandbox_recipe(rl: AsUser, code: str, exit_code: int, stdout: str) -> None:
    """examples/sandbox.py (docs/pycontain.md's recipe), as the normal user."""
    with open(SANDBOX) as f:
        recipe = f.read()
    r = rl.python("-c", recipe, input=code.encode(), timeout=60)
    assert (r.returncode, r.stdout.decode().strip()) == (exit_code, stdout), r.stderr


def test_oci_runtime_as_a_normal_user(rl: AsUser, user: User, box: str) -> None:
    """pycontain-oci rootless (as runc is): ``spec --rootless``, run, exec, kill, delete, with
    its state in the user's runtime dir; a config without a user namespace is refused."""
    bundle = os.path.join(user.home, "bundle")
    oci = ["-m", "pycontain.oci.cli"]
    os.makedirs(os.path.join(bundle, "rootfs"))
    subprocess.run(["tar", "-C", os.path.join(bundle, "rootfs"), "-xf", box], check=True)
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", bundle], check=True)
    r = rl.python(*oci, "spec", "--rootless", "--bundle", bundle)
    assert r.returncode == 0, r.stderr
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["process"].update(terminal=False, args=["sh", "-c", "id -u; cat /proc/self/uid_map"])
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = rl.python(*oci, "run", "--bundle", bundle, "one")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["0", "0", str(user.uid), "1"]
    cfg["process"]["args"] = ["sleep", "30"]
    with open(path, "w") as f:
        json.dump(cfg, f)
    # (the container keeps run's stdio: not pipes, whose end would never come)
    r = rl.python(*oci, "run", "--detach", "--bundle", bundle, "two",
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, capture_output=False)
    assert r.returncode == 0
    try:
        assert os.path.isdir(os.path.join(user.home, "run", "pycontain-oci", "two"))
        r = rl.python(*oci, "exec", "two", "cat", "/proc/self/uid_map")
        assert r.stdout.decode().split() == ["0", str(user.uid), "1"], r.stderr
    finally:
        rl.python(*oci, "delete", "--force", "two")
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "user"]
    cfg["linux"].pop("uidMappings")
    cfg["linux"].pop("gidMappings")
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = rl.python(*oci, "run", "--bundle", bundle, "three")
    assert r.returncode == 1 and b"needs a user namespace" in r.stderr, r.stderr
    subprocess.run(["rm", "-rf", bundle], check=True)


@pytest.fixture
def tun_for_users() -> Iterator[None]:
    """/dev/net/tun open to normal users (Debian's default, 0666) for the test: this VM has it
    at 0600, which leaves a normal user no user-mode network at all. Restored afterwards."""
    path = "/dev/net/tun"
    if not os.path.exists(path):
        pytest.skip("no /dev/net/tun on this kernel")
    mode = os.stat(path).st_mode & 0o777
    os.chmod(path, 0o666)
    try:
        yield
    finally:
        os.chmod(path, mode)


@pytest.fixture
def test_host_ns() -> Iterator[str]:
    """A network namespace playing the host (only loopback), made by root."""
    name = f"pyc-rl-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    yield f"/run/netns/{name}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.mark.skipif(shutil.which("slirp4netns") is None, reason="slirp4netns is not installed")
def test_user_mode_network_and_published_port(rl: AsUser, user: User, tun_for_users: None,
                                              test_host_ns: str) -> None:
    """Rootless -p: slirp4netns gives the container tap0 and forwards the published port;
    the host's loopback services stay out of the container's reach."""
    r = rl.python("-m", "pycontain", "run", "-d", "--name", "web", "-p", "127.0.0.1:8080:80",
                  "--", "python3", "-m", "http.server", "80", netns=test_host_ns)
    assert r.returncode == 0, r.stderr
    try:
        fetch = ("import urllib.request, sys, time\nfor _ in range(100):\n    try:\n"
                 "        print(urllib.request.urlopen(sys.argv[1], timeout=1).status); break\n"
                 "    except OSError:\n        time.sleep(0.05)")
        r = rl.python("-c", fetch, "http://127.0.0.1:8080/", netns=test_host_ns)
        assert r.stdout.strip() == b"200", r.stderr
        r = rl.python("-m", "pycontain", "exec", "web", "--", "sh", "-c",
                      "ip -4 -o addr show tap0 | awk '{print $4}'; python3 -c 'import socket; "
                      "socket.create_connection((\"10.0.2.2\", 8080), 1)' 2>&1 | tail -1",
                      netns=test_host_ns)
        lines = r.stdout.decode().splitlines()
        assert lines[0] == "10.0.2.100/24", r.stdout
        assert "Error" in lines[1]  # --disable-host-loopback: the host's 127.0.0.1 is closed
    finally:
        rl.python("-m", "pycontain", "rm", "-f", "web", netns=test_host_ns)


@pytest.mark.skipif(not (REGISTRY and HTPASSWD), reason="docker-registry and htpasswd needed")
def test_login_pull_push_as_a_normal_user(rl: AsUser, user: User, box: str,
                                          tmp_path: Any) -> None:
    """A normal user logs in (the auth file goes to its $XDG_RUNTIME_DIR/containers, 0600),
    pushes, and pulls into its own store, the layers unpacked in the mapped namespace with
    the owners the containers see."""
    pw = htpasswd_file(str(tmp_path / "htpasswd"), {"bob": "pw-of-bob"})
    with Registry(str(tmp_path / "reg"), htpasswd=pw) as reg:
        ref = f"{reg.address}/rl/box:1"
        rl.ok("image", "import", box, "--name", "box:v1")
        r = rl.run("push", "--tls-verify=false", "box:v1", ref)
        assert r.returncode == 125 and b"credentials" in r.stderr, r.stderr
        rl.ok("login", "--tls-verify=false", "-u", "bob", "--password-stdin", reg.address,
              input=b"pw-of-bob\n")
        authfile = os.path.join(user.home, "run", "containers", "auth.json")
        st = os.stat(authfile)
        assert st.st_uid == user.uid and stat.S_IMODE(st.st_mode) == 0o600
        rl.ok("push", "-q", "--tls-verify=false", "box:v1", ref)
        rl.ok("image", "rm", "box:v1")
        rl.ok("pull", "-q", "--tls-verify=false", ref)
        out = rl.ok("run", "--rm", "--image", ref, "--", "sh", "-c",
                    "ls -ln /home/app/owned | tr -s ' ' | cut -d' ' -f3,4")
        assert out.strip() == "1000 1000", out
        rl.ok("logout", reg.address)
        rl.ok("image", "rm", ref)
        os.unlink(authfile)
