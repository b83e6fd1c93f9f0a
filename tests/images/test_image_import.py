"""Importing real images built by umoci and skopeo: OCI layout dir and tar, docker-archive."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess

import pytest
from conftest import TAG, BuiltImages, merged_tree, oci_manifest, run, tar_bytes, tree

from pycontain.image import importer
from pycontain.image.errors import ImageError
from pycontain.image.reference import parse_reference
from pycontain.image.store import ImageStore


def _check_image_tree(store: ImageStore, ref: str, images: BuiltImages, tmp: str) -> None:
    img = store.get(ref)
    got = merged_tree(img.layers, tmp)
    want = tree(os.path.join(images.golden, "rootfs"))
    assert set(got) == set(want), (sorted(set(got) ^ set(want)))
    assert got == want
    # The deletions and the opaque directory really hide the lower files.
    assert "etc/gone" not in got
    assert "etc/new" in got
    assert sorted(k for k in got if k.startswith("data/opaque/")) == ["data/opaque/fresh"]
    assert "data/kept/z" in got and got["data/kept/z"][2:4] == (1000, 1000)
    assert got["bin/suid"][1] == 0o4755
    assert got["bin/sh"] == ("symlink", None, 0, 0, "busybox")
    assert got["tmp"][1] == 0o1777


@pytest.mark.parametrize("fmt", ["oci-dir", "oci-tar", "docker-archive"])
def test_import_shows_exactly_the_right_files(store: ImageStore, images: BuiltImages,
                                              tmp_path, fmt: str) -> None:  # type: ignore[no-untyped-def]
    path = {"oci-dir": images.oci, "oci-tar": images.oci_tar,
            "docker-archive": images.docker_tar}[fmt]
    assert importer.detect_format(path) == ("docker-archive" if fmt == "docker-archive"
                                                else "oci")
    name = None if fmt == "docker-archive" else f"bbox:{TAG}"
    img = store.import_image(path, name=name)
    assert img.reference == f"bbox:{TAG}"
    assert len(img.layers) == 3
    assert all(p.startswith(store.layers_dir + "/") for p in img.layers)
    # Image config from `umoci config`.
    assert img.entrypoint == ["/bin/busybox"]
    assert img.cmd == ["sh"]
    assert img.env == ["PATH=/bin", "GREETING=hello"]
    assert img.working_dir == "/data"
    assert img.user == "0:0"
    assert img.argv() == ["/bin/busybox", "sh"]
    assert img.argv(["ls", "/"]) == ["/bin/busybox", "ls", "/"]
    assert img.size > 1_000_000
    assert img.id.startswith("sha256:")
    _check_image_tree(store, f"bbox:{TAG}", images, str(tmp_path / "mnt"))


def test_layer_dirs_hold_overlay_whiteouts(store: ImageStore, images: BuiltImages) -> None:
    img = store.import_image(images.oci, name=f"bbox:{TAG}")
    top, middle, _bottom = img.layers
    st = os.lstat(os.path.join(middle, "etc", "gone"))
    assert (st.st_mode & 0o170000) == 0o020000 and st.st_rdev == 0  # char 0/0
    assert os.getxattr(os.path.join(top, "data", "opaque"), "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(os.path.join(top, "data", "opaque"))) == ["fresh"]
    # Hardlinks survive as hardlinks.
    bottom = img.layers[-1]
    a, b = (os.lstat(os.path.join(bottom, "etc", n)) for n in ("hard1", "hard2"))
    assert a.st_ino == b.st_ino


def test_ref_name_selection_among_several_images(store: ImageStore, images: BuiltImages) -> None:
    with pytest.raises(ImageError, match=r"holds 2 images.*v1, v2"):
        store.import_image(images.oci)
    v2 = store.import_image(images.oci, name="thing:v2")
    assert v2.reference == "thing:v2" and len(v2.layers) == 4
    v1 = store.import_image(images.oci, name="v1")  # the tag alone selects; stored as v1:latest
    assert v1.reference == "v1:latest" and len(v1.layers) == 3
    assert v2.layers[1:] == v1.layers


def test_docker_archive_name_comes_from_repotags(store: ImageStore,
                                                 images: BuiltImages) -> None:
    img = store.import_image(images.docker_tar)
    assert img.reference == f"bbox:{TAG}"  # docker.io/library/ is dropped
    assert store.names() == ["host", f"bbox:{TAG}"]
    assert store.get("bbox:v1").id == img.id
    assert store.get(img.id[7:19]).id == img.id


def test_same_image_three_ways_is_one_image(store: ImageStore, images: BuiltImages) -> None:
    a = store.import_image(images.oci, name="a:v1")
    b = store.import_image(images.oci_tar, name="b:1")
    c = store.import_image(images.docker_tar, name="c:1")
    assert a.id == b.id == c.id
    assert a.layers == b.layers == c.layers
    assert len(store.layer_ids()) == 3


def test_gzipped_docker_archive(store: ImageStore, images: BuiltImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    gz = str(tmp_path / "img.tar.gz")
    with open(images.docker_tar, "rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)
    img = store.import_image(gz)
    assert img.reference == f"bbox:{TAG}" and len(img.layers) == 3
    assert os.listdir(store.tmp_dir) == []


def test_rootfs_tar_and_dir(store: ImageStore, images: BuiltImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    golden = os.path.join(images.golden, "rootfs")
    tgz = str(tmp_path / "rootfs.tar.gz")
    run("tar", "-C", golden, "-czf", tgz, ".")
    assert importer.detect_format(tgz) == "rootfs-tar"
    t = store.import_image(tgz)
    assert t.reference == "rootfs:latest" and len(t.layers) == 1
    assert t.cmd == [] and t.env[0].startswith("PATH=")
    assert merged_tree(t.layers, str(tmp_path / "m1")) == tree(golden)
    d = store.import_image(golden, name="fromdir")
    assert d.reference == "fromdir:latest"
    assert merged_tree(d.layers, str(tmp_path / "m2")) == tree(golden)


def zstd_compress(data: bytes) -> bytes:
    if shutil.which("zstd") is not None:
        return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True,
                              check=True).stdout
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip("neither the zstd program nor the zstandard package is installed")
    return zstandard.ZstdCompressor().compress(data)  # type: ignore[no-any-return]


def _zstd_layout(images: BuiltImages, tmp_path) -> str:  # type: ignore[no-untyped-def]
    layout = str(tmp_path / "oci")
    shutil.copytree(images.oci, layout)
    manifest, _ = oci_manifest(layout)
    with open(os.path.join(layout, "blobs", "sha256", manifest["layers"][2]["digest"][7:]),
              "rb") as f:
        plain = gzip.decompress(f.read())
    rewrite_layer(layout, 2, zstd_compress(plain), "application/vnd.oci.image.layer.v1.tar+zstd")
    return layout


def test_zstd_layers(store: ImageStore, images: BuiltImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "r.tar.zst")
    with open(path, "wb") as f:
        f.write(zstd_compress(tar_bytes([("hello", "file", b"zstd!\n")])))
    img = store.import_image(path, name="zst")
    with open(os.path.join(img.layers[0], "hello"), "rb") as f:
        assert f.read() == b"zstd!\n"
    assert store._record(img.id)["layers"][0]["compression"] == "zstd"
    img = store.import_image(_zstd_layout(images, tmp_path), name="bbox:v1")
    assert store._record(img.id)["layers"][2]["compression"] == "zstd"
    _check_image_tree(store, "bbox:v1", images, str(tmp_path / "mnt"))


def test_zstd_missing_is_a_clear_error(store: ImageStore, images: BuiltImages, tmp_path,
                                       monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import builtins

    from pycontain.image import tarlayer

    layout = _zstd_layout(images, tmp_path)
    real_import = builtins.__import__

    def no_zstandard(name, *a, **kw):  # type: ignore[no-untyped-def]
        if name == "zstandard":
            raise ImportError("no zstandard")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_zstandard)
    monkeypatch.setattr(tarlayer.shutil, "which", lambda name: None)
    path = str(tmp_path / "r.tar.zst")
    with open(path, "wb") as f:
        f.write(b"\x28\xb5\x2f\xfd" + b"\0" * 64)
    with pytest.raises(ImageError, match="'zstandard' is not installed"):
        store.import_image(path, name="zst")
    with pytest.raises(ImageError, match=r"layer sha256:.*'zstandard' is not installed"):
        store.import_image(layout, name="bbox:v1")
    assert store.names() == ["host"]
    assert os.listdir(store.tmp_dir) == [] and store.layer_ids() == []


def test_recompressed_layer_imports_and_is_verified(store: ImageStore, images: BuiltImages,
                                                    tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A layer stored with another compression has another digest but the same diff_id."""
    layout = str(tmp_path / "oci")
    shutil.copytree(images.oci, layout)
    manifest, _ = oci_manifest(layout)
    desc = manifest["layers"][1]
    blob = os.path.join(layout, "blobs", "sha256", desc["digest"][7:])
    with open(blob, "rb") as f:
        plain = gzip.decompress(f.read())
    rewrite_layer(layout, 1, plain, "application/vnd.oci.image.layer.v1.tar")
    img = store.import_image(layout, name="plain:v1")
    assert len(img.layers) == 3
    assert store._record(img.id)["layers"][1]["compression"] == "none"


