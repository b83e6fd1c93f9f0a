"""Where pycontain keeps things, and the defaults every subsystem shares.

The state root holds one directory per container (``$PYCONTAIN_ROOT``, else
:func:`state_root`), the storage root the image store and containers' upper dirs
(``$PYCONTAIN_STORAGE``, else :func:`storage_root`). As root they are DEFAULT_ROOT and
DEFAULT_STORAGE; a normal user (rootless mode) gets podman's places: ``$XDG_RUNTIME_DIR/pycontain``
(else ``/tmp/pycontain-run-UID``, made 0700 and checked to be the user's) and
``$XDG_DATA_HOME/pycontain`` (else ``~/.local/share/pycontain``). DEFAULT_PATH is the PATH a
container gets when neither its image nor its caller sets one (runc's and docker's)."""

import os

DEFAULT_ROOT = "/run/pycontain"
DEFAULT_STORAGE = "/var/lib/pycontain"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def rootless() -> bool:
    return os.geteuid() != 0


def state_root() -> str:
    return DEFAULT_ROOT if not rootless() else user_runtime_dir("pycontain")


def user_runtime_dir(name: str) -> str:
    """A normal user's ``$XDG_RUNTIME_DIR/NAME``, else ``/tmp/NAME-run-UID`` (private)."""
    uid = os.geteuid()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        try:
            st = os.stat(xdg)
            if st.st_uid == uid and os.access(xdg, os.W_OK):
                return os.path.join(xdg, name)
        except OSError:
            pass
    return _private_tmp(f"/tmp/{name}-run-{uid}", uid)


def storage_root() -> str:
    if not rootless():
        return DEFAULT_STORAGE
    data = os.environ.get("XDG_DATA_HOME")
    if not (data and os.path.isabs(data)):
        data = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "pycontain")


def _private_tmp(path: str, uid: int) -> str:
    """``path`` as a directory of the user's own, mode 0700 (a shared /tmp: never one that
    another user made, nor a symlink)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        raise PermissionError(f"{path} is not a private directory of uid {uid}: set "
                              "XDG_RUNTIME_DIR or PYCONTAIN_ROOT")
    return path
