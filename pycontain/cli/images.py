"""The image verbs of ``pycontain``: ``image`` (ls, rm, inspect, import, export, tag) and
``commit``.

``add_subparsers(sub, parents, parser_class)`` adds them to an argparse subparsers object;
``cmd_image(args, storage, root)`` and ``cmd_commit(args, storage, root)`` run them, ``run(args)``
with the command line's roots. Output follows docker's conventions (``image ls`` columns,
``Untagged:``/``Deleted:`` lines, ``Loaded image:``, the new id after ``commit``, a JSON array
from ``inspect``). Errors are raised as ``ImageError`` (one line) for the caller to
print and turn into exit status 125.

    pycontain image import PATH [--name NAME[:TAG]]
    pycontain image ls [-q] [--json]
    pycontain image rm [-f] NAME...
    pycontain image inspect NAME...
    pycontain image export NAME PATH            (OCI layout dir, or tar when PATH ends in .tar)
    pycontain image tag NAME NEWNAME[:TAG]
    pycontain commit [-m MSG] [-a AUTHOR] [-c KEY=JSON] CONTAINER NAME[:TAG]
"""

from __future__ import annotations

import argparse
import calendar
import json
import sys
import time

from pycontain.image.errors import ImageError
from pycontain.image.reference import HOST_IMAGE
from pycontain.image.store import ImageStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence

    from pycontain.image.model import Image


def add_subparsers(sub: Any, parents: Sequence[argparse.ArgumentParser] = (),
                   parser_class: Optional[type] = None) -> None:
    """Add the ``image`` and ``commit`` verbs to ``sub`` (from ``add_subparsers()``)."""
    kw: Dict[str, Any] = {"parents": list(parents)}
    im = sub.add_parser("image", help="manage images", **kw)
    isub = im.add_subparsers(dest="image_verb", metavar="VERB",
                             **({"parser_class": parser_class} if parser_class else {}))
    isub.required = True
    ls = isub.add_parser("ls", help="list images", **kw)
    ls.add_argument("-q", "--quiet", action="store_true", help="image ids only")
    ls.add_argument("--json", action="store_true")
    rm = isub.add_parser("rm", help="remove images", **kw)
    rm.add_argument("-f", "--force", action="store_true",
                    help="remove even if containers use it (its layers stay until they go)")
    rm.add_argument("name", nargs="+")
    ins = isub.add_parser("inspect", help="JSON description of images", **kw)
    ins.add_argument("name", nargs="+")
    imp = isub.add_parser("import", help="import an OCI layout, docker-archive or rootfs",
                          **kw)
    imp.add_argument("path")
    imp.add_argument("--name", help="NAME[:TAG] (default: from the archive, else the file name);"
                                    " selects by ref.name when the layout holds several images")
    imp.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    ex = isub.add_parser("export", help="write an image as an OCI image layout", **kw)
    ex.add_argument("name")
    ex.add_argument("path", help="a new directory, or a .tar file")
    tg = isub.add_parser("tag", help="give an image another name", **kw)
    tg.add_argument("name")
    tg.add_argument("new_name")

    pl = sub.add_parser("pull", help="pull an image from a registry", **kw)
    _registry_options(pl)
    pl.add_argument("--platform", help="OS/ARCH[/VARIANT] from an index (default: this machine)")
    pl.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    pl.add_argument("ref", help="[REGISTRY[:PORT]/]REPO[:TAG][@sha256:DIGEST]")

    ps = sub.add_parser("push", help="push an image to a registry", **kw)
    _registry_options(ps)
    ps.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    ps.add_argument("name", help="the local image")
    ps.add_argument("ref", nargs="?", help="[REGISTRY[:PORT]/]REPO[:TAG] (default: NAME)")

    li = sub.add_parser("login", help="log in to a registry (credentials in the auth file)",
                        **kw)
    _registry_options(li, creds=False)
    li.add_argument("-u", "--username")
    li.add_argument("-p", "--password", help="(visible to other users: prefer "
                                             "--password-stdin)")
    li.add_argument("--password-stdin", action="store_true",
                    help="read the password from standard input")
    li.add_argument("--get-login", action="store_true",
                    help="print the user name stored for the registry")
    li.add_argument("registry", help="REGISTRY[:PORT] (docker.io when omitted)", nargs="?")
    lo = sub.add_parser("logout", help="remove a registry's credentials", **kw)
    lo.add_argument("--authfile", help="auth file (default: $REGISTRY_AUTH_FILE, else "
                                       "podman's auth.json)")
    lo.add_argument("-a", "--all", action="store_true", help="every registry")
    lo.add_argument("registry", nargs="?", help="REGISTRY[:PORT]")

    cm = sub.add_parser("commit", help="create an image from a container's changes", **kw)
    cm.add_argument("-m", "--message", default="", help="commit message")
    cm.add_argument("-a", "--author", default="")
    cm.add_argument("-c", "--change", action="append", default=[], metavar="KEY=VALUE",
                    help="config change: Cmd, Entrypoint, Env (JSON list or string), "
                         "WorkingDir, User")
    cm.add_argument("container")
    cm.add_argument("name", help="NAME[:TAG]")


