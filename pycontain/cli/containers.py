"""The container verbs of ``pycontain``: run, exec, ps, logs, kill, stop, rm, pause, unpause,
update, inspect (output and errors as docker's)."""

from __future__ import annotations

import sys

from pycontain.cli.parser import strip_dashdash

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional


def runtime_of(args: Any) -> Any:
    from pycontain.runtime.runtime import Runtime

    return Runtime(getattr(args, "root", None), getattr(args, "storage", None))


def human(n: Optional[int]) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


def cmd_run(args: Any) -> int:
    rt = runtime_of(args)
    command = strip_dashdash(args.command)
    c = rt.create(
        command, args.image, rootfs=args.rootfs, name=args.name, memory=args.memory,
        memory_swap=args.memory_swap, pids=args.pids, cpus=args.cpus, hostname=args.hostname,
        net=args.net, env=args.env, volumes=args.volume, workdir=args.workdir,
        read_only=args.read_only, storage_size=_storage_size(args.storage_opt),
        init=args.init, preload=args.preload, detach=args.detach, remove=args.rm,
        limit_fallback=args.limit_fallback, networks=args.network, ports=args.publish,
        ip=args.ip, network_aliases=args.network_alias, publish_all=args.publish_all,
        pull=args.pull, tls_verify=args.tls_verify != "false")
    if args.detach:
        c.start()
        print(c.id)
        return 0
    sys.stdout.flush()
    res = c.run(forward_signals=True)
    if res.oom_killed:
        limit = human(c.state(refresh=False).get("limits", {}).get("memory")) \
            if not args.rm else args.memory
        sys.stderr.write(f"pycontain: container {c.name} was killed by the OOM killer "
                         f"(memory limit {limit})\n")
    return int(res.exit_code)


def _storage_size(opts: List[str]) -> Optional[str]:
    """--storage-opt: only size=SIZE (docker's key) is known."""
    from pycontain.errors import ContainerError

    size = None
    for o in opts:
        key, eq, value = o.partition("=")
        if key.strip().lower() != "size" or not eq or not value.strip():
            raise ContainerError(f"invalid --storage-opt {o!r} (only size=SIZE is supported)")
        size = value.strip()
    return size


def cmd_exec(args: Any) -> int:
    c = runtime_of(args).get(args.name)
    res = c.exec(strip_dashdash(args.command), env=args.env, workdir=args.workdir)
    return int(res.exit_code)


def cmd_ps(args: Any) -> int:
    from pycontain import jsonfast as json

    rows = []
    for c in runtime_of(args).containers():
        try:
            info = c.inspect()
        except Exception:  # removed meanwhile
            continue
        if not args.all and info["state"] not in ("running", "created", "paused"):
            continue
        rows.append(info)
    if args.json:
        keys = ("name", "id", "image", "rootfs", "state", "pid", "exit_code", "oom_killed",
                "command", "created", "limits", "net")
        print(json.dumps([{**{k: r.get(k) for k in keys}, "networks": _addresses(r),
                           "ports": _ports(r)} for r in rows], indent=2))
        return 0
    if args.quiet:
        for r in rows:
            print(r["name"])
        return 0
    fmt = "{:<20} {:<12} {:<10} {:<16} {:>7}  {}"
    print(fmt.format("NAME", "ID", "IMAGE", "STATUS", "PID", "COMMAND") +
          ("   PORTS" if any(_ports(r) for r in rows) else ""))
    for r in rows:
        state = r["state"]
        if state == "stopped":
            code = r.get("exit_code")
            state = f"exited ({'?' if code is None else code})"
            if r.get("oom_killed"):
                state += " oom"
        image = r.get("image") or "rootfs"
        ports = ", ".join(_ports(r))
        print(fmt.format(r["name"][:20], (r.get("id") or "")[:12], image[:10], state,
                         r.get("pid") or "-", " ".join(r.get("command") or [])[:60])
              + (f"   {ports}" if ports else ""))
    return 0


def _ports(info: Dict[str, Any]) -> List[str]:
    """Published ports as docker's ps shows them: ``127.0.0.1:8080->80/tcp``."""
    s = info.get("network") or info.get("slirp") or {}
    return [f"{m.get('hostIP') or '0.0.0.0'}:{m['hostPort']}->{m['containerPort']}/"
            f"{m['protocol']}" for m in s.get("ports") or []]


def _addresses(info: Dict[str, Any]) -> Dict[str, Any]:
    return dict((info.get("network") or {}).get("addresses") or {})


def cmd_logs(args: Any) -> int:
    data = runtime_of(args).get(args.name).logs()
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


def cmd_kill(args: Any) -> int:
    runtime_of(args).get(args.name).kill(args.signal_opt or args.signal)
    return 0


def cmd_stop(args: Any) -> int:
    return _each(args, lambda c: c.stop(timeout=args.time))


def cmd_rm(args: Any) -> int:
    return _each(args, lambda c: c.remove(force=args.force))


def _each(args: Any, action: Callable[[Any], None]) -> int:
    """Applies action to each named container, printing each name as docker does; a name that
    fails is reported on stderr (one line) and the others are still done. Exit status 125 if
    any failed."""
    from pycontain.errors import ContainerError

    rt = runtime_of(args)
    failed = 0
    for name in args.name:
        try:
            action(rt.get(name))
        except (ContainerError, OSError) as e:
            sys.stdout.flush()
            sys.stderr.write(f"pycontain: error: {name}: {e}\n" if name not in str(e)
                             else f"pycontain: error: {e}\n")
            failed += 1
            continue
        print(name)
    return 125 if failed else 0


def cmd_pause(args: Any) -> int:
    return _each(args, lambda c: c.pause())


def cmd_unpause(args: Any) -> int:
    return _each(args, lambda c: c.resume())


def cmd_update(args: Any) -> int:
    return _each(args, lambda c: c.update(
        args.memory, args.pids, args.cpus, memory_swap=args.memory_swap,
        cpu_shares=args.cpu_shares, cpuset_cpus=args.cpuset_cpus,
        cpuset_mems=args.cpuset_mems))


def cmd_inspect(args: Any) -> int:
    from pycontain import jsonfast as json

    rt = runtime_of(args)
    out = [rt.get(n).inspect() for n in args.name]
    print(json.dumps(out[0] if len(out) == 1 else out, indent=2, default=str))
    return 0


def cmd_port(args: Any) -> int:
    """``pycontain port NAME``: docker's lines, ``80/tcp -> 0.0.0.0:8080``."""
    s = runtime_of(args).get(args.name).state()
    for m in (s.get("network") or {}).get("ports") or []:
        print(f"{m['containerPort']}/{m['protocol']} -> {m.get('hostIP') or '0.0.0.0'}:"
              f"{m['hostPort']}")
    return 0
