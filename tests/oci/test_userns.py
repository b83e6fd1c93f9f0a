"""User namespaces in pycontain-oci: linux.uidMappings/gidMappings, a user namespace new or
joined by path, exec into it, what root inside may reach, and the configs that are refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Any, Dict, Iterator, List

import pytest

from tests.oci.conftest import Bundle, Oci

HOST_BASE = 100000
SIZE = 65536
MAP = [{"containerID": 0, "hostID": HOST_BASE, "size": SIZE}]


def _chown_tree(path: str, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)
    for d, dirs, files in os.walk(path):
        for n in dirs + files:
            os.lchown(os.path.join(d, n), uid, gid)


def _userns(c: Dict[str, Any], uid_map: List[Dict[str, int]] = MAP,
            gid_map: List[Dict[str, int]] = MAP) -> None:
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = uid_map
    c["linux"]["gidMappings"] = gid_map


@pytest.fixture
def open_bundle(oci: Oci, rootfs_template: str) -> Iterator[Bundle]:
    """A bundle whose rootfs belongs to the mapped root (as podman prepares it), in a
    directory the mapped root can reach (pytest's are mode 0700; runc needs the same)."""
    base = tempfile.mkdtemp(prefix="pycontain-userns-")
    os.chmod(base, 0o755)
    b = Bundle(os.path.join(base, "bundle"), rootfs_template, oci)
    _chown_tree(b.rootfs, HOST_BASE, HOST_BASE)
    yield b
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mapped(open_bundle: Bundle) -> Bundle:
    open_bundle.edit(_userns)
    return open_bundle


def test_maps_root_inside_and_ids_outside(oci: Oci, mapped: Bundle) -> None:
    code, out, err = oci.complete(
        mapped, "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; "
        "echo pid $$; touch /tmp/made; grep -E '^CapEff' /proc/self/status")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["0", str(HOST_BASE), str(SIZE)]
    assert lines[1].split() == ["0", str(HOST_BASE), str(SIZE)]
    assert lines[2:5] == ["0", "0", "pid 1"]
    assert lines[5].split()[1] != "0000000000000000"  # root of its namespace has capabilities
    st = os.stat(os.path.join(mapped.rootfs, "tmp", "made"))
    assert (st.st_uid, st.st_gid) == (HOST_BASE, HOST_BASE)  # created by root inside


def test_process_user_maps_to_host_range(oci: Oci, mapped: Bundle) -> None:
    mapped.set_args("sleep", "30")
    mapped.edit(lambda c: c["process"].update(user={"uid": 1000, "gid": 1000}))
    cid = oci.new_id()
    oci.create(mapped, cid)
    try:
        pid = oci.state(cid)["pid"]
        oci.run("start", cid, check=0)
        oci.wait_status(cid, "running")
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f)
        assert status["Uid"].split() == [str(HOST_BASE + 1000)] * 4
        assert status["Gid"].split() == [str(HOST_BASE + 1000)] * 4
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
        # exec joins the user namespace and takes the container's user, never the host's
        r = oci.run("exec", cid, "sh", "-c", "id -u; cat /proc/self/uid_map", check=0)
        out = r.stdout.decode().splitlines()
        assert out[0] == "1000" and out[1].split() == ["0", str(HOST_BASE), str(SIZE)]
        r = oci.run("exec", "--user", "0:0", cid, "sh", "-c",
                    "id -u; grep ^Uid /proc/self/status", check=0)
        assert r.stdout.decode().split()[:3] == ["0", "Uid:", "0"]
    finally:
        oci.run("delete", "--force", cid, check=0)


def test_root_inside_cannot_write_host_root_files(oci: Oci, mapped: Bundle,
                                                  tmp_path: Any) -> None:
    """Root of the user namespace is not the host's root: a host file owned by root, bound
    in, is unmapped (nobody) inside and cannot be written, nor chowned."""
    secret = tmp_path / "host-owned"
    secret.mkdir()
    (secret / "f").write_text("host\n")
    os.chmod(secret / "f", 0o644)

    def mount(c: Dict[str, Any]) -> None:
        c["mounts"].append({"destination": "/host", "type": "bind", "source": str(secret),
                            "options": ["rbind", "rw"]})

    code, out, err = oci.complete(
        mapped, "sh", "-c", "ls -ln /host/f | tr -s ' ' | cut -d' ' -f3; "
        "echo x >> /host/f && echo WROTE; chown 0 /host/f && echo CHOWNED; "
        "touch /host/new && echo CREATED; true", edit=mount)
    assert code == 0, err
    assert out.split() == ["65534"], out
    assert (secret / "f").read_text() == "host\n"
    assert not (secret / "new").exists()