def _registry_options(p: argparse.ArgumentParser, creds: bool = True) -> None:
    p.add_argument("--tls-verify", default="true", choices=("true", "false"),
                   help="false: a registry without a trusted certificate, or plain HTTP")
    p.add_argument("--cert-dir", help="CA certificates (*.crt) and client pairs (*.cert, "
                                      "*.key) for the registry")
    p.add_argument("--authfile", help="auth file (default: $REGISTRY_AUTH_FILE, else podman's "
                                      "auth.json, then docker's config.json)")
    if creds:
        p.add_argument("--creds", metavar="USER[:PASSWORD]",
                       help="credentials for this command (instead of the auth file)")


def registry_opts(args: argparse.Namespace) -> Any:
    from pycontain.image.registry.client import Options, parse_creds

    creds = getattr(args, "creds", None)
    return Options(tls_verify=getattr(args, "tls_verify", "true") != "false",
                   cert_dir=getattr(args, "cert_dir", None),
                   creds=parse_creds(creds) if creds else None,
                   authfile=getattr(args, "authfile", None))


# ---------------------------------------------------------------------------------------------
# Formatting


def human_size(n: int) -> str:
    """docker's sizes: decimal units, three significant digits."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n = n / 1000  # type: ignore[assignment]
    return f"{n}B"


def human_ago(created: str, now: Optional[float] = None) -> str:
    if not created:
        return "-"
    try:
        t = calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return created
    d = max(0.0, (now if now is not None else time.time()) - t)
    for secs, unit in ((365 * 86400, "year"), (30 * 86400, "month"), (7 * 86400, "week"),
                       (86400, "day"), (3600, "hour"), (60, "minute")):
        if d >= secs:
            k = int(d // secs)
            return f"{k} {unit}{'s' if k > 1 else ''} ago"
    return "Less than a minute ago" if d >= 1 else "Less than a second ago"


def _progress(quiet: bool) -> Optional[Callable[[str], None]]:
    if quiet or not sys.stderr.isatty():
        return None

    def show(msg: str) -> None:
        sys.stderr.write(f"\r\033[K{msg}")
        if msg.startswith(("imported", "warning")):
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _ls_row(img: Image) -> List[str]:
    if img.builtin:
        return [HOST_IMAGE, "<builtin>", "-", "-", "-"]
    return [img.name, img.tag, img.short_id, human_ago(img.created), human_size(img.size)]


# ---------------------------------------------------------------------------------------------
# Handlers


def _parse_change(item: str) -> Dict[str, Any]:
    key, sep, value = item.partition("=")
    key = key.strip()
    aliases = {"cmd": "Cmd", "entrypoint": "Entrypoint", "env": "Env",
               "workingdir": "WorkingDir", "workdir": "WorkingDir", "user": "User",
               "expose": "ExposedPorts", "exposedports": "ExposedPorts"}
    k = aliases.get(key.lower())
    if not sep or k is None:
        raise ImageError(f"invalid --change {item!r} (KEY=VALUE with KEY one of Cmd, "
                         "Entrypoint, Env, WorkingDir, User, Expose)")
    if k == "ExposedPorts":  # Expose=80,53/udp
        ports: Dict[str, Any] = {}
        for p in value.replace(" ", ",").split(","):
            if not p:
                continue
            num, _, proto = p.partition("/")
            if not num.isdigit() or not 0 < int(num) < 65536 or proto not in ("", "tcp",
                                                                                 "udp", "sctp"):
                raise ImageError(f"invalid --change {item!r}: port {p!r}")
            ports[f"{int(num)}/{proto or 'tcp'}"] = {}
        return {k: ports}
    if k in ("Cmd", "Entrypoint"):
        try:
            v = json.loads(value)
        except ValueError:
            v = ["/bin/sh", "-c", value]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ImageError(f"invalid --change {item!r}: {k} must be a JSON list of strings")
        return {k: v}
    if k == "Env":
        try:
            v = json.loads(value)
        except ValueError:
            v = [value]
        if not isinstance(v, list):
            v = [str(v)]
        return {k: [str(x) for x in v]}
    return {k: value}


def cmd_image(args: argparse.Namespace, storage: str, root: Optional[str] = None,
              store: Optional[ImageStore] = None) -> int:
    """Run ``pycontain image VERB``; raises ImageError on failure."""
    store = store or ImageStore(storage, root=root)
    verb = args.image_verb
    if verb == "ls":
        images = store.list()
        if getattr(args, "json", False):
            print(json.dumps([i.to_dict() for i in images], indent=2))
        elif getattr(args, "quiet", False):
            seen = []
            for i in images:
                if i.id and i.short_id not in seen:
                    seen.append(i.short_id)
                    print(i.short_id)
        else:
            rows = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]
            rows += [_ls_row(i) for i in images]
            widths = [max(len(r[c]) for r in rows) for c in range(4)]
            for r in rows:
                print("   ".join(r[c].ljust(widths[c]) for c in range(4)) + "   " + r[4])
    elif verb == "rm":
        failed: List[str] = []
        for n in args.name:
            try:
                for line in store.remove(n, force=bool(getattr(args, "force", False))):
                    print(line)
            except ImageError as e:
                if len(args.name) == 1:
                    raise
                failed.append(str(e))
        if failed:
            raise ImageError("; ".join(failed))
    elif verb == "inspect":
        print(json.dumps([store.inspect(n) for n in args.name], indent=2, default=str))
    elif verb == "import":
        img = store.import_image(args.path, getattr(args, "name", None),
                                 _progress(bool(getattr(args, "quiet", False))))
        print(f"Loaded image: {img.reference}")
    elif verb == "export":
        store.export(args.name, args.path, _progress(False))
    elif verb == "tag":
        store.tag(args.name, args.new_name)
    else:  # pragma: no cover - argparse refuses other verbs
        raise ImageError(f"unknown image verb {verb!r}")
    return 0


def cmd_commit(args: argparse.Namespace, storage: str, root: Optional[str] = None,
               store: Optional[ImageStore] = None) -> int:
    """Run ``pycontain commit CONTAINER NAME[:TAG]``; prints the new image id."""
    store = store or ImageStore(storage, root=root)
    changes: Dict[str, Any] = {}
    for c in getattr(args, "change", None) or []:
        changes.update(_parse_change(c))
    img = store.commit(args.container, args.name, changes or None,
                       comment=getattr(args, "message", "") or "",
                       author=getattr(args, "author", "") or "")
    print(img.id)
    return 0


def run(args: argparse.Namespace) -> int:
    """``pycontain image VERB`` and ``pycontain commit``, with the roots of ``--root`` and
    ``--storage`` (or their environment variables and defaults)."""
    from pycontain.errors import ContainerError
    from pycontain.runtime.runtime import Runtime

    rt = Runtime(getattr(args, "root", None), getattr(args, "storage", None))
    # Where the credentials and certificates are is decided as the caller: a rootless
    # command runs below as root of a user namespace.
    try:
        opts = registry_opts(args) if args.verb in ("pull", "push") else None
    except ImageError as e:
        raise ContainerError(str(e)) from None

    def command() -> int:
        if args.verb == "commit":
            return cmd_commit(args, rt.storage, rt.root)
        if args.verb == "pull":
            from pycontain.image.registry.pull import pull

            img = pull(ImageStore(rt.storage, root=rt.root), args.ref, opts,
                       platform=args.platform, quiet=bool(args.quiet))
            print(img.id)
            return 0
        if args.verb == "push":
            from pycontain.image.registry.push import push

            print(push(ImageStore(rt.storage, root=rt.root), args.name, args.ref or args.name,
                       opts, quiet=bool(args.quiet)))
            return 0
        return cmd_image(args, rt.storage, rt.root)

    try:
        if args.verb in ("login", "logout"):
            return cmd_login(args)
        if rt.rootless:
            return _in_mapped_namespace(command)
        return command()
    except ImageError as e:
        raise ContainerError(str(e)) from None


def _in_mapped_namespace(command: Any) -> int:
    """Rootless with a subordinate range: image commands run as root of a user namespace
    with the containers' maps (podman's ``unshare``), so that layers keep their files'
    owners as the containers see them, and commit, export and rm read and remove files of
    any mapped id. With a single id (no range) they run as the user, whose own files are all
    root's inside anyway."""
    import os

    from pycontain.runtime import userns

    uid_maps, gid_maps, full = userns.rootless_mappings(
        helpers=os.environ.get("PYCONTAIN_SUBIDS", "1") != "0")
    if not full:
        return int(command())
    userns.run_mapped(command, uid_maps, gid_maps)
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    """``pycontain login`` (credentials checked with the registry before they are stored)
    and ``pycontain logout``, as podman's."""
    from pycontain.image.registry import auth
    from pycontain.image.registry.client import Client, Options
    from pycontain.image.registry.refs import DOCKER_HUB, DOCKER_HUB_API

    registry = auth.normalize_key(args.registry) if args.registry else None
    if registry is not None and (not registry or any(c.isspace() for c in registry)):
        raise ImageError(f"invalid registry {args.registry!r}")
    if args.verb == "logout":
        if args.all:
            auth.remove(None, args.authfile)
            print("Removed login credentials for all registries")
            return 0
        if registry is None:
            raise ImageError("logout: name a registry, or --all")
        if not auth.remove(registry, args.authfile):
            raise ImageError(f"not logged into {registry}")
        print(f"Removed login credentials for {registry}")
        return 0
    registry = registry or DOCKER_HUB
    if args.get_login:
        found = auth.lookup(registry, "", args.authfile)
        if not found:
            raise ImageError(f"not logged into {registry}")
        print(found[0])
        return 0
    user, password = args.username, args.password
    if args.password_stdin:
        if password is not None:
            raise ImageError("--password and --password-stdin: give one")
        password = sys.stdin.readline().rstrip("\r\n")
    if not user or password is None:
        if not sys.stdin.isatty():
            raise ImageError("login: give --username and --password (or --password-stdin)")
        import getpass

        user = user or input("Username: ").strip()
        password = password if password is not None else getpass.getpass("Password: ")
    if not user:
        raise ImageError("login: the user name is empty")
    host = registry.split("/")[0]  # a key may name a namespace: quay.io/team
    host = DOCKER_HUB_API if host == DOCKER_HUB else host
    opts = Options(tls_verify=args.tls_verify != "false", cert_dir=args.cert_dir,
                   creds=(user, password), authfile=args.authfile)
    client = Client(host, "", opts, registry=registry)
    try:
        client.ping()
    finally:
        client.close()
    auth.save(registry, user, password, args.authfile)
    print("Login Succeeded!")
    return 0
