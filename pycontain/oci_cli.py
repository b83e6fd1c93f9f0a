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
    spec [--bundle DIR] | features | --version

Flags follow runc's (urfave/cli) conventions: ``-flag`` or ``--flag``, ``--flag=value``, flags
before the positional arguments. Errors print one line on stderr (and into ``--log``, in runc's
JSON format with ``--log-format json``, where engines such as conmon read it) and exit 1.
Warnings (ignored config fields) go to the log when one is given, else to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

VERSION = "0.1.0"
SPEC_VERSION = "1.0.2"
PROG = "pycontain-oci"

# flag name -> (destination, takes a value, repeatable)
_GLOBAL = {
    "root": ("root", True, False), "log": ("log", True, False),
    "log-format": ("log_format", True, False), "systemd-cgroup": ("systemd_cgroup", False, False),
    "debug": ("debug", False, False), "criu": ("criu", True, False),
    "rootless": ("rootless", True, False), "help": ("help", False, False),
    "h": ("help", False, False), "version": ("version", False, False),
    "v": ("version", False, False),
}  # fmt: skip
_CREATE = {
    "bundle": ("bundle", True, False), "b": ("bundle", True, False),
    "pid-file": ("pid_file", True, False), "console-socket": ("console_socket", True, False),
    "preserve-fds": ("preserve_fds", True, False), "no-pivot": ("no_pivot", False, False),
    "no-new-keyring": ("no_new_keyring", False, False),
    "pidfd-socket": ("pidfd_socket", True, False),
}  # fmt: skip
_COMMANDS: Dict[str, Dict[str, Tuple[str, bool, bool]]] = {
    "create": _CREATE,
    "run": {**_CREATE, "detach": ("detach", False, False), "d": ("detach", False, False),
            "keep": ("keep", False, False)},
    "start": {},
    "state": {},
    "kill": {"all": ("all", False, False), "a": ("all", False, False)},
    "delete": {"force": ("force", False, False), "f": ("force", False, False)},
    "exec": {
        "process": ("process", True, False), "p": ("process", True, False),
        "tty": ("tty", False, False), "t": ("tty", False, False),
        "detach": ("detach", False, False), "d": ("detach", False, False),
        "pid-file": ("pid_file", True, False), "console-socket": ("console_socket", True, False),
        "cwd": ("cwd", True, False), "env": ("env", True, True), "e": ("env", True, True),
        "user": ("user", True, False), "u": ("user", True, False),
        "additional-gids": ("gids", True, True), "g": ("gids", True, True),
        "cap": ("cap", True, True), "c": ("cap", True, True),
        "no-new-privs": ("no_new_privs", False, False),
        "preserve-fds": ("preserve_fds", True, False),
        "process-label": ("process_label", True, False), "apparmor": ("apparmor", True, False),
        "cgroup": ("cgroup", True, True), "ignore-paused": ("ignore_paused", False, False),
        "no-subreaper": ("no_subreaper", False, False),
        "pidfd-socket": ("pidfd_socket", True, False),
    },
    "ps": {"format": ("format", True, False), "f": ("format", True, False)},
    "list": {"format": ("format", True, False), "f": ("format", True, False),
             "quiet": ("quiet", False, False), "q": ("quiet", False, False)},
    "spec": {"bundle": ("bundle", True, False), "b": ("bundle", True, False),
             "rootless": ("rootless", False, False)},
    "features": {},
    "pause": {},
    "resume": {},
    "events": {"stats": ("stats", False, False), "interval": ("interval", True, False)},
    "update": {
        "resources": ("resources", True, False), "r": ("resources", True, False),
        "memory": ("memory", True, False), "memory-swap": ("memory_swap", True, False),
        "memory-reservation": ("memory_reservation", True, False),
        "kernel-memory": ("kernel_memory", True, False),
        "kernel-memory-tcp": ("kernel_memory_tcp", True, False),
        "pids-limit": ("pids_limit", True, False), "cpu-quota": ("cpu_quota", True, False),
        "cpu-period": ("cpu_period", True, False), "cpu-share": ("cpu_share", True, False),
        "cpu-rt-period": ("cpu_rt_period", True, False),
        "cpu-rt-runtime": ("cpu_rt_runtime", True, False),
        "cpuset-cpus": ("cpuset_cpus", True, False), "cpuset-mems": ("cpuset_mems", True, False),
        "blkio-weight": ("blkio_weight", True, False),
        "l3-cache-schema": ("l3_cache_schema", True, False),
        "mem-bw-schema": ("mem_bw_schema", True, False),
    },
}  # fmt: skip
# Positional arguments each command takes: (minimum, maximum or -1 for "the rest").
_POSITIONALS = {"create": (1, 1), "run": (1, 1), "start": (1, 1), "state": (1, 1),
                "kill": (1, 2), "delete": (1, 1), "exec": (1, -1), "ps": (1, -1),
                "list": (0, 0), "spec": (0, 0), "features": (0, 0), "pause": (1, 1),
                "resume": (1, 1), "update": (1, 1), "events": (1, 1)}
