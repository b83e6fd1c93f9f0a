"""Teardown shared by every way a container ends (stop, rm, a failed create, the OCI delete):
kill what is left, remove its cgroup, upper dir and state directory, leaving nothing behind."""

from __future__ import annotations

import _signal as signal  # the C module: `signal` wraps it in enums, ~1 ms of start-up
import os
import time

from pycontain.runtime import cgroups, procs
from pycontain.runtime.state import StateDir, alive, rmtree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Type


def cgroup_of(s: Dict[str, Any]) -> Optional[cgroups.Cgroup]:
    """The cgroup a state record names, or None: the one created, else (a record still
    ``creating``) the one about to be, found by its path in each hierarchy."""
    if s.get("cgroup"):
        return cgroups.from_dict(s["cgroup"])
    if s.get("cgroup_rel"):
        try:
            return cgroups.detect().open(str(s["cgroup_rel"]))
        except cgroups.CgroupError:
            return None
    return None


def kill_now(s: Dict[str, Any], cg: Optional[cgroups.Cgroup]) -> None:
    """SIGKILL what is left of a container (its cgroup's members, then its main process) and
    wait up to 10 s for the main process to be gone."""
    if cg is not None:
        cg.kill_all()
    pid, start = s.get("pid"), s.get("pid_start")
    if pid and alive(pid, start):
        procs.signal_pid(int(pid), start, signal.SIGKILL)
        procs.wait_dead(int(pid), start, 10.0)


def undo_create(e: BaseException, error: Type[Exception], sdir: StateDir,
                cg: Optional[cgroups.Cgroup], cdir: Optional[str]) -> None:
    """A container's creation failed with ``e``: remove what it had made, and raise ``error``
    with a one-line message for the failures a user can act on (the caller re-raises the
    others as they are)."""
    destroy(sdir, cg, cdir)
    if isinstance(e, cgroups.CgroupError):
        raise error(str(e)) from None
    if isinstance(e, OSError):
        raise error(f"cannot create container: {e}") from None


def destroy(sdir: StateDir, cg: Optional[cgroups.Cgroup], cdir: Optional[str]) -> None:
    """Remove every trace: cgroup (killing what is left), networks (CNI DEL, the network
    namespace), upper dir, state dir."""
    if cg is not None:
        try:
            cg.kill_all()
            cg.remove()
        except (cgroups.CgroupError, OSError):
            pass
    detach_networks(sdir)
    if cdir and os.path.isdir(cdir):
        import shutil

        shutil.rmtree(cdir, ignore_errors=True)
        if os.path.isdir(cdir) and os.geteuid() != 0:  # rootless: files of mapped ids
            from pycontain.runtime import userns

            try:
                userns.rmtree_mapped(cdir)
            except Exception:
                pass
        if os.path.isdir(cdir):  # still mounted somewhere? detach and retry
            from pycontain.runtime import _sys

            try:
                _sys.umount2(cdir, _sys.MNT_DETACH)
            except OSError:
                pass
            shutil.rmtree(cdir, ignore_errors=True)
    if os.path.isdir(sdir.path):
        tomb = os.path.join(sdir.root, f".rm-{sdir.name}-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.rename(sdir.path, tomb)
        except OSError:
            tomb = sdir.path
        rmtree(tomb)


def detach_networks(sdir: StateDir, s: Optional[Dict[str, Any]] = None) -> None:
    """CNI DEL of the container's networks and removal of its network namespace, if its
    record has any (idempotent: what is already released is skipped)."""
    if s is None:
        try:
            s = sdir.read()
        except Exception:  # no readable record: nothing known to release
            return
    if not s.get("network"):
        return
    import sys

    from pycontain.net.attach import detach

    for err in detach(s["network"], str(s.get("id", ""))):
        sys.stderr.write(f"pycontain: warning: {err}\n")
