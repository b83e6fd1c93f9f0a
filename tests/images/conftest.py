"""Fixtures for the image store tests: real images built with umoci and skopeo at test time.

The base OCI layout (session-scoped, built once) has three layers:

1. a busybox-static rootfs: /bin/busybox and its applet symlinks, /etc/passwd, /etc/gone,
   /etc/hard1 + /etc/hard2 (hardlinks), /data/opaque/{old1,old2}, /data/kept/z, a setuid file;
2. (umoci repack) /etc/gone deleted -> an OCI whiteout, /etc/new added, /etc/passwd changed;
3. (umoci raw add-layer, hand-made tar) /data/opaque made opaque (.wh..wh..opq) holding only
   /data/opaque/fresh.

plus a config (Entrypoint, Cmd, Env, WorkingDir, User) set with ``umoci config``. The same
image is also written as an OCI archive tar and a docker-archive by skopeo.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from tests.busybox import make_busybox_root

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT_DIR not in sys.path:
    sys.path.insert(0, ROOT_DIR)

from pycontain.image.store import ImageStore  # noqa: E402

IS_ROOT = os.geteuid() == 0
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
TAG = "v1"

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (overlay whiteouts, mounts)")


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install umoci skopeo busybox-static)")
    return path


def run(*cmd: str, cwd: Optional[str] = None) -> str:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"{' '.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


# ---------------------------------------------------------------------------------------------
# Trees


def tree(root: str) -> Dict[str, Tuple]:
    """rel path -> (kind, mode, uid, gid, content sha / link target / rdev), root excluded."""
    out: Dict[str, Tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode, st.st_uid, st.st_gid, None)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", None, st.st_uid, st.st_gid, os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    h = hashlib.sha256(f.read()).hexdigest()
                out[rel] = ("file", mode, st.st_uid, st.st_gid, h)
            elif stat.S_ISCHR(st.st_mode):
                out[rel] = ("chr", mode, st.st_uid, st.st_gid, st.st_rdev)
            else:
                out[rel] = ("other", mode, st.st_uid, st.st_gid, None)
    return out


def snapshot(root: str) -> List[str]:
    """Every path under ``root`` (for 'nothing was left behind' checks)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


class Overlay:
    """A read-only overlay of an image's layers, mounted in a tmp dir (a context manager)."""

    def __init__(self, layers: List[str], base: str) -> None:
        self.layers = list(layers)
        self.base = base
        self.target = os.path.join(base, "merged")

    def __enter__(self) -> str:
        os.makedirs(self.target, exist_ok=True)
        lowers = self.layers
        if len(lowers) == 1:  # a lowerdir-only overlay needs two lower dirs
            empty = os.path.join(self.base, "empty")
            os.makedirs(empty, exist_ok=True)
            lowers = [*lowers, empty]
        run("mount", "-t", "overlay", "overlay", "-o", "ro,lowerdir=" + ":".join(lowers),
            self.target)
        return self.target

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", self.target], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def merged_tree(layers: List[str], tmp: str) -> Dict[str, Tuple]:
    with Overlay(layers, tmp) as m:
        return tree(m)


# ---------------------------------------------------------------------------------------------
# Image building


def make_busybox_rootfs(root: str) -> None:
    files = {"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
             "etc/gone": "to be deleted\n", "etc/hard1": "hardlinked\n",
             "data/opaque/old1": "old1\n", "data/opaque/old2": "old2\n",
             "data/kept/z": "z\n", "bin/suid": "#!/bin/sh\n"}
    make_busybox_root(root, ("bin", "etc", "data/opaque", "data/kept", "tmp", "root"), files)
    os.link(os.path.join(root, "etc/hard1"), os.path.join(root, "etc/hard2"))
    os.chmod(os.path.join(root, "bin/suid"), 0o4755)
    os.chown(os.path.join(root, "data/kept/z"), 1000, 1000)
    os.chmod(os.path.join(root, "tmp"), 0o1777)


