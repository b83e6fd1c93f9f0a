"""``pycontain pull`` against a real registry: Debian's docker-registry (the distribution
project's server) on 127.0.0.1 with a temporary storage dir, plain HTTP, and skopeo as the
other client (it pushes what ``image export`` wrote)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List

import pytest

from tests.busybox import make_busybox_root

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")

pytestmark = [
    pytest.mark.skipif(REGISTRY is None, reason="docker-registry is not installed "
                       "(apt-get install docker-registry)"),
    pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed"),
]


STORAGE: Dict[str, str] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The registry's address; its storage is ``STORAGE[address]``."""
    base = tmp_path_factory.mktemp("registry")
    port = _free_port()
    conf = base / "config.yml"
    conf.write_text(f"""version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: {base / 'storage'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    p = subprocess.Popen([str(REGISTRY), "serve", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline and p.poll() is None, "registry did not start"
            time.sleep(0.05)
    STORAGE[f"127.0.0.1:{port}"] = str(base / "storage")
    yield f"127.0.0.1:{port}"
    p.terminate()
    p.wait(10)


class Pc:
    def __init__(self, base: str) -> None:
        self.base = base
        self.env = dict(os.environ, PYCONTAIN_ROOT=os.path.join(base, "state"),
                        PYCONTAIN_STORAGE=os.path.join(base, "storage"), PYTHONPATH=ROOT_DIR)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pycontain", *args], env=self.env,
                              capture_output=True, timeout=120, stdin=subprocess.DEVNULL)

    def ok(self, *args: str) -> str:
        r = self.run(*args)
        assert r.returncode == 0, f"{args}: {r.stderr.decode()}"
        return r.stdout.decode()


@pytest.fixture
def pc(tmp_path: Any) -> Pc:
    return Pc(str(tmp_path))


def _push(pc: Pc, registry: str, ref: str, tmp: str) -> str:
    """A busybox image made by pycontain, exported and pushed by skopeo; its digest."""
    root = os.path.join(tmp, "root")
    if not os.path.isdir(root):
        make_busybox_root(root, files={"etc/motd": f"pulled {ref}\n"})
        subprocess.run(["tar", "-C", root, "-cf", os.path.join(tmp, "box.tar"), "."],
                       check=True)
    pc.ok("image", "import", os.path.join(tmp, "box.tar"), "--name", "local/box:1")
    layout = os.path.join(tmp, "layout-" + ref.replace(":", "-").replace("/", "-"))
    pc.ok("image", "export", "local/box:1", layout)
    pc.ok("image", "rm", "local/box:1")
    digest_file = os.path.join(tmp, "digest")
    subprocess.run([str(SKOPEO), "copy", "--dest-tls-verify=false", "--digestfile",
                    digest_file, f"oci:{layout}", f"docker://{registry}/{ref}"], check=True,
                   capture_output=True)
    with open(digest_file) as f:
        return f.read().strip()


def _leftovers(pc: Pc) -> List[str]:
    tmp = os.path.join(pc.base, "storage", "tmp")
    return os.listdir(tmp) if os.path.isdir(tmp) else []


@pytest.mark.root
def test_pull_run_and_pull_by_digest(pc: Pc, registry: str, tmp_path: Any) -> None:
    digest = _push(pc, registry, "demo/box:1", str(tmp_path))
    image_id = pc.ok("pull", "-q", "--tls-verify=false", f"{registry}/demo/box:1").strip()
    assert image_id.startswith("sha256:")
    if os.geteuid() == 0:
        out = pc.ok("run", "--rm", "--image", f"{registry}/demo/box:1", "--", "cat",
                    "/etc/motd")
        assert out == "pulled demo/box:1\n"
    pc.ok("image", "rm", f"{registry}/demo/box:1")
    pc.ok("pull", "-q", "--tls-verify=false", f"{registry}/demo/box@{digest}")
    names = [f"{i['name']}:{i['tag']}" for i in json.loads(pc.ok("image", "ls", "--json"))]
    assert f"{registry}/demo/box:latest" in names
    assert _leftovers(pc) == []


def test_pull_errors_one_line_nothing_stored(pc: Pc, registry: str, tmp_path: Any) -> None:
    _push(pc, registry, "demo/box:2", str(tmp_path))
    for args, message in [
            ((f"{registry}/demo/box:nope",), "image not known"),
            ((f"{registry}/no/such:1",), "image not known"),
            ((f"{registry}/demo/box:2", "--platform", "linux/s390x"), "no image for"),
            ((f"{registry}/demo/box@sha256:{'0' * 64}",), "image not known"),
            (("Bad Name",), "invalid"),
            ((f"{registry}/demo/box:2", "--tls-verify=true"), "TLS")]:
        verify = [] if "--tls-verify=true" in args else ["--tls-verify=false"]
        r = pc.run("pull", "-q", *verify, *args)
        lines = r.stderr.decode().strip().splitlines()
        assert r.returncode == 125 and len(lines) == 1 and message in lines[0], (args, r.stderr)
    assert [i["name"] for i in json.loads(pc.ok("image", "ls", "--json"))] == ["host"]


def test_corrupted_blob_is_refused(pc: Pc, registry: str, tmp_path: Any) -> None:
    """A layer whose bytes do not hash to its digest (the registry's storage tampered with)
    is refused while it arrives, and nothing of it is kept."""
    _push(pc, registry, "demo/bad:1", str(tmp_path))
    v2 = os.path.join(STORAGE[registry], "docker", "registry", "v2")

    def blob(digest: str) -> str:
        return os.path.join(v2, "blobs", "sha256", digest[7:9], digest[7:], "data")

    with open(os.path.join(v2, "repositories", "demo", "bad", "_manifests", "tags", "1",
                           "current", "link")) as f:
        with open(blob(f.read().strip())) as m:
            layer = blob(json.load(m)["layers"][0]["digest"])
    original = open(layer, "rb").read()
    try:
        with open(layer, "r+b") as f:
            f.seek(len(original) // 2)
            f.write(b"\x00corrupt\x00")
        r = pc.run("pull", "-q", "--tls-verify=false", f"{registry}/demo/bad:1")
        assert r.returncode == 125 and b"digest mismatch" in r.stderr, r.stderr
        assert [i["name"] for i in json.loads(pc.ok("image", "ls", "--json"))] == ["host"]
        assert _leftovers(pc) == []
        layers = os.path.join(pc.base, "storage", "layers", "sha256")
        assert not os.path.isdir(layers) or os.listdir(layers) == []
    finally:
        with open(layer, "wb") as f:
            f.write(original)


def test_push_then_skopeo_and_pull_back(pc: Pc, registry: str, tmp_path: Any) -> None:
    """What pycontain pushes is what ``image export`` writes: skopeo sees the same manifest
    digest and copies it back; a second push sends no blob again; pycontain pulls it."""
    root = os.path.join(str(tmp_path), "root")
    make_busybox_root(root, files={"etc/motd": "pushed\n"})
    subprocess.run(["tar", "-C", root, "-cf", os.path.join(str(tmp_path), "b.tar"), "."],
                   check=True)
    pc.ok("image", "import", os.path.join(str(tmp_path), "b.tar"), "--name", "mine/box:1")
    layout = os.path.join(str(tmp_path), "exported")
    pc.ok("image", "export", "mine/box:1", layout)
    with open(os.path.join(layout, "index.json")) as f:
        exported = json.load(f)["manifests"][0]["digest"]
    r = pc.run("push", "--tls-verify=false", "mine/box:1", f"{registry}/pushed/box:7")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == exported
    info = json.loads(subprocess.run(
        [str(SKOPEO), "inspect", "--tls-verify=false", f"docker://{registry}/pushed/box:7"],
        check=True, capture_output=True).stdout)
    assert info["Digest"] == exported
    back = os.path.join(str(tmp_path), "back")
    subprocess.run([str(SKOPEO), "copy", "--src-tls-verify=false",
                    f"docker://{registry}/pushed/box:7", f"oci:{back}:7"], check=True,
                   capture_output=True)
    r = pc.run("push", "--tls-verify=false", "mine/box:1", f"{registry}/pushed/box:8")
    assert r.returncode == 0 and r.stdout.decode().strip() == exported
    pc.ok("image", "rm", "mine/box:1")
    pc.ok("pull", "-q", "--tls-verify=false", f"{registry}/pushed/box:8")
    r = pc.run("push", "--tls-verify=false", "nothing:1", f"{registry}/x:1")
    assert r.returncode == 125 and len(r.stderr.decode().strip().splitlines()) == 1
    assert _leftovers(pc) == []


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")
def test_run_pulls_when_missing(pc: Pc, registry: str, tmp_path: Any) -> None:
    _push(pc, registry, "demo/run:1", str(tmp_path))
    ref = f"{registry}/demo/run:1"
    r = pc.run("run", "--rm", "--pull=never", "--image", ref, "--", "true")
    assert r.returncode == 125 and b"unknown image" in r.stderr
    out = pc.ok("run", "--rm", "--tls-verify=false", "--image", ref, "--", "cat", "/etc/motd")
    assert out == "pulled demo/run:1\n"  # the default for a registry reference: missing
    out = pc.ok("run", "--rm", "--pull=always", "--tls-verify=false", "--image", ref, "--",
                "cat", "/etc/motd")
    assert out == "pulled demo/run:1\n"
    r = pc.run("run", "--rm", "--image", "no-such-local-image", "--", "true")
    assert r.returncode == 125 and b"unknown image" in r.stderr  # a bare name never pulls
    r = pc.run("run", "--rm", "--pull=sometimes", "--image", ref, "--", "true")
    assert r.returncode in (2, 125)
    pc.ok("image", "rm", ref)
