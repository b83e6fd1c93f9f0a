"""pycontain: a container runtime in Python (namespaces, cgroups, overlayfs, OCI config model).

Python API::

    import pycontain
    res = pycontain.run(["python3", "-c", "print(1)"], image="host", memory="64M")
    res.exit_code, res.oom_killed, res.stats

    c = pycontain.start(["sleep", "60"], name="web")      # detached, under a supervisor
    c.exec(["ps"]).exit_code; c.stop(); c.remove()

    pycontain.pull("127.0.0.1:5000/demo/box:1", tls_verify=False)   # the image id
    pycontain.push("box:v1", "127.0.0.1:5000/demo/box:1", tls_verify=False)  # its digest

Submodules are imported lazily so that the command line starts fast.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, List, Optional, Sequence

    from pycontain.runtime.container import Container
    from pycontain.runtime.result import Result
    from pycontain.runtime.runtime import Runtime

__all__ = ["Container", "ContainerError", "Result", "Runtime", "containers", "get", "pull",
           "push", "run", "start"]
__version__ = "0.1.0"

# Where each name of the API lives (imported on first use: the command line must start fast).
_LAZY = {"Container": "pycontain.runtime.container", "ContainerError": "pycontain.errors",
         "Result": "pycontain.runtime.result", "Runtime": "pycontain.runtime.runtime",
         "parse_size": "pycontain.runtime.args"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pycontain' has no attribute {name!r}")


def _runtime(root: Optional[str], storage: Optional[str], cgroup_parent: Optional[str]) -> Runtime:
    from pycontain.runtime.runtime import Runtime

    return Runtime(root, storage, cgroup_parent)


def run(
    command: Sequence[str],
    image: Optional[str] = "host",
    *,
    root: Optional[str] = None,
    storage: Optional[str] = None,
    cgroup_parent: Optional[str] = None,
    remove: bool = True,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    capture_output: bool = False,
    timeout: Optional[float] = None,
    **options: Any,
) -> Result:
    """Run ``command`` in a new container in the foreground and return its Result.

    Options are those of Runtime.create: rootfs, name, memory ("64M"), memory_swap, pids, cpus,
    hostname, net ("none" | "host"), env, volumes (["SRC:DST[:ro]"]), workdir, read_only,
    storage_size (a cap on the writable layer, "1G"), init, preload (allocator policy),
    limit_fallback ("rlimit": rootless without a cgroup, memory and pids as rlimits),
    network / networks (bridge networks: docs/networking.md), ports ({"80/tcp": 8080} or
    ["127.0.0.1:8080:80"]), ip, network_aliases, publish_all, pull ("missing", "always",
    "never") and tls_verify for an image from a registry. The
    container is removed afterwards unless remove=False. As a normal user the container is
    rootless (docs/pycontain.md, "Rootless").
    Setup errors raise ContainerError (exit_code 125, or 126/127 when the command cannot be
    executed) and leave nothing behind.
    """
    rt = _runtime(root, storage, cgroup_parent)
    c = rt.create(command, image, remove=remove, **options)
    return c.run(stdin=stdin, stdout=stdout, stderr=stderr, capture_output=capture_output,
                 timeout=timeout)


def start(
    command: Sequence[str],
    image: Optional[str] = "host",
    *,
    root: Optional[str] = None,
    storage: Optional[str] = None,
    cgroup_parent: Optional[str] = None,
    remove: bool = False,
    **options: Any,
) -> Container:
    """Start ``command`` detached (output goes to the container log); returns the Container."""
    rt = _runtime(root, storage, cgroup_parent)
    c = rt.create(command, image, detach=True, remove=remove, **options)
    c.start()
    return c


def get(name: str, root: Optional[str] = None, storage: Optional[str] = None) -> Container:
    return _runtime(root, storage, None).get(name)


def containers(root: Optional[str] = None, storage: Optional[str] = None) -> List[Container]:
    return _runtime(root, storage, None).containers()


def _registry(root: Optional[str], storage: Optional[str], tls_verify: bool,
              cert_dir: Optional[str], creds: Optional[Sequence[str]],
              authfile: Optional[str]) -> Any:
    from pycontain.image.registry.client import Options
    from pycontain.image.store import ImageStore

    rt = _runtime(root, storage, None)
    opts = Options(tls_verify=tls_verify, cert_dir=cert_dir,
                   creds=(str(creds[0]), str(creds[1])) if creds else None, authfile=authfile)
    return ImageStore(rt.storage, root=rt.root), opts


def pull(ref: str, *, root: Optional[str] = None, storage: Optional[str] = None,
         tls_verify: bool = True, cert_dir: Optional[str] = None,
         creds: Optional[Sequence[str]] = None, authfile: Optional[str] = None,
         platform: Optional[str] = None, quiet: bool = True) -> str:
    """Pull ``ref`` from its registry into the image store (``pycontain pull``); returns the
    image id. ``creds``: (user, password), else the auth files (docs/images.md). Errors raise
    ContainerError with one line."""
    from pycontain.errors import ContainerError
    from pycontain.image.errors import ImageError
    from pycontain.image.registry.pull import pull as do_pull

    store, opts = _registry(root, storage, tls_verify, cert_dir, creds, authfile)
    try:
        return str(do_pull(store, ref, opts, platform=platform, quiet=quiet).id)
    except ImageError as e:
        raise ContainerError(str(e)) from None


def push(local: str, ref: Optional[str] = None, *, root: Optional[str] = None,
         storage: Optional[str] = None, tls_verify: bool = True, cert_dir: Optional[str] = None,
         creds: Optional[Sequence[str]] = None, authfile: Optional[str] = None,
         quiet: bool = True) -> str:
    """Push image ``local`` to ``ref`` (default: its own name) as ``pycontain push`` does;
    returns the manifest digest."""
    from pycontain.errors import ContainerError
    from pycontain.image.errors import ImageError
    from pycontain.image.registry.push import push as do_push

    store, opts = _registry(root, storage, tls_verify, cert_dir, creds, authfile)
    try:
        return do_push(store, local, ref or local, opts, quiet=quiet)
    except ImageError as e:
        raise ContainerError(str(e)) from None
