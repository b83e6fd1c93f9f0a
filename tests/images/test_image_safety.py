"""Bad input fails cleanly: corrupt blobs, truncated tars, malicious tars. Nothing is left."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from typing import Optional

import pytest
from conftest import ROOT_DIR, TAG, BuiltImages, oci_manifest, snapshot, tar_bytes
from test_image_import import rewrite_layer

from pycontain.image import tarlayer
from pycontain.image.errors import ImageError
from pycontain.image.store import ImageStore


@pytest.fixture
def used_store(store: ImageStore, tmp_path) -> ImageStore:  # type: ignore[no-untyped-def]
    """A store that already holds an (unrelated) image, so that its layout exists and
    'nothing new' is a meaningful check."""
    p = str(tmp_path / "small.tar")
    with open(p, "wb") as f:
        f.write(tar_bytes([("hello", "file", b"hi\n")]))
    store.import_image(p, name="small")
    return store


def fails_cleanly(store: ImageStore, path: str, match: str, name: str = "bad") -> str:
    before = snapshot(store.storage)
    names = store.names()
    with pytest.raises(ImageError, match=match) as ei:
        store.import_image(path, name=name)
    assert snapshot(store.storage) == before
    assert store.names() == names
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------------------------
# Corrupt and truncated images


def _copy(images: BuiltImages, tmp_path) -> str:  # type: ignore[no-untyped-def]
    layout = str(tmp_path / "oci")
    shutil.copytree(images.oci, layout)
    return layout


def test_corrupt_layer_blob_is_named(used_store: ImageStore, images: BuiltImages,
                                     tmp_path) -> None:  # type: ignore[no-untyped-def]
    layout = _copy(images, tmp_path)
    manifest, _ = oci_manifest(layout)
    digest = manifest["layers"][0]["digest"]  # the big busybox layer
    blob = os.path.join(layout, "blobs", "sha256", digest[7:])
    with open(blob, "r+b") as f:
        f.seek(os.path.getsize(blob) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    msg = fails_cleanly(used_store, layout, "layer", name=f"x:{TAG}")
    assert digest in msg
    assert len(used_store.layer_ids()) == 1


def test_corrupt_layer_blob_in_used_store(used_store: ImageStore, images: BuiltImages,
                                          tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A layer blob that is already stored is still verified."""
    used_store.import_image(images.oci, name=f"base:{TAG}")
    layout = _copy(images, tmp_path)
    manifest, _ = oci_manifest(layout)
    digest = manifest["layers"][1]["digest"]
    with open(os.path.join(layout, "blobs", "sha256", digest[7:]), "ab") as f:
        f.write(b"trailing junk")
    msg = fails_cleanly(used_store, layout, "corrupt|size", name=f"x:{TAG}")
    assert digest in msg


def test_corrupt_config_and_manifest(used_store: ImageStore, images: BuiltImages,
                                     tmp_path) -> None:  # type: ignore[no-untyped-def]
    layout = _copy(images, tmp_path)
    manifest, mdigest = oci_manifest(layout)
    cdigest = manifest["config"]["digest"]
    cpath = os.path.join(layout, "blobs", "sha256", cdigest[7:])
    with open(cpath, "rb") as f:
        original = f.read()
    with open(cpath, "wb") as f:
        f.write(original.replace(b"GREETING=hello", b"GREETING=HELLO"))
    msg = fails_cleanly(used_store, layout, "config blob", name=f"x:{TAG}")
    assert cdigest in msg
    with open(cpath, "wb") as f:
        f.write(original)
    mpath = os.path.join(layout, "blobs", "sha256", mdigest[7:])
    with open(mpath, "ab") as f:
        f.write(b" ")
    assert mdigest in fails_cleanly(used_store, layout, "manifest blob", name=f"x:{TAG}")
    os.unlink(mpath)
    assert "missing" in fails_cleanly(used_store, layout, "missing", name=f"x:{TAG}")