def test_created_process_out_of_reach_in_userns(oci: Oci, mapped: Bundle) -> None:
    """Between create and start PID 1 is the runtime's interpreter: root of the container's
    user namespace may not read its exe, fds, environment or memory."""
    mapped.set_args("sleep", "100")
    cid = oci.new_id()
    oci.create(mapped, cid)
    try:
        r = oci.run("exec", cid, "sh", "-c", "readlink /proc/1/exe; readlink /proc/1/fd/0; "
                    "cat /proc/1/environ; head -c1 /proc/1/mem; echo done")
        assert r.stdout.decode().split() == ["done"], r.stdout
    finally:
        oci.run("delete", "--force", cid, check=0)


@pytest.fixture
def holder() -> Iterator[int]:
    """A process in a user namespace of its own (map 0 -> 100000, 65536 ids)."""
    r, w = os.pipe()
    p = subprocess.Popen(["unshare", "--user", "sh", "-c", "echo ready; exec sleep 60"],
                         stdout=w, stdin=subprocess.DEVNULL)
    os.close(w)
    assert os.read(r, 16) == b"ready\n"
    os.close(r)
    for name in ("gid_map", "uid_map"):
        with open(f"/proc/{p.pid}/{name}", "w") as f:
            f.write(f"0 {HOST_BASE} {SIZE}\n")
    yield p.pid
    p.kill()
    p.wait()


def test_join_user_namespace_by_path(oci: Oci, open_bundle: Bundle, holder: int) -> None:
    bundle = open_bundle
    path = f"/proc/{holder}/ns/user"
    bundle.edit(lambda c: c["linux"]["namespaces"].append({"type": "user", "path": path}))
    bundle.set_args("sleep", "30")
    cid = oci.new_id()
    oci.create(bundle, cid)
    try:
        pid = oci.state(cid)["pid"]
        assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink(path)
        oci.run("start", cid, check=0)
        r = oci.run("exec", cid, "sh", "-c", "id -u; cat /proc/self/uid_map", check=0)
        out = r.stdout.decode().splitlines()
        assert out[0] == "0" and out[1].split() == ["0", str(HOST_BASE), str(SIZE)]
    finally:
        oci.run("delete", "--force", cid, check=0)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["linux"].update(uidMappings=MAP, gidMappings=MAP),
     "has no user namespace"),
    (lambda c: c["linux"]["namespaces"].append({"type": "user"}),
     "needs linux.uidMappings and linux.gidMappings"),
    (lambda c: c["linux"].update(uidMappings=""),  # a wrong type, even with no user ns
     "linux.uidMappings must be a list of mappings"),
    (lambda c: _userns(c, [{"containerID": 0, "hostID": HOST_BASE, "size": 10},
                           {"containerID": 5, "hostID": 200000, "size": 10}]),
     "containerID ranges overlap"),
    (lambda c: _userns(c, [{"containerID": 0, "hostID": HOST_BASE, "size": 0}]),
     "invalid range"),
    (lambda c: _userns(c, [{"containerID": 0, "hostID": HOST_BASE}]),
     "needs integer containerID, hostID and size"),
    (lambda c: (_userns(c), c["process"].update(user={"uid": 70000, "gid": 0})),
     "process.user.uid 70000 is not mapped"),
])
def test_bad_user_namespace_configs(oci: Oci, bundle: Bundle, edit: Any, message: str) -> None:
    bundle.edit(edit)
    cid = oci.new_id()
    r = oci.create(bundle, cid, check=1)
    lines = [ln for ln in r.stderr.decode().splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert oci.run("state", cid).returncode == 1  # nothing was created


def test_features_list_user_namespace(oci: Oci) -> None:
    r = oci.run("features", check=0)
    assert "user" in json.loads(r.stdout)["linux"]["namespaces"]


def test_spec_rootless(oci: Oci, rootfs_template: str, tmp_path: Any) -> None:
    """``spec --rootless`` (runc's): the caller's ids as root of a user namespace, no network
    namespace, /sys bound; it runs as written."""
    d = tmp_path / "b"
    d.mkdir()
    oci.run("spec", "--rootless", "--bundle", str(d), check=0)
    cfg = json.loads((d / "config.json").read_text())
    kinds = [n["type"] for n in cfg["linux"]["namespaces"]]
    assert "user" in kinds and "network" not in kinds
    assert cfg["linux"]["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(),
                                            "size": 1}]
    assert not any("gid=" in o for m in cfg["mounts"] for o in m.get("options", []))
    shutil.copytree(rootfs_template, d / "rootfs", symlinks=True)
    cfg["process"].update(terminal=False, args=["cat", "/proc/self/uid_map"])
    cfg["linux"]["cgroupsPath"] = oci.cgroup("rootless-spec")
    (d / "config.json").write_text(json.dumps(cfg))
    r = oci.run("run", "--bundle", str(d), oci.new_id(), check=0)
    assert r.stdout.split() == [b"0", str(os.geteuid()).encode(), b"1"]