def tar_bytes(entries: List[Tuple[str, str, bytes]]) -> bytes:
    """A tar from (name, kind, data/linkname) entries; kind in file, dir, symlink, hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, data.decode()
                tf.addfile(ti)
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, data.decode()
                tf.addfile(ti)
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


class BuiltImages:
    def __init__(self, base: str) -> None:
        self.base = base
        self.oci = os.path.join(base, "oci")  # OCI layout dir, image tagged TAG
        self.oci_tar = os.path.join(base, "image-oci.tar")
        self.docker_tar = os.path.join(base, "image-docker.tar")
        self.golden = os.path.join(base, "golden")  # umoci unpack of the image
        self.derived_tag = "v2"  # TAG plus one more layer (shares TAG's layers)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImages]:
    if not IS_ROOT:
        pytest.skip("needs root (umoci unpack as root, overlay whiteouts)")
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed")
    umoci = _need("umoci")
    skopeo = _need("skopeo")
    b = BuiltImages(str(tmp_path_factory.mktemp("built")))
    work = os.path.join(b.base, "work")
    os.makedirs(work)
    img = f"{b.oci}:{TAG}"
    run(umoci, "init", "--layout", b.oci)
    run(umoci, "new", "--image", img)
    # Layer 1: the busybox rootfs.
    bundle = os.path.join(work, "b1")
    run(umoci, "unpack", "--image", img, bundle)
    make_busybox_rootfs(os.path.join(bundle, "rootfs"))
    run(umoci, "repack", "--image", img, bundle)
    shutil.rmtree(bundle)
    # Layer 2: delete, add and change files.
    bundle = os.path.join(work, "b2")
    run(umoci, "unpack", "--image", img, bundle)
    rootfs = os.path.join(bundle, "rootfs")
    os.unlink(os.path.join(rootfs, "etc/gone"))
    with open(os.path.join(rootfs, "etc/new"), "w") as f:
        f.write("new\n")
    with open(os.path.join(rootfs, "etc/passwd"), "a") as f:
        f.write("app:x:1000:1000::/home/app:/bin/sh\n")
    run(umoci, "repack", "--image", img, bundle)
    shutil.rmtree(bundle)
    # Layer 3: an opaque directory (umoci writes per-file whiteouts, so add this one by hand).
    layer3 = os.path.join(work, "layer3.tar")
    with open(layer3, "wb") as f:
        f.write(tar_bytes([("data/", "dir", b""), ("data/opaque/", "dir", b""),
                           ("data/opaque/.wh..wh..opq", "file", b""),
                           ("data/opaque/fresh", "file", b"fresh\n")]))
    run(umoci, "raw", "add-layer", "--image", img, layer3)
    run(umoci, "config", "--image", img,
        "--config.entrypoint", "/bin/busybox", "--config.cmd", "sh",
        "--config.env", "PATH=/bin", "--config.env", "GREETING=hello",
        "--config.workingdir", "/data", "--config.user", "0:0")
    # A derived image sharing the three layers: one more file.
    run(umoci, "tag", "--image", img, b.derived_tag)
    layer4 = os.path.join(work, "layer4.tar")
    with open(layer4, "wb") as f:
        f.write(tar_bytes([("etc/", "dir", b""), ("etc/derived", "file", b"derived\n")]))
    run(umoci, "raw", "add-layer", "--image", f"{b.oci}:{b.derived_tag}", layer4)
    run(umoci, "gc", "--layout", b.oci)
    # The golden tree: umoci's own unpacking of the image.
    run(umoci, "unpack", "--image", img, b.golden)
    # The same image as an OCI archive and a docker-archive, written by skopeo.
    run(skopeo, "copy", "--quiet", f"oci:{img}", f"oci-archive:{b.oci_tar}:{TAG}")
    run(skopeo, "copy", "--quiet", f"oci:{img}", f"docker-archive:{b.docker_tar}:bbox:{TAG}")
    shutil.rmtree(work)
    yield b
    shutil.rmtree(b.base, ignore_errors=True)


@pytest.fixture
def store(tmp_path: os.PathLike[str]) -> Iterator[ImageStore]:
    """A fresh store (with a private, empty state root); checks no mount is left behind."""
    base = str(tmp_path)
    s = ImageStore(os.path.join(base, "storage"), root=os.path.join(base, "state"))
    yield s
    with open("/proc/self/mountinfo") as f:
        left = [line for line in f if base in line]
    for line in left:
        subprocess.run(["umount", "-l", line.split()[4]], check=False)
    shutil.rmtree(base, ignore_errors=True)
    assert not left, f"mounts left behind: {left}"


def oci_manifest(layout: str, tag: str = TAG) -> Tuple[dict, str]:
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    for d in index["manifests"]:
        if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            with open(os.path.join(layout, "blobs", "sha256", d["digest"][7:])) as f:
                return json.load(f), d["digest"]
    raise AssertionError(f"no {tag} in {layout}")


@pytest.fixture(autouse=True)
def _remove_tmp_path(tmp_path: os.PathLike[str]) -> Iterator[None]:
    """Leave no files behind: each test's tmp_path goes when the test ends."""
    yield
    shutil.rmtree(str(tmp_path), ignore_errors=True)
