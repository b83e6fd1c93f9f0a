"""ls / rm / inspect, shared layers, export (read back by umoci and skopeo), commit, the CLI
verbs, and running an imported image."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
from conftest import (
    ROOT_DIR,
    TAG,
    BuiltImages,
    Overlay,
    merged_tree,
    run,
    snapshot,
    tar_bytes,
    tree,
)
from test_image_safety import write_layout

from pycontain.image.errors import ImageError, ImageInUseError
from pycontain.image.model import Image
from pycontain.image.store import ImageStore


def fake_container(store: ImageStore, name: str, img: Image, **extra: object) -> str:
    """A container state file, as the runtime writes it, using ``img``."""
    d = os.path.join(store.root, name)
    os.makedirs(d)
    state = {"id": name + "0" * 8, "name": name, "status": "stopped", "image": img.name,
             "lowers": img.layers, **extra}
    with open(os.path.join(d, "state.json"), "w") as f:
        json.dump(state, f)
    return d


# ---------------------------------------------------------------------------------------------
# Management


def test_shared_layers_are_stored_once_and_kept(store: ImageStore, images: BuiltImages) -> None:
    v1 = store.import_image(images.oci, name=f"bbox:{TAG}")
    v2 = store.import_image(images.oci, name="bbox:v2")
    assert v2.layers[1:] == v1.layers
    assert len(store.layer_ids()) == 4
    assert store.remove(f"bbox:{TAG}") == [f"Untagged: bbox:{TAG}", f"Deleted: {v1.id}"]
    assert len(store.layer_ids()) == 4  # all used by v2
    assert all(os.path.isdir(p) for p in store.get("bbox:v2").layers)
    lines = store.remove("bbox:v2")
    assert lines[:2] == ["Untagged: bbox:v2", f"Deleted: {v2.id}"]
    assert len(lines) == 2 + 4
    assert store.layer_ids() == [] and store.names() == ["host"]
    assert os.listdir(store.tmp_dir) == []


def test_ls_names_and_tags(store: ImageStore, images: BuiltImages) -> None:
    img = store.import_image(images.docker_tar)
    store.tag(f"bbox:{TAG}", "other/name:latest")
    assert store.names() == ["host", f"bbox:{TAG}", "other/name:latest"]
    listed = store.list()
    assert [i.reference for i in listed] == ["host", f"bbox:{TAG}", "other/name:latest"]
    assert listed[0].builtin and listed[0].layers == ["/"]
    assert {i.id for i in listed[1:]} == {img.id}
    assert store.get("other/name").id == img.id
    # Removing one of two names only untags.
    assert store.remove("other/name") == ["Untagged: other/name:latest"]
    assert store.get(f"bbox:{TAG}").id == img.id
    with pytest.raises(ImageError, match="unknown image 'nope'"):
        store.get("nope")
    with pytest.raises(ImageError, match="cannot be removed"):
        store.remove("host")


def test_rm_refuses_while_a_container_uses_it(store: ImageStore, images: BuiltImages) -> None:
    img = store.import_image(images.oci, name=f"bbox:{TAG}")
    fake_container(store, "web", img)
    assert store.in_use(img) == ["web"]
    before = snapshot(store.storage)
    with pytest.raises(ImageInUseError, match="in use by container web"):
        store.remove(f"bbox:{TAG}")
    with pytest.raises(ImageInUseError):
        store.remove(img.id[7:19])
    assert snapshot(store.storage) == before
    # Forced: the image goes, its layers stay while the container exists.
    lines = store.remove(f"bbox:{TAG}", force=True)
    assert lines == [f"Untagged: bbox:{TAG}", f"Deleted: {img.id}"]
    assert store.names() == ["host"]
    assert len(store.layer_ids()) == 3
    shutil.rmtree(os.path.join(store.root, "web"))
    assert len(store.gc()) == 3
    assert store.layer_ids() == []


def test_in_use_hook(store: ImageStore, images: BuiltImages) -> None:
    s = ImageStore(store.storage, root=store.root, in_use=lambda img: ["hooked"])
    s.import_image(images.oci, name=f"bbox:{TAG}")
    with pytest.raises(ImageInUseError, match="hooked"):
        s.remove(f"bbox:{TAG}")


def test_reimport_under_same_name_replaces(store: ImageStore, images: BuiltImages) -> None:
    v1 = store.import_image(images.oci, name=f"bbox:{TAG}")
    v2 = store.import_image(images.oci, name="v2")
    store.tag("v2", f"bbox:{TAG}")  # the name moves to v2; v1 has no name left
    assert store.get(f"bbox:{TAG}").id == v2.id
    assert [i.reference for i in store.list()] == ["host", f"bbox:{TAG}", "v2:latest"]
    assert v1.id not in [i.id for i in store.list()]
    # Importing over an existing name drops the unnamed old image.
    store.remove("v2")
    v1b = store.import_image(images.oci, name=f"bbox:{TAG}")
    assert v1b.id == v1.id
    assert [i.reference for i in store.list()] == ["host", f"bbox:{TAG}"]


def test_inspect(store: ImageStore, images: BuiltImages) -> None:
    img = store.import_image(images.oci, name=f"bbox:{TAG}")
    d = store.inspect(f"bbox:{TAG}")
    assert d["Id"] == img.id and d["RepoTags"] == [f"bbox:{TAG}"]
    assert d["Config"]["Entrypoint"] == ["/bin/busybox"]
    assert d["RootFS"]["Layers"] == img.diff_ids and len(img.diff_ids) == 3
    assert d["GraphDriver"]["Data"]["LowerDir"] == ":".join(img.layers)
    assert d["Os"] == "linux" and d["Size"] == img.size
    assert d["Source"]["format"] == "oci"
    assert store.inspect("host")["Builtin"] is True


# ---------------------------------------------------------------------------------------------
# Export


def test_export_roundtrip_with_umoci(store: ImageStore, images: BuiltImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    img = store.import_image(images.oci, name=f"bbox:{TAG}")
    out = str(tmp_path / "exported")
    store.export(f"bbox:{TAG}", out)
    bundle = str(tmp_path / "bundle")
    run("umoci", "unpack", "--image", f"{out}:{TAG}", bundle)
    want = merged_tree(img.layers, str(tmp_path / "m"))
    got = tree(os.path.join(bundle, "rootfs"))
    assert got == want
    assert got == tree(os.path.join(images.golden, "rootfs"))
    with open(os.path.join(bundle, "config.json")) as f:
        rt = json.load(f)
    assert rt["process"]["args"] == ["/bin/busybox", "sh"]
    assert "GREETING=hello" in rt["process"]["env"]
    assert rt["process"]["cwd"] == "/data"
    # Re-import: same files, same name.
    back = store.import_image(out)
    assert back.reference == f"bbox:{TAG}"
    assert merged_tree(back.layers, str(tmp_path / "m2")) == want
    assert back.cmd == img.cmd and back.entrypoint == img.entrypoint


def test_export_tar_reads_back_with_skopeo(store: ImageStore, images: BuiltImages,
                                           tmp_path) -> None:  # type: ignore[no-untyped-def]
    store.import_image(images.docker_tar)
    out = str(tmp_path / "exported.tar")
    store.export(f"bbox:{TAG}", out)
    layout = str(tmp_path / "copy")
    run("skopeo", "copy", "--quiet", f"oci-archive:{out}:{TAG}", f"oci:{layout}:{TAG}")
    info = json.loads(run("skopeo", "inspect", f"oci:{layout}:{TAG}"))
    assert len(info["Layers"]) == 3
    bundle = str(tmp_path / "bundle")
    run("umoci", "unpack", "--image", f"{layout}:{TAG}", bundle)
    assert tree(os.path.join(bundle, "rootfs")) == tree(os.path.join(images.golden, "rootfs"))
    assert [n for n in os.listdir(tmp_path) if "partial" in n] == []


def test_export_refuses_existing_path(store: ImageStore, images: BuiltImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store.import_image(images.oci, name=f"bbox:{TAG}")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ImageError, match="already exists"):
        store.export(f"bbox:{TAG}", str(tmp_path / "full"))
    with pytest.raises(ImageError, match="host"):
        store.export("host", str(tmp_path / "h"))


# ---------------------------------------------------------------------------------------------
# Commit


def test_commit_writes_whiteouts_back(store: ImageStore, images: BuiltImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    img = store.import_image(images.oci, name=f"bbox:{TAG}")
    cdir = str(tmp_path / "container")
    upper, work, merged = (os.path.join(cdir, n) for n in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        os.makedirs(d)
    fake_container(store, "c1", img, container_dir=cdir)
    run("mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir={':'.join(img.layers)},upperdir={upper},workdir={work}", merged)
    try:
        os.unlink(os.path.join(merged, "etc", "passwd"))  # -> whiteout char 0/0
        shutil.rmtree(os.path.join(merged, "data", "kept"))
        os.mkdir(os.path.join(merged, "data", "kept"))  # -> opaque dir
        with open(os.path.join(merged, "data", "kept", "n"), "w") as f:
            f.write("n\n")
        with open(os.path.join(merged, "added"), "w") as f:
            f.write("added\n")
        os.symlink("/bin/busybox", os.path.join(merged, "bin", "extra"))
        os.makedirs(os.path.join(merged, ".pyalloc"))  # runtime's mount point: not committed
        expected = tree(merged)
    finally:
        run("umount", merged)
    del expected[".pyalloc"]
    st = os.lstat(os.path.join(upper, "etc", "passwd"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    new = store.commit("c1", "bbox:committed", changes={"Cmd": ["ls"]}, comment="test")
    assert new.layers[1:] == img.layers and len(new.layers) == 4
    assert new.cmd == ["ls"] and new.entrypoint == ["/bin/busybox"]
    assert new.config["history"][-1]["created_by"] == "pycontain commit c1"
    top = new.layers[0]
    st = os.lstat(os.path.join(top, "etc", "passwd"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(os.path.join(top, "data", "kept"), "trusted.overlay.opaque") == b"y"
    assert merged_tree(new.layers, str(tmp_path / "m")) == expected
    # The OCI form: export, let umoci apply the whiteouts.
    out = str(tmp_path / "exported")
    store.export("bbox:committed", out)
    bundle = str(tmp_path / "bundle")
    run("umoci", "unpack", "--image", f"{out}:committed", bundle)
    assert tree(os.path.join(bundle, "rootfs")) == expected
    # The committed image holds the container's layers: removing it is refused while c1 is
    # around only for the image c1 uses.
    with pytest.raises(ImageInUseError):
        store.remove(f"bbox:{TAG}")
    store.remove("bbox:committed")


def test_commit_errors(store: ImageStore, images: BuiltImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    img = store.import_image(images.oci, name=f"bbox:{TAG}")
    with pytest.raises(ImageError, match="no such container"):
        store.commit("ghost", "x")
    fake_container(store, "tmpfs", img, container_dir=str(tmp_path), tmpfs_upper=True)
    with pytest.raises(ImageError, match="tmpfs"):
        store.commit("tmpfs", "x")
    host = store.host()
    fake_container(store, "hostc", host, container_dir=str(tmp_path))
    os.makedirs(tmp_path / "upper", exist_ok=True)
    with pytest.raises(ImageError, match="host"):
        store.commit("hostc", "x")
    fake_container(store, "rootfs", img, lowers=None)
    with pytest.raises(ImageError, match="rootfs"):
        store.commit("rootfs", "x")


# ---------------------------------------------------------------------------------------------
# CLI verbs


def cli(store: ImageStore, *args: str, check: int = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYCONTAIN_STORAGE=store.storage, PYCONTAIN_ROOT=store.root,
               PYTHONPATH=ROOT_DIR)
    p = subprocess.run([sys.executable, "-m", "pycontain", *args], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == check, (args, p.stdout, p.stderr)
    return p


def test_cli_verbs(store: ImageStore, images: BuiltImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = cli(store, "image", "import", images.docker_tar)
    assert p.stdout == f"Loaded image: bbox:{TAG}\n"
    assert p.stderr == ""  # progress only on a terminal
    p = cli(store, "image", "import", images.oci, "--name", "bbox:v2")
    lines = cli(store, "image", "ls").stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[1].split()[:2] == ["host", "<builtin>"]
    row = lines[2].split()
    assert row[:2] == ["bbox", TAG] and len(row[2]) == 12 and row[-1].endswith("MB")
    assert len(lines) == 4
    assert len(cli(store, "image", "ls", "-q").stdout.split()) == 2
    info = json.loads(cli(store, "image", "inspect", f"bbox:{TAG}").stdout)
    assert info[0]["RepoTags"] == [f"bbox:{TAG}"]
    out = str(tmp_path / "exp")
    cli(store, "image", "export", "bbox:v2", out)
    assert os.path.isfile(os.path.join(out, "index.json"))
    p = cli(store, "image", "rm", "nope", check=125)
    assert p.stderr.startswith("pycontain: error: unknown image 'nope'")
    assert p.stderr.count("\n") == 1
    p = cli(store, "image", "import", str(tmp_path / "missing.tar"), check=125)
    assert "no such file" in p.stderr
    p = cli(store, "image", "rm", f"bbox:{TAG}", "bbox:v2")
    assert p.stdout.startswith(f"Untagged: bbox:{TAG}\n")
    assert cli(store, "image", "ls", "-q").stdout == ""
    assert store.layer_ids() == []


def test_cli_commit(store: ImageStore, images: BuiltImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    img = store.import_image(images.oci, name=f"bbox:{TAG}")
    cdir = str(tmp_path / "c")
    os.makedirs(os.path.join(cdir, "upper", "etc"))
    with open(os.path.join(cdir, "upper", "etc", "motd"), "w") as f:
        f.write("hi\n")
    fake_container(store, "c2", img, container_dir=cdir)
    p = cli(store, "commit", "-c", 'Cmd=["cat","/etc/motd"]', "-c", "Env=A=1", "c2",
            "built:1")
    new = store.get("built:1")
    assert p.stdout.strip() == new.id
    assert new.cmd == ["cat", "/etc/motd"] and new.env == ["A=1"]
    with open(os.path.join(new.layers[0], "etc", "motd")) as f:
        assert f.read() == "hi\n"
    cli(store, "commit", "-c", "Bogus=1", "c2", "built:2", check=125)


# ---------------------------------------------------------------------------------------------
# Running (the runtime's API on this store)


def test_run_an_imported_image(store: ImageStore, images: BuiltImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pycontain

    root = store.root
    img = store.import_image(images.oci, name=f"bbox:{TAG}")
    try:
        r = pycontain.run(["/bin/busybox", "sh", "-c",
                           "ls /etc; echo --; ls /data/opaque; echo --; pwd; "
                           "echo $GREETING; cat /etc/hard2; touch /data/w"],
                          image=f"bbox:{TAG}", root=root, storage=store.storage,
                          capture_output=True, timeout=60)
    except Exception as e:
        if type(e).__name__ == "ContainerError" and "cgroup" in str(e).lower():
            pytest.skip(f"the runtime cannot create containers here: {e}")
        raise
    assert r.exit_code == 0, r.stderr
    etc, opaque, rest = r.stdout.decode().split("--\n")
    assert "gone" not in etc.split() and "new" in etc.split() and "passwd" in etc.split()
    assert opaque.split() == ["fresh"]
    assert rest.split() == ["/data", "hello", "hardlinked"]
    # The layers were not written to.
    assert not os.path.exists(os.path.join(img.layers[0], "data", "w"))
    assert os.listdir(root) == [] if os.path.isdir(root) else True
    with open("/proc/self/mountinfo") as f:
        assert store.storage not in f.read()


def test_overlay_helper_cleans_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = tmp_path / "a"
    a.mkdir()
    (a / "f").write_text("x")
    with Overlay([str(a)], str(tmp_path / "ov")) as m:
        assert os.listdir(m) == ["f"]
    assert not os.path.exists(tmp_path / "ov")


def test_an_image_of_many_layers_runs(store: ImageStore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """150 layers: more than one page of mount options (mount(2)'s limit), stacked through
    the new mount API instead."""
    import io
    import tarfile

    import pycontain
    from tests.busybox import make_busybox_root

    root = str(tmp_path / "bb")
    make_busybox_root(root, ("bin", "tmp", "data"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(root, arcname=".")
    layers = [buf.getvalue()] + [tar_bytes([("data/", "dir", b""),
                                            (f"data/f{i}", "file", b"%d\n" % i)])
                                 for i in range(1, 150)]
    layout = str(tmp_path / "tall")
    write_layout(layout, layers)
    img = store.import_image(layout, name="tall:1")
    assert len(img.layers) == 150
    r = pycontain.run(["/bin/sh", "-c", "ls /data | wc -l; cat /data/f1 /data/f149"],
                      image="tall:1", root=store.root, storage=store.storage,
                      capture_output=True, timeout=60)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.decode().split() == ["149", "1", "149"]