def test_diff_id_mismatch(used_store: ImageStore, images: BuiltImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A valid layer blob whose content is not what the config's diff_ids say: caught when the
    layer is unpacked, and when the store already has the layer of that diff_id."""
    layout = _copy(images, tmp_path)
    other = gzip.compress(tar_bytes([("etc/", "dir", b""), ("etc/evil", "file", b"x")]))
    rewrite_layer(layout, 1, other, "application/vnd.oci.image.layer.v1.tar+gzip")
    digest = "sha256:" + hashlib.sha256(other).hexdigest()
    assert digest in fails_cleanly(used_store, layout, "diff_id", name=f"x:{TAG}")
    used_store.import_image(images.oci, name=f"base:{TAG}")
    assert digest in fails_cleanly(used_store, layout, "diff_id", name=f"x:{TAG}")


def test_truncated_archives(used_store: ImageStore, images: BuiltImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    size = os.path.getsize(images.docker_tar)
    for frac in (0.3, 0.6, 0.95):
        cut = str(tmp_path / f"cut-{frac}.tar")
        with open(images.docker_tar, "rb") as src, open(cut, "wb") as dst:
            dst.write(src.read(int(size * frac)))
        fails_cleanly(used_store, cut, ".")
    size = os.path.getsize(images.oci_tar)
    cut = str(tmp_path / "cut-oci.tar")
    with open(images.oci_tar, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(size // 2))
    fails_cleanly(used_store, cut, ".")


def test_truncated_rootfs_tars(used_store: ImageStore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tar_bytes([("a", "file", b"A" * 5000), ("b", "file", b"B" * 5000)])
    # Cut inside file data, exactly at a header boundary (tarfile alone would accept that),
    # and a truncated gzip stream.
    for i, blob in enumerate((data[:3000], data[:512 * 12], gzip.compress(data)[:-20])):
        p = str(tmp_path / f"t{i}.tar")
        with open(p, "wb") as f:
            f.write(blob)
        fails_cleanly(used_store, p, "truncated|corrupt|tar")


# ---------------------------------------------------------------------------------------------
# Malicious tars


MALICIOUS = {
    "dotdot": [("../escaped", "file", b"x")],
    "dotdot-inside": [("a/../../escaped", "file", b"x")],
    "absolute": [("/tmp/escaped-abs", "file", b"x")],
    "symlink-dir-escape": [("link", "symlink", b"{out}"), ("link/escaped", "file", b"x")],
    "symlink-relative-escape": [("link", "symlink", b"../../../../../../../../{out}"),
                                ("link/escaped", "file", b"x")],
    "hardlink-escape": [("h", "hardlink", b"../../../../../../../{out}/target")],
    "hardlink-absolute": [("h", "hardlink", b"{out}/target")],
    "hardlink-through-symlink": [("s", "symlink", b"{out}"), ("h", "hardlink", b"s/target")],
    "hardlink-missing": [("h", "hardlink", b"nothing-here")],
    "whiteout-through-symlink": [("s", "symlink", b"{out}"), ("s/.wh.target", "file", b"")],
    "opaque-through-symlink": [("s", "symlink", b"{out}"), ("s/.wh..wh..opq", "file", b"")],
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_tar_is_refused(used_store: ImageStore, tmp_path, case: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "outside"
    out.mkdir()
    (out / "target").write_text("precious\n")
    entries = [(n.replace("{out}", str(out)), k, d.replace(b"{out}", str(out).encode()))
               for n, k, d in MALICIOUS[case]]
    p = str(tmp_path / "evil.tar")
    with open(p, "wb") as f:
        f.write(tar_bytes(entries))
    fails_cleanly(used_store, p, "refusing|not in the layer|does not exist")
    assert sorted(os.listdir(out)) == ["target"]
    assert (out / "target").read_text() == "precious\n"
    assert os.stat(out / "target").st_nlink == 1
    assert not os.path.exists("/tmp/escaped-abs")


def test_malicious_layer_inside_an_oci_image(used_store: ImageStore, images: BuiltImages,
                                             tmp_path) -> None:  # type: ignore[no-untyped-def]
    layout = _copy(images, tmp_path)
    evil = gzip.compress(tar_bytes([("../../escaped", "file", b"x")]))
    rewrite_layer(layout, 2, evil, "application/vnd.oci.image.layer.v1.tar+gzip")
    fails_cleanly(used_store, layout, "refusing", name=f"x:{TAG}")


def test_symlink_entries_are_replaced_not_followed(store: ImageStore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file written over a symlink replaces the link; links may point anywhere."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "target").write_text("precious\n")
    p = str(tmp_path / "ok.tar")
    with open(p, "wb") as f:
        f.write(tar_bytes([("x", "symlink", str(out / "target").encode()),
                           ("x", "file", b"replaced\n"),
                           ("abs", "symlink", b"/etc/passwd"),
                           ("d", "symlink", str(out).encode()), ("d/", "dir", b""),
                           ("d/inside", "file", b"x"),
                           ("rel", "symlink", b"../../../etc/shadow")]))
    img = store.import_image(p, name="links")
    layer = img.layers[0]
    assert (out / "target").read_text() == "precious\n"
    assert not os.path.islink(os.path.join(layer, "x"))
    with open(os.path.join(layer, "x")) as f:
        assert f.read() == "replaced\n"
    assert os.readlink(os.path.join(layer, "abs")) == "/etc/passwd"
    assert os.readlink(os.path.join(layer, "rel")) == "../../../etc/shadow"
    assert os.path.isdir(os.path.join(layer, "d")) and not os.path.islink(os.path.join(layer, "d"))
    assert os.path.isfile(os.path.join(layer, "d", "inside"))
    assert sorted(os.listdir(out)) == ["target"]


def test_device_nodes_only_as_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tar_bytes([("null", "chr", b""), ("f", "file", b"ok")])
    for is_root in (False, True):
        if is_root and os.geteuid() != 0:
            continue
        dest = tmp_path / f"d{is_root}"
        dest.mkdir()
        res = tarlayer.extract(io.BytesIO(data), str(dest), is_root=is_root)
        assert os.path.exists(dest / "null") == is_root
        assert bool(res.warnings) == (not is_root)
        assert (dest / "f").read_bytes() == b"ok"


def test_overlay_xattrs_in_a_tar_are_dropped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("d")
        ti.type = tarfile.DIRTYPE
        ti.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc",
                          "SCHILY.xattr.user.kept": "yes"}
        tf.addfile(ti)
    dest = tmp_path / "d"
    dest.mkdir()
    tarlayer.extract(io.BytesIO(buf.getvalue()), str(dest))
    names = os.listxattr(dest / "d")
    assert "trusted.overlay.redirect" not in names
    assert os.getxattr(dest / "d", "user.kept") == b"yes"


# ---------------------------------------------------------------------------------------------
# Crashes


def test_crash_mid_import_leaves_nothing_visible(store: ImageStore, images: BuiltImages) -> None:
    """A process killed between staging and publishing: the next writer cleans up."""
    code = f"""
import os, sys
sys.path.insert(0, {ROOT_DIR!r})
from pycontain.image import store
from pycontain.image.store import ImageStore
real = os.rename
def crash(src, dst):
    if "/layers/sha256/" in dst:
        os._exit(9)
    return real(src, dst)
store.os.rename = crash
ImageStore({store.storage!r}, root={store.root!r}).import_image({images.oci!r}, name="x:{TAG}")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert p.returncode == 9, p.stderr
    assert store.names() == ["host"]
    assert store.layer_ids() == []
    assert os.listdir(store.tmp_dir)  # the dead import's staging dir
    store.gc()
    assert os.listdir(store.tmp_dir) == []
    img = store.import_image(images.oci, name=f"x:{TAG}")
    assert len(img.layers) == 3


def test_concurrent_imports_share_layers(store: ImageStore, images: BuiltImages) -> None:
    import threading

    errors = []

    def imp(path: str, name: str) -> None:
        try:
            ImageStore(store.storage, root=store.root).import_image(path, name=name)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=imp, args=a) for a in
               ((images.oci_tar, "a:v1"), (images.docker_tar, "b:v1"), (images.oci, "v2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.names() == ["host", "a:v1", "b:v1", "v2:latest"]
    assert len(store.layer_ids()) == 4
    assert os.listdir(store.tmp_dir) == []
    for n in ("a:v1", "b:v1", "v2"):
        assert all(os.path.isdir(p) for p in store.get(n).layers)


def test_refs_file_is_valid_json_after_many_writers(store: ImageStore,
                                                    images: BuiltImages) -> None:
    img = store.import_image(images.oci, name=f"a:{TAG}")
    for i in range(20):
        store.tag(img.id, f"t:{i}")
    with open(store.refs_path) as f:
        assert len(json.load(f)) == 21


# ---------------------------------------------------------------------------------------------
# Hostile structure: absurd nesting, too many layers, blobs checked before they are parsed


def write_layout(path: str, layers: list, config_extra: Optional[dict] = None) -> None:
    """An OCI image layout (tagged ``TAG``) from plain layer tars, bottom first."""
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    descs = [dict(put(t), mediaType="application/vnd.oci.image.layer.v1.tar") for t in layers]
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
              **(config_extra or {})}
    cdesc = dict(put(json.dumps(config).encode()),
                 mediaType="application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cdesc, "layers": descs}
    mdesc = dict(put(json.dumps(manifest).encode()),
                 mediaType="application/vnd.oci.image.manifest.v1+json",
                 annotations={"org.opencontainers.image.ref.name": TAG})
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [mdesc]}, f)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')


