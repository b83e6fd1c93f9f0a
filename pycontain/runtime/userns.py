"""User namespaces: a container's id mappings, checked, written and read back.

A mapping is the OCI runtime-spec's ``{"containerID": C, "hostID": H, "size": N}``: ids
C..C+N-1 inside are H..H+N-1 outside. The launcher writes them to /proc/PID/{uid,gid}_map of
the process that unshared the user namespace (process.py's user stage, which waits for them):

* as root, directly (any ranges);
* as a normal user, with ``newuidmap`` / ``newgidmap`` (Debian's uidmap: setuid helpers that
  allow the ranges /etc/subuid and /etc/subgid grant the user), or, for the one mapping the
  kernel allows any user - their own uid and gid as one id each - directly, after writing
  ``deny`` to /proc/PID/setgroups (the kernel's condition for an unprivileged gid_map).
"""

from __future__ import annotations

import os

from pycontain.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple

    Mapping = Tuple[int, int, int]  # (inside, outside, size)

MAX_LINES = 340  # the kernel's limit on lines in one map (Linux 4.15+)
ID_LIMIT = 1 << 32
SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"


def parse_mappings(entries: Any, what: str) -> List[Mapping]:
    """The OCI mapping list ``entries`` as (inside, outside, size) triples; ContainerError
    naming ``what`` (``linux.uidMappings``) for anything the kernel would refuse."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ContainerError(f"{what} must be a list of mappings")
    if len(entries) > MAX_LINES:
        raise ContainerError(f"{what}: {len(entries)} mappings, the kernel takes at most "
                             f"{MAX_LINES}")
    out: List[Mapping] = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ContainerError(f"{what}[{i}] is not an object")
        try:
            triple = (int(e["containerID"]), int(e["hostID"]), int(e["size"]))
        except (KeyError, TypeError, ValueError):
            raise ContainerError(f"{what}[{i}] needs integer containerID, hostID and "
                                 "size") from None
        inside, outside, size = triple
        if inside < 0 or outside < 0 or size <= 0 or inside + size > ID_LIMIT \
                or outside + size > ID_LIMIT:
            raise ContainerError(f"{what}[{i}]: invalid range {inside}:{outside}:{size}")
        out.append(triple)
    for key, side in ((0, "containerID"), (1, "hostID")):
        ranges = sorted((m[key], m[key] + m[2]) for m in out)
        for (_, end), (start, _) in zip(ranges, ranges[1:]):
            if start < end:
                raise ContainerError(f"{what}: the {side} ranges overlap")
    return out


def to_oci(maps: Sequence[Mapping]) -> List[Dict[str, int]]:
    return [{"containerID": c, "hostID": h, "size": n} for c, h, n in maps]


def format_map(maps: Sequence[Mapping]) -> str:
    return "".join(f"{c} {h} {n}\n" for c, h, n in maps)


def maps_inside(maps: Sequence[Mapping], inside_id: int) -> bool:
    return any(c <= inside_id < c + n for c, _, n in maps)


def is_self_map(maps: Sequence[Mapping], own: int) -> bool:
    """The one mapping an unprivileged process may write itself: its own id, alone."""
    return len(maps) == 1 and maps[0][1] == own and maps[0][2] == 1


def write_maps(pid: int, uid_maps: Sequence[Mapping], gid_maps: Sequence[Mapping]) -> None:
    """Write the maps of ``pid``'s (new) user namespace; ContainerError with the reason."""
    if os.geteuid() == 0:
        for name, maps in (("gid_map", gid_maps), ("uid_map", uid_maps)):
            _write(pid, name, format_map(maps))
        return
    uid, gid = os.geteuid(), os.getegid()
    if is_self_map(uid_maps, uid) and (not gid_maps or is_self_map(gid_maps, gid)):
        _write(pid, "setgroups", "deny")
        if gid_maps:
            _write(pid, "gid_map", format_map(gid_maps))
        _write(pid, "uid_map", format_map(uid_maps))
        return
    _run_helpers(pid, [(tool, maps) for tool, maps in (("newgidmap", gid_maps),
                                                         ("newuidmap", uid_maps)) if maps])


def _write(pid: int, name: str, text: str) -> None:
    path = f"/proc/{pid}/{name}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        shown = text.strip().replace("\n", ", ")
        raise ContainerError(f"cannot write {name} ({shown}) of the container's user "
                             f"namespace: {e.strerror}") from None


def _find(tool: str) -> Optional[str]:
    for d in [*(os.environ.get("PATH") or "/usr/bin:/bin").split(":"), "/usr/bin", "/bin"]:
        p = os.path.join(d or ".", tool)
        if os.access(p, os.X_OK):
            return p
    return None