_USAGE = __doc__.split("\n\n")[1] if __doc__ else ""


class UsageError(Exception):
    pass


class Opts:
    def __init__(self) -> None:
        self.values: Dict[str, Any] = {}

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def parse_flags(argv: List[str], table: Dict[str, Tuple[str, bool, bool]],
                stop_at_positional: bool = True) -> Tuple[Opts, List[str]]:
    opts = Opts()
    rest: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i + 1:])
            break
        if not arg.startswith("-") or arg == "-":
            if stop_at_positional:
                rest.extend(argv[i:])
                break
            rest.append(arg)
            i += 1
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in table:
            raise UsageError(f"flag provided but not defined: -{name}")
        dest, takes_value, repeat = table[name]
        if takes_value:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
            if repeat:
                opts.values.setdefault(dest, []).append(value)
            else:
                opts.values[dest] = value
        else:
            if eq and value.lower() not in ("true", "false", "1", "0"):
                raise UsageError(f"invalid boolean value {value!r} for -{name}")
            opts.values[dest] = not eq or value.lower() in ("true", "1")
        i += 1
    return opts, rest


class Logger:
    """Errors on stderr and in ``--log``; warnings and debug lines in the log (or stderr)."""

    def __init__(self, path: Optional[str], fmt: str, debug: bool) -> None:
        self.path = path
        self.json = fmt == "json"
        self.debug_on = debug

    def _write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        if self.json:
            from pycontain.oci_runtime import rfc3339

            line = json.dumps({"level": level, "msg": msg, "time": rfc3339(time.time())})
        else:
            line = f'time="{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}" ' \
                   f'level={level} msg="{msg}"'
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def error(self, msg: str) -> None:
        self._write("error", msg)
        sys.stderr.write(f"{PROG}: {msg}\n")

    def warn(self, msg: str) -> None:
        if self.path:
            self._write("warning", msg)
        else:
            sys.stderr.write(f"{PROG}: warning: {msg}\n")

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self._write("debug", msg)
            if not self.path:
                sys.stderr.write(f"{PROG}: debug: {msg}\n")


# ---------------------------------------------------------------------------------------------
# commands


def _rt(g: Opts, log: Logger) -> Any:
    from pycontain.oci_runtime import OciRuntime

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
    from pycontain.oci_runtime import OciError

    rt = _rt(g, log)
    try:
        rt.delete(args[0], bool(o.get("force")))
    except OciError as e:
        if o.get("force") and "does not exist" in str(e):
            return 0  # like runc: deleting a missing container with --force succeeds
        raise
    return 0


def _exec_process(rt: Any, cid: str, o: Opts, args: List[str]) -> Any:
    from pycontain.spec import Capabilities, Process, User

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

    from pycontain.oci_runtime import OciError, write_pid_file

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


