"""``pycontain pull`` and ``push`` against a real registry: Debian's docker-registry (the
distribution project's server) on 127.0.0.1 with a temporary storage dir, plain HTTP, and skopeo
as the other client (it pushes what ``image export`` wrote, inspects and copies back what
pycontain pushed)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from typing import Any, Dict, Iterator

import pytest

from tests.busybox import make_busybox_root
from tests.images.regserver import (
    REGISTRY,
    SKOPEO,
    CuttingProxy,
    Pc,
    Registry,
    put_manifest,
    upload_blob,
)

pytestmark = [
    pytest.mark.skipif(REGISTRY is None, reason="docker-registry is not installed "
                       "(apt-get install docker-registry)"),
    pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed"),
]


STORAGE: Dict[str, str] = {}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The registry's address; its storage is ``STORAGE[address]``."""
    with Registry(str(tmp_path_factory.mktemp("registry"))) as reg:
        STORAGE[reg.address] = reg.storage
        yield reg.address


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
    assert pc.leftovers() == []


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
        assert pc.leftovers() == []
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
    assert pc.leftovers() == []


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


def _layer_digests(layout: str) -> list:
    with open(os.path.join(layout, "index.json")) as f:
        m = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(layout, "blobs", "sha256", m[7:])) as f:
        return [x["digest"] for x in json.load(f)["layers"]]


def test_chunked_push_and_cross_repository_mount(pc: Pc, registry: str, tmp_path: Any) -> None:
    """Blobs above PYCONTAIN_PUSH_CHUNK go in PATCH chunks; a second repository of the same
    registry gets its blobs by a mount from the first, not an upload."""
    root = os.path.join(str(tmp_path), "root")
    make_busybox_root(root, files={"etc/motd": "chunked\n"})
    tar = os.path.join(str(tmp_path), "c.tar")
    subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
    pc.ok("image", "import", tar, "--name", "mine/chunk:1")
    layout = os.path.join(str(tmp_path), "exported")
    pc.ok("image", "export", "mine/chunk:1", layout)
    layer = _layer_digests(layout)[0]
    env = {"PYCONTAIN_PUSH_CHUNK": "65536"}
    r = pc.run("push", "--tls-verify=false", "mine/chunk:1", f"{registry}/chunk/a:1", env=env)
    assert r.returncode == 0, r.stderr
    assert f"Copying blob {layer[7:19]}: done (chunked)" in r.stderr.decode(), r.stderr
    digest = r.stdout.decode().strip()
    info = json.loads(subprocess.run(
        [str(SKOPEO), "inspect", "--tls-verify=false", f"docker://{registry}/chunk/a:1"],
        check=True, capture_output=True).stdout)
    assert info["Digest"] == digest and info["Layers"] == [layer]
    r = pc.run("push", "--tls-verify=false", "mine/chunk:1", f"{registry}/chunk/b:1")
    assert r.returncode == 0, r.stderr
    assert f"Copying blob {layer[7:19]}: mounted from chunk/a" in r.stderr.decode(), r.stderr
    links = os.path.join(STORAGE[registry], "docker", "registry", "v2", "repositories",
                         "chunk", "b", "_layers", "sha256", layer[7:], "link")
    assert os.path.exists(links)
    back = os.path.join(str(tmp_path), "back")
    subprocess.run([str(SKOPEO), "copy", "--src-tls-verify=false",
                    f"docker://{registry}/chunk/b:1", f"oci:{back}:1"], check=True,
                   capture_output=True)
    assert _layer_digests(back) == [layer]
    assert pc.leftovers() == []


