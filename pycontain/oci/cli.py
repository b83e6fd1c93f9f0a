"""``pycontain-oci``: a runc-compatible OCI runtime command line on pycontain's runtime core.

    pycontain-oci [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND ...

    create --bundle DIR [--pid-file F] [--console-socket S] [--preserve-fds N] ID
    start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID
    run [--bundle DIR] [--detach] [--pid-file F] [--console-socket S] ID
    exec [--process F | --tty --cwd D --env K=V --user U[:G] --cap C ...] [--detach]
         [--pid-file F] [--console-socket S] ID [COMMAND ARG...]
    ps [--format table|json] ID | list [--format table|json] [--quiet]
    pause ID | resume ID | events [--stats] [--interval 5s] ID
    update [--resources FILE|-] [--memory M] [--memory-swap M] [--pids-limit N]
           [--cpu-quota N] [--cpu-period N] [--cpu-share N] [--cpuset-cpus L]
           [--cpuset-mems L] ID
    spec [--bundle DIR] [--rootless] | features | --version

Flags follow runc's (urfave/cli) conventions: ``-flag`` or ``--flag``, ``--flag=value``, flags
before the positional arguments. Errors print one line on stderr (and into ``--log``, in runc's
JSON format with ``--log-format json``, where engines such as conmon read it) and exit 1.
Warnings (ignored config fields) go to the log when one is given, else to stderr.
"""

from __future__ import annotations

import os
import sys
import time

from pycontain import jsonfast as json
from pycontain.errors import ContainerError
from pycontain.oci import OciError
from pycontain.oci.flags import COMMANDS, GLOBAL, POSITIONALS, Opts, UsageError, parse_flags
from pycontain.oci.log import PROG, Logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional

_USAGE = __doc__.split("\n\n")[1] if __doc__ else ""


# ---------------------------------------------------------------------------------------------
# commands


def _rt(g: Opts, log: Logger) -> Any:
    from pycontain.oci.runtime import OciRuntime

    return OciRuntime(g.get("root") or os.environ.get("PYCONTAIN_OCI_ROOT"), warn=log.warn)


def _int_flag(opts: Opts, name: str) -> int:
    raw = opts.get(name, "0")
    try:
        n = int(raw)
    except ValueError:
        raise UsageError(f"invalid value {raw!r} for --{name.replace('_', '-')}") from None
    if n < 0:
        raise UsageError(f"--{name.replace('_', '-')} must not be negative")
    return n