def _run_helpers(pid: int, jobs: List[Tuple[str, Sequence[Mapping]]]) -> None:
    """newgidmap and newuidmap, started together (posix_spawn: no subprocess module on the
    start-up path), their messages kept for the error."""
    running: List[Tuple[str, int, int]] = []
    errors: List[str] = []
    try:
        for tool, maps in jobs:
            exe = _find(tool)
            if exe is None:
                raise ContainerError(f"{tool} is not installed (Debian: apt-get install "
                                     "uidmap): it maps more than your own id into a user "
                                     "namespace")
            r, w = os.pipe()
            try:
                child = os.posix_spawn(exe, [exe, str(pid), *(str(x) for m in maps for x in m)],
                                       {"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
                                       file_actions=[(os.POSIX_SPAWN_DUP2, w, 1),
                                                     (os.POSIX_SPAWN_DUP2, w, 2)])
            except BaseException:
                os.close(r)
                raise
            finally:
                os.close(w)
            running.append((tool, child, r))
    finally:
        for tool, child, r in running:  # every helper started is waited for
            out = b""
            while True:
                chunk = os.read(r, 4096)
                if not chunk:
                    break
                out += chunk
            os.close(r)
            _, status = os.waitpid(child, 0)
            if status != 0:
                why = out.decode(errors="replace").strip().splitlines()
                errors.append(f"{tool} failed: "
                              f"{why[-1] if why else f'exit status {status >> 8}'}")
    if errors:
        raise ContainerError("; ".join(errors))


def subid_range(user: str, uid: int, path: str) -> Optional[Tuple[int, int]]:
    """The first range /etc/subuid (or subgid) grants ``user`` (by name or uid): (start,
    count), or None."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            return start, count
    return None


def rootless_mappings(subuid: str = SUBUID, subgid: str = SUBGID,
                      helpers: bool = True) -> Tuple[List[Mapping], List[Mapping], bool]:
    """The mappings a normal user's container gets, as podman gives them: the user is root
    inside and, with a subordinate range and newuidmap/newgidmap, ids 1..N are the range.
    Returns (uid maps, gid maps, full) where ``full`` says whether the range was used."""
    import pwd

    uid, gid = os.geteuid(), os.getegid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    own_u: List[Mapping] = [(0, uid, 1)]
    own_g: List[Mapping] = [(0, gid, 1)]
    if helpers and _find("newuidmap") and _find("newgidmap"):
        ru = subid_range(user, uid, subuid)
        rg = subid_range(user, uid, subgid)
        if ru and rg:
            return ([*own_u, (1, ru[0], min(ru[1], 65536))],
                    [*own_g, (1, rg[0], min(rg[1], 65536))], True)
    return own_u, own_g, False


def run_mapped(fn: Any, uid_maps: Sequence[Mapping], gid_maps: Sequence[Mapping]) -> None:
    """Run ``fn()`` in a child process that is root of a new user namespace with these maps
    (podman's ``unshare``): how a normal user removes what containers made as their mapped
    ids. ContainerError with the child's message if it fails."""
    from pycontain.runtime import _sys

    c2p, p2c = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(c2p[0])
            os.close(p2c[1])
            _sys.unshare(_sys.CLONE_NEWUSER)
            os.write(c2p[1], b"U")
            if os.read(p2c[0], 1) == b"K":
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
                fn()
                code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException as e:
            try:
                os.write(c2p[1], f"E{e}".encode())
            except OSError:
                pass
        import sys

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    os.close(c2p[1])
    os.close(p2c[0])
    error = ""
    try:
        if os.read(c2p[0], 1) == b"U":
            try:
                write_maps(pid, uid_maps, gid_maps)
                os.write(p2c[1], b"K")
            except ContainerError as e:
                error = str(e)
                os.write(p2c[1], b"N")
        msg = os.read(c2p[0], 4096)
        if msg.startswith(b"E"):
            error = msg[1:].decode(errors="replace")
    finally:
        os.close(c2p[0])
        os.close(p2c[1])
        _, status = os.waitpid(pid, 0)
    if error or status != 0:
        raise ContainerError(error or f"user namespace helper failed (status {status})")


def rmtree_mapped(path: str) -> None:
    """Remove ``path`` as root of a user namespace with this user's rootless maps (it may hold
    files of the user's subordinate ids, or directories of mode 0, that the user alone cannot
    remove). A no-op as root."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    if os.geteuid() == 0 or not os.path.lexists(path):
        return
    uid_maps, gid_maps, _ = rootless_mappings(
        helpers=os.environ.get("PYCONTAIN_SUBIDS", "1") != "0")
    run_mapped(lambda: shutil.rmtree(path, ignore_errors=True), uid_maps, gid_maps)