def rewrite_layer(layout: str, index: int, blob: bytes, media_type: str) -> None:
    """Replace layer ``index`` of the TAG manifest with ``blob``, fixing the descriptors."""
    import hashlib

    manifest, mdigest = oci_manifest(layout)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest[7:]), "wb") as f:
        f.write(blob)
    manifest["layers"][index] = {"mediaType": media_type, "digest": digest, "size": len(blob)}
    mdata = json.dumps(manifest).encode()
    mnew = "sha256:" + hashlib.sha256(mdata).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", mnew[7:]), "wb") as f:
        f.write(mdata)
    with open(os.path.join(layout, "index.json")) as f:
        index_json = json.load(f)
    for d in index_json["manifests"]:
        if d["digest"] == mdigest:
            d["digest"], d["size"] = mnew, len(mdata)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index_json, f)


def test_parse_reference() -> None:
    assert parse_reference("busybox") == ("busybox", "latest")
    assert parse_reference("docker.io/library/busybox:1.36") == ("busybox", "1.36")
    assert parse_reference("localhost:5000/a/b") == ("localhost:5000/a/b", "latest")
    assert parse_reference("quay.io/x/y:z") == ("quay.io/x/y", "z")
    for bad in ("UPPER", "a@sha256:00", "host", "a:b:c", "a/../b", ""):
        with pytest.raises(ImageError):
            parse_reference(bad)


def test_read_file_and_resolve_user(store: ImageStore, images: BuiltImages) -> None:
    img = store.import_image(images.oci, name=f"bbox:{TAG}")
    assert img.read_file("/etc/new") == b"new\n"
    assert img.read_file("/etc/gone") is None  # whited out
    assert img.read_file("/data/opaque/old1") is None  # below an opaque dir
    assert img.read_file("/data/opaque/fresh") == b"fresh\n"
    assert img.read_file("/data/kept/z") == b"z\n"  # from the bottom layer
    assert img.read_file("/etc") is None and img.read_file("/../etc/passwd") is None
    assert img.resolve_user() == (0, 0, [])  # User "0:0"
    assert img.resolve_user("app") == (1000, 1000, [])
    assert img.resolve_user("nobody") == (65534, 65534, [])
    assert img.resolve_user("1234") == (1234, 0, [])
    assert img.resolve_user("app:5") == (1000, 5, [])
    with pytest.raises(ImageError, match="unable to find user ghost"):
        img.resolve_user("ghost")
    with pytest.raises(ImageError, match="unable to find group staff"):
        img.resolve_user("app:staff")
