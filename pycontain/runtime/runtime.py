"""The Runtime: where containers' state and storage live, which cgroup driver serves them, how
a name or id prefix finds a container, and ``create`` (validate everything, then claim the name
and make the state record, upper dir and cgroup, undoing all of it on any failure)."""

from __future__ import annotations

import os
import time

from pycontain.defaults import DEFAULT_PATH, rootless, state_root, storage_root
from pycontain.errors import ContainerError
from pycontain.runtime import cgroups, cleanup, procs
from pycontain.runtime.args import (
    build_env,
    memory_limit,
    parse_cpus,
    parse_size,
    parse_volume,
)
from pycontain.runtime.container import Container
from pycontain.runtime.rootfs import upper_needs_tmpfs
from pycontain.runtime.spec import default_spec
from pycontain.runtime.state import (
    StateDir,
    StateError,
    alive,
    iter_states,
    list_names,
    remove_stale_partials,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

    from pycontain.image.store import ImageStore
    from pycontain.runtime.spec import Spec

    Size = Union[int, str, None]


_DRIVER: Optional[cgroups.Driver] = None  # detected once per process


class Runtime:
    """Where state and storage live, and which cgroup driver to use."""

    def __init__(
        self,
        root: Optional[str] = None,
        storage: Optional[str] = None,
        cgroup_parent: Optional[str] = None,
    ) -> None:
        self.root = os.path.abspath(root or os.environ.get("PYCONTAIN_ROOT") or state_root())
        self.storage = os.path.abspath(
            storage or os.environ.get("PYCONTAIN_STORAGE") or storage_root())
        self.rootless = rootless()
        self.cgroup_parent = (cgroup_parent or os.environ.get("PYCONTAIN_CGROUP_PARENT")
                              or cgroups.DEFAULT_PARENT)
        self._driver: Optional[cgroups.Driver] = None

    @property
    def driver(self) -> cgroups.Driver:
        if self._driver is None:
            global _DRIVER
            if _DRIVER is None:
                try:
                    _DRIVER = cgroups.detect()
                except cgroups.CgroupError as e:
                    if not self.rootless:
                        raise ContainerError(str(e)) from None
                    _DRIVER = cgroups.NoDriver(str(e))
            self._driver = _DRIVER
            if self.rootless:  # only a subtree delegated to this user, else no cgroup at all
                self._driver = cgroups.delegated(_DRIVER, self.cgroup_parent)
        return self._driver

    @property
    def images(self) -> ImageStore:
        from pycontain.image.store import ImageStore

        return ImageStore(self.storage, root=self.root)

    def _image(self, ref: str, pull: Optional[str], tls_verify: bool) -> Any:
        """The image for ``run``, pulled first as podman's ``--pull`` says: ``always``,
        ``missing``, ``never``. The default is ``missing`` for a reference that names its
        registry (``host:port/repo``, ``registry.example/repo``) and ``never`` for a bare name,
        which only ever means a local image."""
        from pycontain.image.errors import ImageError
        from pycontain.image.reference import HOST_IMAGE

        if pull not in (None, "always", "missing", "never"):
            raise ContainerError(f"invalid --pull {pull!r} (always, missing or never)")
        from pycontain.image.registry.refs import names_registry

        first, sep, _ = ref.partition("/")
        policy = pull or ("missing" if sep and names_registry(first) else "never")
        if ref == HOST_IMAGE or policy == "never":
            return self.images.get(ref)
        if policy == "missing":
            try:
                return self.images.get(ref)
            except ImageError:
                pass
        from pycontain.image.registry.client import Options
        from pycontain.image.registry.pull import pull as do_pull

        do_pull(self.images, ref, Options(tls_verify=tls_verify))
        return self.images.get(ref)

    def _join_networks(self, spec: Spec, sdir: StateDir, plan: Dict[str, Any], cid: str,
                       name: str) -> None:
        """The network namespace and CNI ADD (the plan is already in the published record,
        for teardown), then /etc/hosts and /etc/resolv.conf for the container, and its name
        in the hosts files of the running containers it shares a network with."""
        from pycontain.net import attach as _attach
        from pycontain.net.config import Networks
        from pycontain.runtime.spec import Mount, Namespace

        _attach.attach(Networks(self.storage), plan, cid)
        spec.linux.namespaces = [n for n in spec.linux.namespaces if n.type != "network"]
        spec.linux.namespaces.append(Namespace("network", plan["netns"]))
        peers = [s for s in iter_states(self.root) if s.get("network") and
                 s.get("name") != name and alive(s.get("pid"), s.get("pid_start"))]
        hosts = sdir.file("hosts")
        with open(hosts, "w") as f:
            f.write(_attach.hosts_file(plan, name, spec.hostname, peers))
        resolv = sdir.file("resolv.conf")
        with open(resolv, "w") as f:
            f.write(_resolv_conf())
        spec.mounts += [Mount("/etc/hosts", "bind", hosts, ["bind", "rw"]),
                        Mount("/etc/resolv.conf", "bind", resolv, ["bind", "ro"])]
        mine = set(plan["addresses"])
        own = next((a for a in plan["addresses"].values() if a), None)
        for p in peers:
            if own and mine & set(p["network"].get("addresses") or {}):
                line = f"{own}\t{' '.join(dict.fromkeys([name, *plan['aliases']]))}\n"
                try:
                    with open(StateDir(self.root, p["name"]).file("hosts"), "a") as f:
                        f.write(line)
                except OSError:
                    pass

    def _rootless_spec(self, spec: Spec, img_user: Tuple[int, int, List[int]],
                       limit_fallback: Optional[str], driver: cgroups.Driver) -> Dict[str, Any]:
        """A normal user's container: a user namespace (the user is root in it), and the
        limits a missing cgroup cannot apply either refused (by the cgroup driver) or, with
        ``limit_fallback="rlimit"``, approximated by rlimits."""
        from pycontain.runtime import userns
        from pycontain.runtime.spec import Namespace

        use_subids = os.environ.get("PYCONTAIN_SUBIDS", "1") != "0"
        uid_maps, gid_maps, full = userns.rootless_mappings(helpers=use_subids)
        uid, gid, groups = img_user
        for kind, wanted, maps in (("uid", uid, uid_maps), ("gid", gid, gid_maps),
                                   *(("group", g, gid_maps) for g in groups)):
            if not userns.maps_inside(maps, wanted):
                raise ContainerError(
                    f"the image runs as {kind} {wanted}, which a rootless container of uid "
                    f"{os.geteuid()} does not map: only root (your own id) is mapped without "
                    "a subordinate range in /etc/subuid and /etc/subgid (and Debian's uidmap)")
        spec.linux.namespaces.insert(0, Namespace("user"))
        spec.linux.uid_mappings = userns.to_oci(uid_maps)
        spec.linux.gid_mappings = userns.to_oci(gid_maps)
        approximated: List[str] = []
        if limit_fallback == "rlimit" and isinstance(driver, cgroups.NoDriver):
            approximated = rlimit_limits(spec)  # (with a cgroup, the limits are cgroup ones)
        return {"uid_map": uid_maps, "gid_map": gid_maps, "subids": full,
                "rlimits": approximated}

    # -- lookup ------------------------------------------------------------------------------
    def reap(self) -> List[str]:
        """Clean up after creators and monitors that died (a SIGKILLed ``pycontain run``):
        a record still ``creating`` whose creator is gone, or an ``--rm`` container whose
        process and monitor are both gone, is removed with all it had (cgroup, upper dir);
        any other container whose process and monitor are gone is recorded as stopped and its
        cgroup dropped. Every command that lists, finds or creates containers calls this, so a
        dead CLI's leftovers last at most until the next command. Returns the names removed."""
        removed = []
        remove_stale_partials(self.root)
        for name in list_names(self.root):
            sdir = StateDir(self.root, name)
            try:
                s = sdir.read()
            except (StateError, ValueError):
                continue
            if s.get("oci") or s.get("status") not in ("creating", "created", "running"):
                continue
            if alive(s.get("monitor_pid"), s.get("monitor_start")) or alive(
                    s.get("pid"), s.get("pid_start")):
                continue
            if s.get("status") == "creating" or s.get("auto_remove"):
                cleanup.destroy(sdir, cleanup.cgroup_of(s), s.get("container_dir"))
                removed.append(name)
            else:
                Container(self, name)._reap_orphan(None)
        return removed

    def get(self, ref: str) -> Container:
        self.reap()
        if ref and "/" not in ref and not ref.startswith(".") and \
                os.path.exists(os.path.join(self.root, ref, "state.json")):
            return Container(self, ref)
        matches = [s["name"] for s in iter_states(self.root) if s.get("id", "").startswith(ref)]
        if ref and len(matches) == 1:
            return Container(self, matches[0])
        if len(matches) > 1:
            raise ContainerError(f"container reference {ref!r} is ambiguous")
        raise ContainerError(f"no such container: {ref}")

    def containers(self) -> List[Container]:
        self.reap()
        return [Container(self, n) for n in list_names(self.root)]

    # -- creation ----------------------------------------------------------------------------
    def create(
        self,
        command: Sequence[str],
        image: Optional[str] = "host",
        *,
        rootfs: Optional[str] = None,
        name: Optional[str] = None,
        memory: Size = None,
        memory_swap: Size = None,
        pids: Optional[int] = None,
        cpus: Union[float, str, None] = None,
        hostname: Optional[str] = None,
        net: Optional[str] = None,
        env: Union[Sequence[str], Dict[str, str], None] = None,
        volumes: Sequence[str] = (),
        workdir: Optional[str] = None,
        read_only: bool = False,
        storage_size: Size = None,
        init: bool = True,
        preload: Optional[str] = None,
        detach: bool = False,
        remove: bool = False,
        limit_fallback: Optional[str] = None,
        networks: Sequence[str] = (),
        ports: Union[Sequence[str], Dict[Any, Any]] = (),
        network: Optional[str] = None,
        ip: Optional[str] = None,
        network_aliases: Sequence[str] = (),
        publish_all: bool = False,
        pull: Optional[str] = None,
        tls_verify: bool = True,
    ) -> Container:
        """Validate everything, then claim the name and create state, upper dir and cgroup.

        As a normal user (rootless mode) the container gets a user namespace in which the
        user is root (see :func:`pycontain.runtime.userns.rootless_mappings`), a cgroup only
        if a subtree is delegated to the user, and with ``limit_fallback="rlimit"`` limits
        that no cgroup can apply become rlimits (:func:`rlimit_limits`)."""
        mem = memory_limit(memory)
        swap = parse_size(memory_swap, "memory+swap size") if memory_swap not in (-1, "-1") \
            else -1
        ncpus = parse_cpus(cpus)
        if pids is not None:
            try:
                pids = int(pids)
            except (TypeError, ValueError):
                raise ContainerError(f"invalid --pids value: {pids!r}") from None
            if pids <= 0:
                raise ContainerError(f"invalid --pids value: {pids} (must be > 0)")
        networks = ([network] if network else []) + list(networks)
        if isinstance(ports, dict):  # the API's {container port: host port} (docker-py's)
            ports = [_port_item(k, v) for k, v in ports.items()]
        net_given = net
        slirp_ports = None
        if net == "slirp4netns" or (self.rootless and net is None and not networks
                                    and ports):
            if not self.rootless:
                raise ContainerError("--net slirp4netns is for rootless containers (as root, "
                                     "use a network: --network NAME)")
            if networks or ip or network_aliases:
                raise ContainerError("--net slirp4netns takes -p only (no --network, --ip or "
                                     "--network-alias)")
            from pycontain.net.attach import parse_port

            slirp_ports = [parse_port(p) for p in ports]
            net, ports = "slirp4netns", ()
        shared_with = None
        for n in [net, *networks]:
            if n and n.startswith("container:"):
                shared_with = n[len("container:"):]
        if shared_with is not None:
            if len([n for n in [net, *networks] if n]) > 1 or ports or ip or network_aliases:
                raise ContainerError("--network container:NAME shares that container's network "
                                     "namespace: no other network, -p, --ip or alias")
            other = self.get(shared_with)
            if not other.is_running():
                raise ContainerError(f"--network container:{shared_with}: it is not running")
            net, networks = f"container:{other.name}", []
        elif net not in (None, "none", "host", "slirp4netns"):
            networks.insert(0, net)  # docker's --net NAME is --network NAME
        if networks and net in ("none", "host", "slirp4netns"):
            raise ContainerError(f"--net {net} and --network cannot be combined")
        if not networks and (ports or ip or network_aliases):
            if net is not None:
                raise ContainerError(f"-p, --ip and --network-alias need a network, not --net "
                                     f"{net}")
            from pycontain.net.config import DEFAULT_NETWORK

            networks = [DEFAULT_NETWORK]  # docker's: -p alone puts it on the default bridge
        if shared_with is None:
            net = "network" if networks else (net or "none")
        if preload is not None:
            from pycontain.runtime.preload import POLICIES, add_preload, library
        if preload is not None and preload not in POLICIES:
            raise ContainerError(f"invalid --preload policy {preload!r} "
                                 f"(one of {', '.join(POLICIES)})")
        mounts = [parse_volume(v) for v in volumes]
        upper_size = parse_size(storage_size, "storage size")
        if upper_size is not None and rootfs is not None:
            raise ContainerError("--storage-opt size needs an image: with --rootfs the writable "
                                 "layer is the directory itself")
        if upper_size is not None and upper_size < 1 << 20:
            raise ContainerError(f"invalid storage size {storage_size!r}: the minimum is 1MiB")
        lowers: Optional[List[str]] = None
        if rootfs is not None:
            root_path = os.path.abspath(rootfs)
            if not os.path.isdir(root_path):
                raise ContainerError(f"rootfs is not a directory: {root_path}")
            img_env = [f"PATH={DEFAULT_PATH}"]
            img_wd = "/"
            image_name = None
            img_user: Tuple[int, int, List[int]] = (0, 0, [])
        else:
            from pycontain.image.errors import ImageError

            try:
                img = self._image(image or "host", pull, tls_verify)
            except ImageError as e:
                raise ContainerError(str(e)) from None
            lowers, img_env, img_wd = img.layers, img.env, img.working_dir
            image_name = img.reference
            try:
                img_user = img.resolve_user()
            except ImageError as e:
                raise ContainerError(str(e)) from None
            root_path = ""
        if publish_all:  # -P: every port the image EXPOSEs, on a free host port each
            exposed = img.exposed_ports if rootfs is None else []
            ports = list(ports) + [f"{_free_port(proto)}:{port}/{proto}"
                                   for port, proto in exposed]
            if exposed and not networks:
                if net_given is not None:
                    raise ContainerError(f"-P needs a network, not --net {net_given}")
                from pycontain.net.config import DEFAULT_NETWORK

                networks, net = [DEFAULT_NETWORK], "network"
        args = list(command) if rootfs is not None else img.argv(command)
        if not args:
            raise ContainerError("no command given (usage: pycontain run [OPTIONS] -- CMD ...)")
        lib = library() if preload is not None else None

        cid = os.urandom(16).hex()
        net_plan = None
        if networks:
            from pycontain.net import attach as _attach
            from pycontain.net.config import Networks

            nets = Networks(self.storage)
            net_plan = _attach.plan(nets, self.root, cid, networks, ports, ip, network_aliases)
        name = name or cid[:12]
        sdir = StateDir(self.root, name)
        cdir = os.path.join(self.storage, "containers", cid)
        driver = self.driver
        try:
            cg_rel = cgroups.base.relative_path(cid, self.cgroup_parent)
        except cgroups.CgroupError as e:
            raise ContainerError(str(e)) from None
        spec = default_spec(args)
        spec.hostname = hostname or name
        spec.root.readonly = read_only
        spec.process.cwd = workdir or img_wd or "/"
        spec.process.user.uid, spec.process.user.gid = img_user[0], img_user[1]
        spec.process.user.additional_gids = list(img_user[2])
        spec.process.env = build_env(img_env, spec.hostname, env)
        if net == "host":
            spec.linux.namespaces = [n for n in spec.linux.namespaces if n.type != "network"]
        elif shared_with is not None:  # the pod model: one network namespace, several containers
            from pycontain.runtime.spec import Namespace

            spec.linux.namespaces = [n for n in spec.linux.namespaces if n.type != "network"]
            spec.linux.namespaces.append(Namespace("network", f"/proc/{other.pid}/ns/net"))
        res = spec.linux.resources
        res.memory_limit = mem
        res.memory_swap = swap if (mem is not None and swap is not None) else None
        if mem is None:
            res.memory_swap = None
        res.pids_limit = pids
        if ncpus is not None:
            res.cpu_period = 100000
            res.cpu_quota = int(ncpus * 100000)
        spec.mounts.extend(mounts)
        if limit_fallback not in (None, "rlimit"):
            raise ContainerError(f"invalid --limit-fallback {limit_fallback!r} (rlimit)")
        rootless_info = None
        if self.rootless:
            rootless_info = self._rootless_spec(spec, img_user, limit_fallback, driver)
        spec.root.path = os.path.join(cdir, "merged") if lowers is not None else root_path
        spec.linux.cgroups_path = "/" + cg_rel
        now = time.time()
        # The record says where the cgroup and the upper dir will be before either exists,
        # names its creator (so that a creator killed mid-way is noticed) and appears
        # complete or not at all: nothing this creates can be left without a record.
        state: Dict[str, Any] = {
            "ociVersion": spec.oci_version,
            "id": cid,
            "name": name,
            "status": "creating",
            "pid": 0,
            "bundle": sdir.path,
            "annotations": {},
            "created": now,
            "image": image_name,
            "rootfs": root_path or None,
            "lowers": lowers,
            "container_dir": cdir if lowers is not None else None,
            "tmpfs_upper": upper_size is not None,
            "upper_size": upper_size,
            "command": args,
            "init": bool(init),
            "detached": bool(detach),
            "auto_remove": bool(remove),
            "net": net,
            "network": net_plan,
            "slirp": None if slirp_ports is None else {"ports": slirp_ports},
            "volumes": list(volumes),
            "preload": preload,
            "limits": {"memory": mem, "pids": pids, "cpus": ncpus,
                       "memory_swap": res.memory_swap},
            "rootless": rootless_info,
            "cgroup": None,
            "cgroup_rel": cg_rel,
            "monitor_pid": os.getpid(),
            "monitor_start": procs.self_start_time(),
            "exit_code": None,
            "oom_killed": False,
        }
        self.reap()
        try:
            sdir.publish(state, {"config.json": spec.to_dict()})
        except StateError as e:
            raise ContainerError(str(e)) from None
        cg: Optional[cgroups.Cgroup] = None
        try:
            if lib is not None and preload is not None:
                add_preload(spec, sdir, preload, lib)
            if lowers is not None:
                os.makedirs(os.path.dirname(cdir), mode=0o700, exist_ok=True)
                os.mkdir(cdir, 0o700)
                state["tmpfs_upper"] = upper_size is not None or upper_needs_tmpfs(
                    os.path.dirname(cdir))
            cg = driver.create(cid, spec.linux.resources, self.cgroup_parent)
            if net_plan is not None:
                self._join_networks(spec, sdir, net_plan, cid, name)
            state.update(status="created", cgroup=cg.to_dict())
            sdir.write_json("config.json", spec.to_dict())
            with sdir.lock():
                sdir.write(state)
        except BaseException as e:
            cleanup.undo_create(e, ContainerError, sdir, cg or cleanup.cgroup_of(state), cdir)
            raise
        c = Container(self, name)
        c._spec = spec
        c._state = state
        return c



def rlimit_limits(spec: Spec) -> List[str]:
    """Move the cgroup limits of ``spec`` that have an rlimit counterpart into rlimits of the
    container's processes, for a rootless container without a cgroup. They are weaker and
    say different things: RLIMIT_AS caps each process's address space (virtual memory,
    not the container's resident total), RLIMIT_NPROC the processes of the container's root
    in its user namespace (not the cgroup's tasks). A CPU share has no counterpart and is
    still refused. Returns the names of the limits moved."""
    from pycontain.runtime.spec import Rlimit

    res = spec.linux.resources
    moved: List[str] = []
    if res.memory_limit is not None:
        spec.process.rlimits.append(Rlimit("RLIMIT_AS", res.memory_limit, res.memory_limit))
        res.memory_limit = res.memory_swap = None
        moved.append("memory")
    if res.pids_limit is not None:
        spec.process.rlimits.append(Rlimit("RLIMIT_NPROC", res.pids_limit, res.pids_limit))
        res.pids_limit = None
        moved.append("pids")
    return moved


def _resolv_conf() -> str:
    """The host's resolv.conf without loopback nameservers (unreachable from a container's
    own network namespace), and a public fallback-free note when none is left."""
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    kept = [ln for ln in lines if not (ln.split()[:1] == ["nameserver"] and
                                       (ln.split()[1:2] or [""])[0].startswith(("127.", "::1")))]
    if not any(ln.startswith("nameserver") for ln in kept):
        kept.append("# no nameserver: the host's resolves through its own loopback")
    return "\n".join(kept) + "\n"


def _free_port(proto: str) -> int:
    """A host port nothing listens on now (the kernel's pick), for ``-P``."""
    import socket

    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _port_item(container: Any, host: Any) -> str:
    """``{"80/tcp": 8080}``, ``{80: ("127.0.0.1", 8080)}`` -> ``-p`` syntax."""
    cport, _, proto = str(container).partition("/")
    if isinstance(host, (tuple, list)) and len(host) == 2:
        return f"{host[0]}:{host[1]}:{cport}/{proto or 'tcp'}"
    return f"{host}:{cport}/{proto or 'tcp'}"