def test_progress_lines_and_layers_not_fetched_twice(pc: Pc, registry: str,
                                                     tmp_path: Any) -> None:
    _push(pc, registry, "demo/prog:1", str(tmp_path))
    r = pc.run("pull", "--tls-verify=false", f"{registry}/demo/prog:1")
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "\x1b[" not in err  # not a terminal: plain lines
    assert "Copying blob " in err and ": done (" in err and "/s)" in err, err
    assert "Writing manifest" in err
    # The same layer under another tag: already unpacked here, so not fetched.
    subprocess.run([str(SKOPEO), "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"docker://{registry}/demo/prog:1", f"docker://{registry}/demo/prog:2"],
                   check=True, capture_output=True)
    r = pc.run("pull", "--tls-verify=false", f"{registry}/demo/prog:2")
    assert r.returncode == 0, r.stderr
    assert "skipped: already in the store" in r.stderr.decode(), r.stderr
    assert ": done (" not in r.stderr.decode()
    out = json.loads(pc.ok("image", "inspect", f"{registry}/demo/prog:2"))
    assert f"{registry}/demo/prog:2" in out[0]["RepoTags"]
    # -q: nothing but the id.
    r = pc.run("pull", "-q", "--tls-verify=false", f"{registry}/demo/prog:1")
    assert r.returncode == 0 and r.stderr == b""


def test_progress_on_a_terminal(pc: Pc, registry: str, tmp_path: Any) -> None:
    _push(pc, registry, "demo/tty:1", str(tmp_path))
    master, slave = pty.openpty()
    try:
        import sys

        p = subprocess.Popen([sys.executable, "-m", "pycontain", "pull", "--tls-verify=false",
                              f"{registry}/demo/tty:1"], env=pc.env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not data:
                break
            chunks.append(data)
        out, _ = p.communicate(timeout=120)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert p.returncode == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "\x1b[2K" in screen and "Copying blob" in screen and " done" in screen, screen
    assert out.decode().startswith("sha256:")


def test_broken_connection_is_resumed(pc: Pc, registry: str, tmp_path: Any) -> None:
    """The connection carrying the layer breaks in the middle: the download goes on from
    where it stopped (a Range request) and the image is whole."""
    _push(pc, registry, "demo/cut:1", str(tmp_path))
    port = int(registry.rsplit(":", 1)[1])
    with CuttingProxy(port, cut_after=200_000) as proxy:
        ref = f"{proxy.address}/demo/cut:1"
        r = pc.run("pull", "-q", "--tls-verify=false", ref)
        assert r.returncode == 0, r.stderr
        assert proxy.cut
        sent = b"".join(proxy.requests)
        assert b"Range: bytes=" in sent
    if os.geteuid() == 0:
        out = pc.ok("run", "--rm", "--image", ref, "--", "cat", "/etc/motd")
        assert out == "pulled demo/cut:1\n"
    assert pc.leftovers() == []


def test_index_picks_the_platform(pc: Pc, registry: str, tmp_path: Any) -> None:
    """An OCI index with an arm64 entry first and an amd64 one: the machine's platform by
    default, --platform for another, a one-line error for one the index lacks."""
    import platform as pyplatform

    if pyplatform.machine() not in ("x86_64", "amd64"):
        pytest.skip("the index below is built for an amd64 host")
    _push(pc, registry, "multi/box:amd64", str(tmp_path))
    layout = os.path.join(str(tmp_path), "layout-multi-box-amd64")
    with open(os.path.join(layout, "index.json")) as f:
        m1 = json.load(f)["manifests"][0]["digest"]
    blobs = os.path.join(layout, "blobs", "sha256")
    with open(os.path.join(blobs, m1[7:]), "rb") as f:
        amd64_bytes = f.read()
    manifest = json.loads(amd64_bytes)
    with open(os.path.join(blobs, manifest["config"]["digest"][7:])) as f:
        config = json.load(f)
    config["architecture"] = "arm64"
    config_bytes = json.dumps(config).encode()
    manifest["config"] = {**manifest["config"], "size": len(config_bytes),
                          "digest": upload_blob(registry, "multi/box", config_bytes)}
    arm = json.dumps(manifest).encode()
    mtype = "application/vnd.oci.image.manifest.v1+json"
    m2 = put_manifest(registry, "multi/box", "arm64", arm, mtype)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [
                 {"mediaType": mtype, "digest": m2, "size": len(arm),
                  "platform": {"os": "linux", "architecture": "arm64"}},
                 {"mediaType": mtype, "digest": m1, "size": len(amd64_bytes),
                  "platform": {"os": "linux", "architecture": "amd64"}}]}
    put_manifest(registry, "multi/box", "all", json.dumps(index).encode(),
                 "application/vnd.oci.image.index.v1+json")
    ref = f"{registry}/multi/box:all"

    def arch() -> str:
        return str(json.loads(pc.ok("image", "inspect", ref))[0]["Architecture"])

    pc.ok("pull", "-q", "--tls-verify=false", ref)
    assert arch() == "amd64"
    pc.ok("pull", "-q", "--tls-verify=false", "--platform", "linux/arm64", ref)
    assert arch() == "arm64"
    line = pc.fails("pull", "-q", "--tls-verify=false", "--platform", "linux/ppc64le", ref)
    assert "no image for linux/ppc64le" in line and "linux/amd64" in line, line


def test_python_api_pull_and_push(pc: Pc, registry: str, tmp_path: Any) -> None:
    import pycontain

    roots = {"root": pc.env["PYCONTAIN_ROOT"], "storage": pc.env["PYCONTAIN_STORAGE"]}
    digest = _push(pc, registry, "api/box:1", str(tmp_path))
    image_id = pycontain.pull(f"{registry}/api/box:1", tls_verify=False, **roots)
    assert image_id.startswith("sha256:")
    pushed = pycontain.push(f"{registry}/api/box:1", f"{registry}/api/copy:1", tls_verify=False,
                            **roots)
    assert pushed.startswith("sha256:")
    with pytest.raises(pycontain.ContainerError, match="image not known"):
        pycontain.pull(f"{registry}/api/box:nope", tls_verify=False, **roots)
    assert digest.startswith("sha256:")