def test_deeply_nested_json_is_one_clear_error(used_store: ImageStore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    layout = str(tmp_path / "deep")
    write_layout(layout, [tar_bytes([("f", "file", b"x")])])
    with open(os.path.join(layout, "index.json"), "w") as f:
        f.write("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in fails_cleanly(used_store, layout, "index.json")
    with open(os.path.join(layout, "index.json"), "w") as f:
        f.write('{"manifests": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001)
    assert "nested too deeply" in fails_cleanly(used_store, layout, "index.json")


def test_more_layers_than_overlayfs_stacks_is_refused_at_import(used_store: ImageStore,
                                                               tmp_path) -> None:  # type: ignore[no-untyped-def]
    layout = str(tmp_path / "tall")
    write_layout(layout, [tar_bytes([(f"f{i}", "file", b"%d" % i)]) for i in range(501)])
    assert "at most 500" in fails_cleanly(used_store, layout, "501 layers")


def test_a_blob_is_verified_before_the_tar_parser_sees_it(used_store: ImageStore,
                                                         images: BuiltImages, tmp_path,
                                                         monkeypatch) -> None:  # type: ignore[no-untyped-def]
    layout = _copy(images, tmp_path)
    manifest, _ = oci_manifest(layout)
    digest = manifest["layers"][0]["digest"]
    blob = os.path.join(layout, "blobs", "sha256", digest[7:])
    with open(blob, "r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    parsed = []
    real = tarlayer.extract
    monkeypatch.setattr(tarlayer, "extract", lambda *a, **kw: parsed.append(1) or real(*a, **kw))
    assert digest in fails_cleanly(used_store, layout, "corrupt", name=f"x:{TAG}")
    assert parsed == []