def default_config() -> Dict[str, Any]:
    """What ``runc spec`` writes (runtime-spec defaults), with pycontain as the hostname."""
    from pycontain.spec import DEFAULT_CAPS, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS

    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    return {
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in
                             ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pycontain",
        "mounts": mounts,
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in
                           ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }


def cmd_spec(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
    from pycontain.oci_runtime import OciError

    if o.get("rootless"):
        raise OciError("rootless containers are not supported")
    path = os.path.join(o.get("bundle") or ".", "config.json")
    if os.path.exists(path):
        raise OciError(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        json.dump(default_config(), f, indent="\t")
        f.write("\n")
    return 0


def features() -> Dict[str, Any]:
    from pycontain import oci_seccomp
    from pycontain.oci_runtime import HOOK_KINDS, PRELOAD_ANNOTATION, SUPPORTED_NAMESPACES
    from pycontain.rootfs import _FLAGS, _PROPAGATION
    from pycontain.spec import CAP_NUMBERS

    cg_v1 = any(os.path.isdir(f"/sys/fs/cgroup/{c}") for c in ("memory", "pids"))
    cg_v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    seccomp_ok = oci_seccomp.available()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted(set(_FLAGS) | set(_PROPAGATION)),
        "linux": {
            "namespaces": list(SUPPORTED_NAMESPACES),
            "capabilities": sorted(CAP_NUMBERS, key=CAP_NUMBERS.__getitem__),
            "cgroup": {"v1": cg_v1, "v2": cg_v2, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": seccomp_ok,
                "actions": oci_seccomp.ACTIONS if seccomp_ok else [],
                "operators": oci_seccomp.OPERATORS if seccomp_ok else [],
                "archs": oci_seccomp.ARCHES if seccomp_ok else [],
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {
            "org.opencontainers.runc.version": "",
            "io.github.pycontain.version": VERSION,
            "io.github.pycontain.libseccomp.version": oci_seccomp.version(),
            "io.github.pycontain.preload-annotation": PRELOAD_ANNOTATION,
        },
    }


def cmd_features(g: Opts, o: Opts, args: List[str], log: Logger) -> int:
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
    from pycontain.cgroups import Limits
    from pycontain.container import ContainerError, parse_size

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
    from pycontain.oci_runtime import OciError

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


def _version() -> str:
    from pycontain import oci_seccomp

    lines = [f"{PROG} version {VERSION}", f"spec: {SPEC_VERSION}",
             f"python: {sys.version.split()[0]}"]
    v = oci_seccomp.version()
    if v:
        lines.append(f"libseccomp: {v}")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log = Logger(None, "text", False)
    try:
        g, rest = parse_flags(argv, _GLOBAL)
        log = Logger(g.get("log"), g.get("log_format") or "text", bool(g.get("debug")))
        if g.get("log_format") not in (None, "text", "json"):
            raise UsageError(f"invalid --log-format {g.get('log_format')!r} (text or json)")
        if g.get("version"):
            sys.stdout.write(_version())
            return 0
        if g.get("help") or not rest:
            sys.stdout.write(f"usage: {PROG} [GLOBAL OPTIONS] COMMAND ...\n{_USAGE}\n")
            return 0 if g.get("help") else 1
        if g.get("systemd_cgroup"):
            raise UsageError("--systemd-cgroup is not supported: pycontain-oci manages cgroupfs "
                             "cgroups only (configure the engine for cgroupfs)")
        if str(g.get("rootless", "false")).lower() == "true":
            raise UsageError("--rootless true: rootless containers are not supported")
        verb, *rest = rest
        if verb not in _HANDLERS:
            raise UsageError(f"unknown command {verb!r}")
        o, args = parse_flags(rest, _COMMANDS[verb])
        if o.get("help"):
            sys.stdout.write(_USAGE + "\n")
            return 0
        lo, hi = _POSITIONALS[verb]
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
        from pycontain.container import ContainerError

        if isinstance(e, ContainerError):
            log.error(str(e))
            return 1
        if isinstance(e, OSError):
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