def cmd_create(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    rt = _rt(g, log)
    if o.get("pidfd_socket"):
        log.warn("--pidfd-socket is not supported (ignored)")
    rt.create(args[0], o.get("bundle") or ".", o.get("pid_file"), o.get("console_socket"),
              _int_flag(o, "preserve_fds"))
    return 0


def cmd_run(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    import signal

    rt = _rt(g, log)
    cid = args[0]
    pid = rt.create(cid, o.get("bundle") or ".", o.get("pid_file"), o.get("console_socket"),
                    _int_flag(o, "preserve_fds"))
    try:
        if o.get("detach"):
            rt.start(cid)
            return 0
        forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)

        def forward(signum: int, frame: Any) -> None:
            try:
                os.kill(pid, signum)
            except OSError:
                pass

        for sig in forwarded:
            signal.signal(sig, forward)
        rt.start(cid)
        code = rt.wait(cid, pid)
    except BaseException:
        if not o.get("detach"):
            rt.delete(cid, force=True)
        raise
    if not o.get("keep"):
        rt.delete(cid, force=True)
    return code


def cmd_start(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    _rt(g, log).start(args[0])
    return 0


def cmd_state(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    sys.stdout.write(json.dumps(_rt(g, log).state(args[0]), indent=2) + "\n")
    return 0


def cmd_kill(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    _rt(g, log).kill(args[0], args[1] if len(args) > 1 else "SIGTERM", bool(o.get("all")))
    return 0


def cmd_delete(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    rt = _rt(g, log)
    try:
        rt.delete(args[0], bool(o.get("force")))
    except OciError as e:
        if o.get("force") and "does not exist" in str(e):
            return 0  # like runc: deleting a missing container with --force succeeds
        raise
    return 0


def _exec_process(rt: Any, cid: str, o: Opts, args: List[str]) -> Any:
    from pycontain.runtime.spec import Capabilities, Process, User

    c = rt.container(cid)
    base = c.spec().process
    if o.get("process"):
        try:
            with open(o.get("process")) as f:
                proc = Process.from_dict(json.load(f))
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read --process {o.get('process')}: {e}") from None
        if not proc.args:
            raise UsageError(f"--process {o.get('process')}: args must not be empty")
        return c, proc
    if not args:
        raise UsageError("exec needs a command (arguments after the container id) or --process")
    env = list(base.env)
    for item in o.get("env") or []:
        key = item.partition("=")[0]
        env = [e for e in env if e.partition("=")[0] != key] + [item]
    user = User(base.user.uid, base.user.gid, list(base.user.additional_gids), base.user.umask)
    if o.get("user"):
        uid, _, gid = o.get("user").partition(":")
        try:
            user = User(int(uid), int(gid) if gid else 0)
        except ValueError:
            raise UsageError(f"invalid --user {o.get('user')!r} (UID[:GID])") from None
    if o.get("gids"):
        try:
            user.additional_gids = [int(x) for v in o.get("gids") for x in v.split(",")]
        except ValueError:
            raise UsageError("invalid --additional-gids") from None
    caps = base.capabilities
    if o.get("cap") and caps is not None:
        extra = list(o.get("cap"))
        caps = Capabilities(*(list(dict.fromkeys(list(getattr(caps, k)) + extra))
                              for k in ("bounding", "effective", "permitted")),
                            list(caps.inheritable), list(caps.ambient))
    proc = Process(args=list(args), env=env, cwd=o.get("cwd") or base.cwd,
                   terminal=bool(o.get("tty")), user=user, capabilities=caps,
                   rlimits=list(base.rlimits),
                   no_new_privileges=bool(o.get("no_new_privs")) or base.no_new_privileges,
                   oom_score_adj=base.oom_score_adj)
    return c, proc


def cmd_exec(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    import signal

    from pycontain.oci.runtime import write_pid_file

    rt = _rt(g, log)
    cid = args[0]
    status = rt.state(cid)["status"]
    if status not in ("created", "running"):
        raise OciError(f"cannot exec in container {cid}: it is {status}")
    for name in ("process_label", "apparmor", "cgroup"):
        if o.get(name):
            log.warn(f"exec --{name.replace('_', '-')} is not supported (ignored)")
    c, proc = _exec_process(rt, cid, o, args[1:])
    seccomp = c.spec().linux.seccomp
    if seccomp is not None:
        rt.prepare_seccomp(seccomp)  # compiled once per profile, cached under the root
    if o.get("tty"):
        proc.terminal = True
    sock = None
    console = -1
    if proc.terminal:
        if not o.get("console_socket"):
            raise OciError("a terminal needs --console-socket (no built-in terminal relay)")
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(o.get("console_socket"))
        except OSError as e:
            raise OciError(f"cannot connect to console socket: {e.strerror}") from None
        console = sock.fileno()
    try:
        res = c.exec(proc.args, process=proc, console=console, detach=True,
                     preserve_fds=_int_flag(o, "preserve_fds"))
    finally:
        if sock is not None:
            sock.close()
    if o.get("pid_file"):
        write_pid_file(o.get("pid_file"), res.pid)
    if o.get("detach"):
        return 0
    pid = res.pid

    def forward(signum: int, frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGWINCH):
        signal.signal(sig, forward)
    return int(rt.wait(cid, pid))


def cmd_ps(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    import subprocess

    pids = _rt(g, log).pids(args[0])
    fmt = o.get("format") or "table"
    if fmt == "json":
        sys.stdout.write(json.dumps(pids) + "\n")
        return 0
    if fmt != "table":
        raise UsageError(f"invalid --format {fmt!r} (table or json)")
    ps_args = args[1:] or ["-ef"]
    try:
        out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        sys.stdout.write("PID\n" + "".join(f"{p}\n" for p in pids))
        return 0
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    col = header.index("PID") if "PID" in header else 0
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            sys.stdout.write(line + "\n")
    return 0


def cmd_list(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    states = _rt(g, log).list()
    fmt = o.get("format") or "table"
    if o.get("quiet"):
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
        return 0
    if fmt == "json":
        sys.stdout.write(json.dumps(states) + "\n")
        return 0
    if fmt != "table":
        raise UsageError(f"invalid --format {fmt!r} (table or json)")
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], "root")
             for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        sys.stdout.write("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    return 0


def cmd_spec(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    path = os.path.join(o.get("bundle") or ".", "config.json")
    if os.path.exists(path):
        raise OciError(f"File {path} exists. Remove it first")
    from pycontain.oci.features import default_config, to_rootless

    cfg = default_config()
    if o.get("rootless"):
        to_rootless(cfg)
    with open(path, "w") as f:
        json.dump(cfg, f, indent="\t")
        f.write("\n")
    return 0


def cmd_features(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    from pycontain.oci.features import features

    sys.stdout.write(json.dumps(features(), indent=4) + "\n")
    return 0


def cmd_pause(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    _rt(g, log).pause(args[0])
    return 0


def cmd_resume(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    _rt(g, log).resume(args[0])
    return 0


def _update_limits(o: Opts) -> Any:
    """runc update's resources: an OCI linux.resources object from --resources (a file, or
    - for stdin), overridden by the single-value flags."""
    from pycontain.runtime.args import parse_size
    from pycontain.runtime.cgroups import Limits

    lim = Limits()
    if o.get("resources"):
        src = o.get("resources")
        try:
            if src == "-":
                res = json.load(sys.stdin)
            else:
                with open(src) as f:
                    res = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read --resources {src}: {e}") from None
        if not isinstance(res, dict):
            raise UsageError("--resources: expected a JSON object (OCI linux.resources)")
        mem, cpu, pids = (res.get(k) or {} for k in ("memory", "cpu", "pids"))
        lim.memory, lim.memory_swap = mem.get("limit"), mem.get("swap")
        lim.cpu_quota, lim.cpu_period = cpu.get("quota"), cpu.get("period")
        lim.cpu_shares, lim.pids = cpu.get("shares"), pids.get("limit")
        lim.cpuset_cpus, lim.cpuset_mems = cpu.get("cpus") or None, cpu.get("mems") or None
        for key in ("blockIO", "hugepageLimits", "network", "rdma", "unified", "devices"):
            if res.get(key):
                raise UsageError(f"update: resources.{key} cannot be changed on a live "
                                 "container by pycontain-oci")

    def size(name: str) -> Optional[int]:
        raw = str(o.get(name))
        if raw.strip() == "-1":
            return -1
        try:
            return parse_size(raw, "--" + name.replace("_", "-"))
        except ContainerError as e:
            raise UsageError(str(e)) from None

    def integer(name: str) -> int:
        try:
            return int(o.get(name))
        except ValueError:
            raise UsageError(f"invalid value {o.get(name)!r} for "
                             f"--{name.replace('_', '-')}") from None

    for name in ("memory_reservation", "kernel_memory", "kernel_memory_tcp", "cpu_rt_period",
                 "cpu_rt_runtime", "blkio_weight", "l3_cache_schema", "mem_bw_schema"):
        if o.get(name) is not None:
            raise UsageError(f"update --{name.replace('_', '-')} is not supported")
    if o.get("memory") is not None:
        lim.memory = size("memory")
    if o.get("memory_swap") is not None:
        lim.memory_swap = size("memory_swap")
    for name, attr in (("pids_limit", "pids"), ("cpu_quota", "cpu_quota"),
                       ("cpu_period", "cpu_period"), ("cpu_share", "cpu_shares")):
        if o.get(name) is not None:
            setattr(lim, attr, integer(name))
    for name in ("cpuset_cpus", "cpuset_mems"):
        if o.get(name) is not None:
            setattr(lim, name, o.get(name))
    return lim


def _duration(raw: str) -> float:
    """A Go-style duration (500ms, 5s, 1m) or plain seconds."""
    number, mult = raw, 1.0
    for unit, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if raw.endswith(unit):
            number, mult = raw[: -len(unit)], scale
            break
    try:
        value = float(number) * mult
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"invalid --interval {raw!r} (a duration such as 5s or 500ms)")
    return value


def cmd_events(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    """runc events: with --stats one stats record, else one every --interval (default 5s)
    and an "oom" event when the kernel's OOM killer strikes, until the container stops."""
    rt, cid = _rt(g, log), args[0]
    interval = _duration(o.get("interval") or "5s")

    def emit(kind: str, data: Any) -> None:
        sys.stdout.write(json.dumps({"type": kind, "id": cid, "data": data}) + "\n")
        sys.stdout.flush()

    data = rt.stats(cid)
    emit("stats", data)
    if o.get("stats"):
        return 0
    ooms = data["memory"]["oom_kills"]
    while True:
        time.sleep(interval)
        try:
            data = rt.stats(cid)
        except OciError:
            return 0  # stopped or deleted: the stream ends
        if data["memory"]["oom_kills"] > ooms:
            ooms = data["memory"]["oom_kills"]
            emit("oom", None)
        emit("stats", data)


def cmd_update(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    _rt(g, log).update(args[0], _update_limits(o))
    return 0


_HANDLERS = {"create": cmd_create, "run": cmd_run, "start": cmd_start, "state": cmd_state,
             "kill": cmd_kill, "delete": cmd_delete, "exec": cmd_exec, "ps": cmd_ps,
             "list": cmd_list, "spec": cmd_spec, "features": cmd_features, "pause": cmd_pause,
             "resume": cmd_resume, "update": cmd_update, "events": cmd_events}


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log = Logger(None, "text", False)
    try:
        g, rest = parse_flags(argv, GLOBAL)
        log = Logger(g.get("log"), g.get("log_format") or "text", bool(g.get("debug")))
        if g.get("log_format") not in (None, "text", "json"):
            raise UsageError(f"invalid --log-format {g.get('log_format')!r} (text or json)")
        if g.get("version"):
            from pycontain.oci.features import version

            sys.stdout.write(version())
            return 0
        if g.get("help") or not rest:
            sys.stdout.write(f"usage: {PROG} [GLOBAL OPTIONS] COMMAND ...\n{_USAGE}\n")
            return 0 if g.get("help") else 1
        if g.get("systemd_cgroup"):
            raise UsageError("--systemd-cgroup is not supported: pycontain-oci manages cgroupfs "
                             "cgroups only (configure the engine for cgroupfs)")
        rootless = str(g.get("rootless", "auto")).lower()
        if rootless not in ("true", "false", "auto"):
            raise UsageError(f"invalid --rootless {rootless!r} (true, false or auto)")
        if rootless == "false" and os.geteuid() != 0:
            raise UsageError("--rootless false: pycontain-oci is not running as root")
        if rootless == "true" and os.geteuid() == 0:
            raise UsageError("--rootless true as root is not supported (run it as the user)")
        verb, *rest = rest
        if verb not in _HANDLERS:
            raise UsageError(f"unknown command {verb!r}")
        o, args = parse_flags(rest, COMMANDS[verb])
        if o.get("help"):
            sys.stdout.write(_USAGE + "\n")
            return 0
        lo, hi = POSITIONALS[verb]
        if len(args) < lo or (hi >= 0 and len(args) > hi):
            what = "a container id" if lo else "no arguments"
            raise UsageError(f"{verb}: expected {what}, got {args!r}")
        log.debug(f"{verb} {' '.join(args)}")
        return _HANDLERS[verb](g, o, args, log)
    except UsageError as e:
        log.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if isinstance(e, ContainerError):
            log.error(str(e))
            return 1
        if isinstance(e, (OSError, ImportError)):  # ImportError: the native module or cffi
            log.error(f"{e}")
            return 1
        raise


def run_main() -> None:
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run_main()
