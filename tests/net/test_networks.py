"""Networks on the CNI plugins. Every test runs the runtime inside a network namespace made to
play the host (``nsenter --net``: the machine's own interfaces and addresses are never
touched, and traffic never leaves the namespaces made here), then checks that no veth,
bridge of a removed network, per-container iptables rule, IPAM lease, namespace file or mount
is left."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator, List

import pytest

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BRIDGE = "/usr/lib/cni/bridge"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists(BRIDGE), reason="the CNI plugins are not installed "
                       "(apt-get install containernetworking-plugins)"),
    pytest.mark.skipif(shutil.which("nsenter") is None or shutil.which("ip") is None,
                       reason="needs nsenter and ip"),
]


class Host:
    """A network namespace playing the host, and the runtime run inside it."""

    def __init__(self, name: str, base: str) -> None:
        self.name, self.base = name, base
        self.path = f"/run/netns/{name}"
        self.env = dict(os.environ, PYCONTAIN_ROOT=os.path.join(base, "state"),
                        PYCONTAIN_STORAGE=os.path.join(base, "storage"),
                        PYTHONPATH=ROOT_DIR)

    def sh(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(["nsenter", f"--net={self.path}", *args], env=self.env,
                              stdin=subprocess.DEVNULL, **kw)

    def pc(self, *args: str) -> subprocess.CompletedProcess:
        return self.sh(sys.executable, "-m", "pycontain", *args)

    def ok(self, *args: str) -> str:
        r = self.pc(*args)
        assert r.returncode == 0, f"pycontain {' '.join(args)}: {r.stderr.decode()}"
        return r.stdout.decode()

    def links(self) -> List[str]:
        out = self.sh("ip", "-o", "link").stdout.decode().splitlines()
        return [line.split(":")[1].strip().split("@")[0] for line in out]

    def container_rules(self) -> List[str]:
        rules = []
        for table in ("nat", "filter"):
            out = self.sh("iptables", "-t", table, "-S").stdout.decode().splitlines()
            rules += [r for r in out if ' id: "' in r or "CNI-DN-" in r]
        return rules

    def leases(self) -> List[str]:
        d = os.path.join(self.base, "storage", "cni", "ipam")
        return [os.path.join(dp, f) for dp, _, fs in os.walk(d) for f in fs
                if f[0].isdigit()]


@pytest.fixture
def host() -> Iterator[Host]:
    name = f"pyc-nettest-{os.getpid()}"
    base = tempfile.mkdtemp(prefix="pycontain-net-")
    subprocess.run(["ip", "netns", "add", name], check=True)
    h = Host(name, base)
    h.sh("ip", "link", "set", "lo", "up", check=True)
    try:
        yield h
        state = os.path.join(base, "state")
        names = [n for n in os.listdir(state) if not n.startswith(".")] \
            if os.path.isdir(state) else []
        problems = []
        if names:
            problems.append(f"containers: {names}")
        veths = [n for n in h.links() if n.startswith("veth")]
        if veths:
            problems.append(f"veths: {veths}")
        if h.container_rules():
            problems.append(f"rules: {h.container_rules()}")
        if h.leases():
            problems.append(f"leases: {h.leases()}")
        netns_dir = os.path.join(state, ".netns")
        if os.path.isdir(netns_dir) and os.listdir(netns_dir):
            problems.append(f"netns files: {os.listdir(netns_dir)}")
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if base in line]
        if mounts:
            problems.append(f"mounts: {mounts}")
        for n in names:
            h.pc("rm", "-f", n)
        assert not problems, "left behind: " + "; ".join(problems)
    finally:
        with open("/proc/self/mountinfo") as f:
            for m in [line.split()[4] for line in f if base in line]:
                subprocess.run(["umount", "-l", m], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_network_create_ls_inspect_rm(host: Host) -> None:
    assert host.ok("network", "create", "front", "--subnet", "10.77.0.0/24").strip() == "front"
    host.ok("network", "create", "back", "--internal")
    ls = json.loads(host.ok("network", "ls", "--json"))
    assert [(n["name"], n["subnet"], n["gateway"], n["internal"]) for n in ls] == [
        ("back", "10.89.1.0/24", None, True), ("front", "10.77.0.0/24", "10.77.0.1", False)]
    (info,) = json.loads(host.ok("network", "inspect", "front"))
    assert info["containers"] == [] and info["bridge"].startswith("pyc-")
    for args, message in [
            (("network", "create", "front"), "already exists"),
            (("network", "create", "x", "--subnet", "10.77.0.128/25"), "overlaps 10.77.0.0/24"),
            (("network", "create", "bad/name"), "invalid network name"),
            (("network", "create", "y", "--subnet", "10.78.0.0/24", "--gateway", "10.1.1.1"),
             "is not in"),
            (("network", "rm", "nothing"), "no such network"),
            (("run", "--rm", "--network", "nothing", "--", "true"), "no such network"),
            (("run", "--rm", "--net", "host", "-p", "80:80", "--", "true"), "need a network"),
            (("run", "--rm", "--network", "front", "-p", "99999:80", "--", "true"),
             "out of range"),
            (("run", "--rm", "--network", "front", "--ip", "10.1.2.3", "--", "true"),
             "is not in network front")]:
        r = host.pc(*args)
        lines = r.stderr.decode().strip().splitlines()
        assert r.returncode == 125 and len(lines) == 1 and message in lines[0], (args, r.stderr)
    host.ok("network", "rm", "front", "back")
    assert host.ok("network", "ls").strip().splitlines()[1:] == []
    assert not [n for n in host.links() if n.startswith("pyc-")]  # bridges removed too


def test_published_port_and_names(host: Host) -> None:
    host.ok("network", "create", "front", "--subnet", "10.77.0.0/24")
    host.ok("run", "-d", "--name", "web", "--network", "front", "--network-alias", "www",
            "--ip", "10.77.0.50", "-p", "127.0.0.1:8080:80", "--", "python3", "-m",
            "http.server", "80")
    try:
        assert host.ok("port", "web").strip() == "80/tcp -> 127.0.0.1:8080"
        assert host.ok("ps").splitlines()[1].endswith("127.0.0.1:8080->80/tcp")
        (row,) = json.loads(host.ok("ps", "--json"))
        assert row["networks"] == {"front": "10.77.0.50"} and row["ports"] == [
            "127.0.0.1:8080->80/tcp"]
        (info,) = json.loads(host.ok("network", "inspect", "front"))
        assert info["containers"] == ["web"]
        r = host.pc("network", "rm", "front")
        assert r.returncode == 125 and b"in use by web" in r.stderr
        deadline = time.monotonic() + 10
        fetch = ("import urllib.request, sys; "
                 "print(len(urllib.request.urlopen(sys.argv[1], timeout=2).read()))")
        while True:  # the published port, from the test host's loopback
            r = host.sh(sys.executable, "-c", fetch, "http://127.0.0.1:8080/")
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.returncode == 0 and int(r.stdout) > 0, r.stderr
        # a second container reaches the first by name and by alias
        out = host.ok("run", "--rm", "--name", "client", "--network", "front", "--", "sh",
                      "-c", f"grep -w web /etc/hosts; python3 -c '{fetch}' http://web/ && "
                      f"python3 -c '{fetch}' http://www/")
        lines = out.splitlines()
        assert lines[0].split() == ["10.77.0.50", "web", "www"]
        assert int(lines[1]) > 0 and lines[1] == lines[2]
        assert "client" in open(os.path.join(host.base, "state", "web", "hosts")).read()
    finally:
        host.ok("rm", "-f", "web")
    host.ok("network", "rm", "front")


def test_internal_network_has_no_way_out(host: Host) -> None:
    host.ok("network", "create", "closed", "--internal", "--subnet", "10.79.0.0/24")
    out = host.ok("run", "--rm", "--network", "closed", "--", "sh", "-c",
                  "ip -4 route; ip -4 -o addr show eth0 | awk '{print $4}'")
    lines = out.strip().splitlines()
    assert not any(line.startswith("default") for line in lines), out
    assert lines[-1].startswith("10.79.0.")
    host.ok("network", "rm", "closed")


def test_stop_releases_the_address_and_api(host: Host) -> None:
    host.ok("network", "create", "front", "--subnet", "10.77.0.0/24")
    host.ok("run", "-d", "--name", "s", "--network", "front", "--", "sleep", "60")
    assert len(host.leases()) == 1
    host.ok("stop", "s")
    assert host.leases() == [] and not [n for n in host.links() if n.startswith("veth")]
    host.ok("rm", "s")
    code = ("import pycontain; r = pycontain.run(['sh', '-c', 'ip -4 -o addr show eth0'], "
            "network='front', ports={'80/tcp': ('127.0.0.1', 8099)}, capture_output=True); "
            "print(r.exit_code, r.stdout.decode().split()[3])")
    r = host.sh(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    exit_code, addr = r.stdout.decode().split()
    assert exit_code == "0" and addr.startswith("10.77.0.")
    host.ok("network", "rm", "front")


def test_container_network_is_shared(host: Host) -> None:
    """``--network container:NAME``: the pod model, one network namespace for several."""
    host.ok("network", "create", "front", "--subnet", "10.77.0.0/24")
    host.ok("run", "-d", "--name", "pod", "--network", "front", "--", "python3", "-c",
            "import socket; s = socket.socket(); s.bind(('127.0.0.1', 7000)); s.listen(); "
            "c, _ = s.accept(); c.sendall(b'same-namespace'); c.close()")
    try:
        code = ("import socket, time\nfor _ in range(100):\n    try:\n"
                "        print(socket.create_connection(('127.0.0.1', 7000), 1).recv(64)"
                ".decode()); break\n    except OSError:\n        time.sleep(0.05)")
        out = host.ok("run", "--rm", "--network", "container:pod", "--", "sh", "-c",
                      f"ip -4 -o addr show eth0 | awk '{{print $4}}'; python3 -c \"{code}\"")
        addr, reply = out.split()
        assert addr.startswith("10.77.0.") and reply == "same-namespace"
        r = host.pc("run", "--rm", "--network", "container:pod", "-p", "1:1", "--", "true")
        assert r.returncode == 125 and b"shares that container" in r.stderr
    finally:
        host.ok("rm", "-f", "pod")
    host.ok("network", "rm", "front")


def test_sigkill_of_the_cli_releases_the_network(host: Host) -> None:
    import signal

    host.ok("network", "create", "front", "--subnet", "10.77.0.0/24")
    p = subprocess.Popen(["nsenter", f"--net={host.path}", sys.executable, "-m", "pycontain",
                          "run", "--rm", "--name", "victim", "--network", "front", "--",
                          "sleep", "60"], env=host.env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not host.leases():
        assert time.monotonic() < deadline, "the container never got an address"
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 10  # PID 1 dies with its CLI; the next command cleans up
    while "victim" in host.ok("ps", "-a") or host.leases():
        assert time.monotonic() < deadline, host.leases()
        time.sleep(0.05)
    host.ok("network", "rm", "front")


def test_publish_all_exposed_ports(host: Host, tmp_path: Any) -> None:
    """-P publishes what the image EXPOSEs (commit --change Expose=...) on free host ports,
    on the default network when none is named."""
    from tests.busybox import make_busybox_root

    root = str(tmp_path / "root")
    make_busybox_root(root, dirs=("bin", "etc", "proc", "dev", "sys", "tmp", "www"),
                      files={"www/index.html": "hello\n"})
    subprocess.run(["tar", "-C", root, "-cf", str(tmp_path / "box.tar"), "."], check=True)
    host.ok("image", "import", str(tmp_path / "box.tar"), "--name", "box:1")
    host.ok("run", "--name", "base", "--image", "box:1", "--", "true")
    host.ok("commit", "--change", "Expose=8000,53/udp", "base", "web:exposed")
    host.ok("rm", "base")
    host.ok("run", "-d", "--name", "web", "-P", "--image", "web:exposed", "--", "httpd", "-f",
            "-p", "8000", "-h", "/www")
    try:
        lines = sorted(host.ok("port", "web").split("\n")[:-1])
        assert [x.split(" -> ")[0] for x in lines] == ["53/udp", "8000/tcp"], lines
        port = int(lines[1].rsplit(":", 1)[1])
        fetch = ("import urllib.request, sys, time\nfor _ in range(100):\n    try:\n"
                 "        print(urllib.request.urlopen(sys.argv[1], timeout=1).status); break\n"
                 "    except OSError:\n        time.sleep(0.05)")
        r = host.sh(sys.executable, "-c", fetch, f"http://127.0.0.1:{port}/")
        assert r.stdout.strip() == b"200", r.stderr
        inspect = json.loads(host.ok("inspect", "web"))
        assert [n["name"] for n in inspect["network"]["networks"]] == ["pycontain"]
    finally:
        host.ok("rm", "-f", "web")
    host.ok("image", "rm", "web:exposed", "box:1")
    host.ok("network", "rm", "pycontain")
