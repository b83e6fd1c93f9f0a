"""A container's lifecycle, from the parent's side: run in the foreground or start detached
under a supervisor, wait, kill, stop, pause and resume, change limits, remove, inspect.

Process model. The launching process L (the caller for a foreground run, a double-forked
supervisor for a detached one) unshares only its *children's* pid namespace, forks, and restores
its own (setns back), so the child C is PID 1 of a new pid namespace while L stays its parent and
can waitpid() it. C joins the cgroup (writes "0" to cgroup.procs, so it is inside before anything
else happens), unshares mount/uts/ipc/net/cgroup, builds the root filesystem, pivot_roots, drops
capabilities, sets no_new_privs and execs the workload - either in place (``init=False``) or under
a minimal C init that reaps zombies and forwards signals. Setup errors travel back over a
close-on-exec pipe: EOF means the workload was exec'd. What C does between fork and exec lives
in process.py, exec into a running container in exec.py, the teardown in cleanup.py; a
container is created by :meth:`pycontain.runtime.runtime.Runtime.create`.
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` wraps it in enums, ~1 ms of start-up
import os
import time

from pycontain import jsonfast as json
from pycontain.errors import ContainerError
from pycontain.runtime import _sys, cgroups, cleanup, procs
from pycontain.runtime.args import cpus_arg, int_arg, parse_signal, size_or_unlimited
from pycontain.runtime.process import Launch, _child, _preimport
from pycontain.runtime.result import Result
from pycontain.runtime.spec import Process, Spec
from pycontain.runtime.state import StateDir, StateError, alive, proc_start_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

    from pycontain.runtime.runtime import Runtime

    StdioArg = Union[int, Any, None]


class Container:
    """A container known to the runtime (a state directory)."""

    def __init__(self, runtime: Runtime, name: str) -> None:
        self.runtime = runtime
        self.name = name
        self.dir = StateDir(runtime.root, name)
        self._spec: Optional[Spec] = None
        self._state: Optional[Dict[str, Any]] = None

    def __repr__(self) -> str:
        return f"<Container {self.name}>"

    # -- state -------------------------------------------------------------------------------
    def state(self, refresh: bool = True) -> Dict[str, Any]:
        if refresh or self._state is None:
            try:
                self._state = self.dir.read()
            except StateError as e:
                raise ContainerError(str(e)) from None
        return self._state

    @property
    def id(self) -> str:
        return str(self.state(refresh=False)["id"])

    @property
    def pid(self) -> int:
        return int(self.state().get("pid") or 0)

    def spec(self) -> Spec:
        if self._spec is None:
            with open(self.dir.file("config.json")) as f:
                self._spec = Spec.from_dict(json.load(f))
        return self._spec

    def cgroup(self) -> cgroups.Cgroup:
        return cgroups.from_dict(self.state(refresh=False)["cgroup"])

    @staticmethod
    def _live_status(s: Dict[str, Any]) -> str:
        status = str(s.get("status", "unknown"))
        if status in ("created", "running"):
            if s.get("pid") and not alive(s.get("pid"), s.get("pid_start")):
                return "stopped"
        return status

    @property
    def status(self) -> str:
        """created, running, paused or stopped."""
        s = self.state()
        return self._paused_status(s, self._live_status(s))

    @staticmethod
    def _paused_status(s: Dict[str, Any], status: str) -> str:
        return "paused" if status == "running" and cgroups.is_frozen(s.get("cgroup")) else status

    def is_running(self) -> bool:
        s = self.state()
        return s.get("status") in ("created", "running") and alive(s.get("pid"),
                                                                   s.get("pid_start"))

    # -- starting ----------------------------------------------------------------------------
    def _fork(self, stdio: Optional[Tuple[int, int, int]],
              launch: Optional[Launch] = None) -> Tuple[int, int]:
        """Fork the container's PID 1 (in its new or joined pid namespace); returns its pid and
        the read end of the error pipe."""
        spec = self.spec()
        state = self.state(refresh=False)
        cg = self.cgroup()
        procs = cg.join_files()
        _preimport(spec, launch is not None and launch.console >= 0)
        from pycontain.runtime import process as _process

        self._gate = (-1, -1)
        if state.get("slirp"):
            go_r, go_w = os.pipe()
            here_r, here_w = os.pipe()
            _process._GATE[:] = [go_r, here_w, go_w, here_r]
            self._gate = (go_w, here_r)
        errr, errw = os.pipe()
        parent_fd = -1
        if launch is None and not state.get("detached"):  # a foreground run: see process.py
            import select  # noqa: F401 - for the child, past pivot_root

            parent_fd = os.pidfd_open(os.getpid())
        if any(n.type == "user" for n in spec.linux.namespaces):
            return self._fork_userns(spec, state, procs, stdio, launch, parent_fd, errr, errw)
        new_pid_ns = spec.linux.has_namespace("pid")
        join_pid = next((n.path for n in spec.linux.namespaces if n.type == "pid" and n.path), "")
        nsfd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC) \
            if new_pid_ns or join_pid else -1
        try:
            if new_pid_ns:
                _sys.unshare(_sys.CLONE_NEWPID)
            elif join_pid:
                target = os.open(join_pid, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _sys.setns(target, _sys.CLONE_NEWPID, join_pid)
                finally:
                    os.close(target)
            try:
                with _sys.NonDumpable():  # never a dumpable host interpreter in its namespaces
                    pid = os.fork()
                if pid == 0:
                    os.close(errr)
                    _child(spec, state, procs, errw, stdio, launch, parent_fd)
                    os._exit(125)  # not reached
            finally:
                if nsfd >= 0:
                    _sys.setns(nsfd, _sys.CLONE_NEWPID, "own pid namespace")
        except BaseException:
            os.close(errr)
            raise
        finally:
            for fd in (nsfd, parent_fd):
                if fd >= 0:
                    os.close(fd)
            os.close(errw)
        return pid, errr

    def _fork_userns(self, spec: Spec, state: Dict[str, Any], procs_files: Any,
                     stdio: Optional[Tuple[int, int, int]], launch: Optional[Launch],
                     parent_fd: int, errr: int, errw: int) -> Tuple[int, int]:
        """_fork for a container with a user namespace: a first child enters it (and the pid
        namespace) and forks PID 1 as our child (process.py's ``_user_stage``); meanwhile
        this process writes the id maps when asked. Returns PID 1's pid and the error pipe;
        if the first child failed, its own pid (reaped by the caller) instead."""
        from pycontain.runtime import userns
        from pycontain.runtime.process import _user_stage

        c2p = p2c = (-1, -1)
        first = 0
        try:
            uid_maps = userns.parse_mappings(spec.linux.uid_mappings, "linux.uidMappings")
            gid_maps = userns.parse_mappings(spec.linux.gid_mappings, "linux.gidMappings")
            c2p, p2c = os.pipe(), os.pipe()
            with _sys.NonDumpable():
                first = os.fork()
            if first == 0:
                os.close(errr)
                os.close(c2p[0])
                os.close(p2c[1])
                _user_stage(spec, state, procs_files, errw, stdio, launch, parent_fd,
                            (p2c[0], c2p[1]))
                os._exit(125)  # not reached
            os.close(c2p[1])
            os.close(p2c[0])
            c2p, p2c = (c2p[0], -1), (-1, p2c[1])
            pid1 = 0
            while True:
                msg = os.read(c2p[0], 64)
                if not msg:
                    break
                if msg == b"U":
                    try:
                        userns.write_maps(first, uid_maps, gid_maps)
                        reply = b"K"
                    except ContainerError as e:
                        reply = str(e).encode()
                    os.write(p2c[1], reply)
                elif msg.startswith(b"P"):
                    pid1 = int(msg[1:])
            if not pid1:
                return first, errr
            procs.waitpid(first)
            return pid1, errr
        except BaseException:
            if first > 0:
                try:
                    os.kill(first, signal.SIGKILL)
                    procs.waitpid(first)
                except OSError:
                    pass
            os.close(errr)
            raise
        finally:
            for fd in (*c2p, *p2c, parent_fd):
                if fd >= 0:
                    os.close(fd)
            os.close(errw)

    def _spawn(self, stdio: Optional[Tuple[int, int, int]] = None) -> int:
        """Fork the container's PID 1 and wait until the workload is exec'd. Returns its pid."""
        from pycontain.runtime import process as _process

        try:
            pid, errr = self._fork(stdio)
        finally:
            if _process._GATE[0] >= 0:  # PID 1's ends
                os.close(_process._GATE[0])
                os.close(_process._GATE[1])
                _process._GATE[:] = [-1, -1, -1, -1]
        net_error = self._user_network(pid)
        # Recorded before the exec completes, so that a caller killed right now still leaves a
        # truthful state behind (the pid dies if setup fails; ps then shows "stopped").
        self._state = self.dir.update(status="running", pid=pid, pid_start=proc_start_time(pid),
                                      started=time.time(), monitor_pid=os.getpid(),
                                      monitor_start=procs.self_start_time())
        err = procs.read_pipe(errr)
        if err or net_error:
            procs.waitpid(pid)
            self._stop_user_network()
            raise net_error or procs.parse_child_error(err)
        return pid

    def _user_network(self, pid: int) -> Optional[ContainerError]:
        """slirp4netns for a rootless container, started now that PID 1 exists (it waits at
        the gate until this is done); the error, if any, once the gate is closed."""
        (go_w, here_r), self._gate = getattr(self, "_gate", (-1, -1)), (-1, -1)
        if go_w < 0:
            return None
        from pycontain.net.slirp import Slirp

        error: Optional[ContainerError] = None
        try:
            if os.read(here_r, 1) == b"H":  # else PID 1 failed: its error is on the pipe
                s = self.state(refresh=False)
                self._slirp = Slirp(self.dir.file("slirp.sock"), list(s["slirp"]["ports"]))
                self._slirp.start(pid)
                os.write(go_w, b"1")
        except ContainerError as e:
            error = e
        finally:
            os.close(go_w)
            os.close(here_r)
        return error

    def _stop_user_network(self) -> None:
        slirp, self._slirp = getattr(self, "_slirp", None), None
        if slirp is not None:
            from pycontain.net.slirp import stop_quietly

            stop_quietly(slirp)

    def spawn_created(self, launch: Launch,
                      runtime_hooks: Optional[Callable[[int], None]] = None) -> int:
        """The OCI ``create`` step: fork the container process and return its pid once it is
        completely set up and blocked on ``launch.fifo`` (see :class:`Launch`).

        ``runtime_hooks(pid)`` runs (in this process) when the child asks for the prestart and
        createRuntime hooks; a ContainerError it raises fails the creation. On any failure the
        child is reaped and ContainerError raised; the caller cleans up.
        """
        import select

        sync_c2p = sync_p2c = (-1, -1)
        if runtime_hooks is not None:
            sync_c2p = os.pipe()
            sync_p2c = os.pipe()
            launch.sync = (sync_p2c[0], sync_c2p[1])
        try:
            pid, errr = self._fork(None, launch)
        finally:
            for fd in (sync_c2p[1], sync_p2c[0]):
                if fd >= 0:
                    os.close(fd)
        self._state = self.dir.update(pid=pid, pid_start=proc_start_time(pid))
        err = b""
        watch = [errr] + ([sync_c2p[0]] if sync_c2p[0] >= 0 else [])
        try:
            while errr in watch:
                ready, _, _ = select.select(watch, [], [])
                if sync_c2p[0] in ready:
                    if os.read(sync_c2p[0], 1) == b"H" and runtime_hooks is not None:
                        try:
                            runtime_hooks(pid)
                            reply = b"K"
                        except ContainerError as e:
                            reply = str(e).encode() or b"runtime hooks failed"
                        os.write(sync_p2c[1], reply)
                    else:
                        watch.remove(sync_c2p[0])
                if errr in ready:
                    chunk = os.read(errr, 65536)
                    if chunk:
                        err += chunk
                    else:
                        watch.remove(errr)
        finally:
            for fd in (errr, sync_c2p[0], sync_p2c[1]):
                if fd >= 0:
                    os.close(fd)
        if not err:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                err = f"125\tcontainer process died during setup (status {status})".encode()
        if err:
            procs.waitpid(pid)
            raise procs.parse_child_error(err)
        return pid

    def run(self, stdin: StdioArg = None, stdout: StdioArg = None, stderr: StdioArg = None,
            capture_output: bool = False, timeout: Optional[float] = None,
            forward_signals: bool = False) -> Result:
        """Run in the foreground and wait; removes the container if it was created with
        ``remove=True``. Setup failures raise ContainerError and leave nothing behind."""
        out_fd = err_fd = -1
        fds = [procs.fileno(stdin, 0), procs.fileno(stdout, 1), procs.fileno(stderr, 2)]
        if capture_output:
            out_fd = os.memfd_create("stdout", os.MFD_CLOEXEC)
            err_fd = os.memfd_create("stderr", os.MFD_CLOEXEC)
            fds[1], fds[2] = out_fd, err_fd
        stdio = (fds[0], fds[1], fds[2])
        old_handlers: Dict[int, Any] = {}
        try:
            try:
                pid = self._spawn(stdio if stdio != (0, 1, 2) else None)
            except ContainerError:
                self._fail()
                raise
            if forward_signals:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                            signal.SIGUSR1, signal.SIGUSR2):
                    old_handlers[sig] = signal.signal(sig, procs.forwarder(pid))
            status = self._wait_child(pid, timeout)
            result = self._finish(status)
            if capture_output:
                result.stdout = procs.read_from_start(out_fd)
                result.stderr = procs.read_from_start(err_fd)
            return result
        finally:
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            for fd in (out_fd, err_fd):
                if fd >= 0:
                    os.close(fd)

    def _wait_child(self, pid: int, timeout: Optional[float]) -> int:
        if timeout is None:
            return procs.waitpid(pid)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if time.monotonic() > deadline:
                try:
                    self.cgroup().kill_all()
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
                return procs.waitpid(pid)
            time.sleep(0.005)

    def start(self) -> None:
        """Start detached under a supervisor process; returns once the workload is exec'd."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                os.close(r)
                os.setsid()
                if os.fork() == 0:
                    self._supervise(w)
            except BaseException as e:
                try:
                    os.write(w, f"125\tsupervisor failed: {e}".encode())
                except OSError:
                    code = 1
            os._exit(code)
        os.close(w)
        procs.waitpid(pid)
        msg = procs.read_pipe(r)
        if msg != b"OK":
            self._fail()
            if not msg:
                raise ContainerError("supervisor died during container start")
            raise procs.parse_child_error(msg)

    def _supervise(self, ready: int) -> None:  # pragma: no cover - runs in the supervisor
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            log = os.open(self.dir.file("container.log"),
                          os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.dup2(ready, 3)
            ready = 3
            os.set_inheritable(3, False)
            _sys.close_from(4)
            try:
                pid = self._spawn()
            except ContainerError as e:
                os.write(ready, f"{e.exit_code}\t{e}".encode())
                os._exit(0)
            os.write(ready, b"OK")
            os.close(ready)
            status = procs.waitpid(pid)
            self._finish(status)
        except BaseException as e:
            try:
                os.write(ready, f"125\tsupervisor failed: {e}".encode())
            except OSError:
                pass
        os._exit(0)

    def _last_state(self) -> Tuple[Dict[str, Any], Optional[cgroups.Cgroup]]:
        """The state on disk (else the last one read) and its cgroup, for teardown."""
        s = self._state or {}
        try:
            s = self.dir.read()
        except StateError:
            pass
        return s, cleanup.cgroup_of(s)

    def _fail(self) -> None:
        """Creation or start failed: remove every trace."""
        s, cg = self._last_state()
        cleanup.destroy(self.dir, cg, s.get("container_dir"))

    def _finish(self, status: Optional[int], forced_code: Optional[int] = None) -> Result:
        """Record how the container ended, drop its cgroup, auto-remove if asked."""
        code = procs.exit_code(status) if status is not None else forced_code
        s, cg = self._last_state()
        stats: Dict[str, Any] = {}
        oom = False
        if cg is not None:
            live = any(os.path.isdir(d) for d in cg.dirs()[:1])
            stats = cg.stats() if live else dict(s.get("stats") or {})
            oom = bool(stats.get("oom_kills")) or bool(s.get("oom_killed"))
            try:
                cg.kill_all()
                cg.remove()
            except (cgroups.CgroupError, OSError):
                pass
        self._stop_user_network()
        if s.get("network"):  # the addresses go back as soon as it stops (docker's way)
            cleanup.detach_networks(self.dir, s)
        allocator = self._collect_allocator()
        if allocator is not None:
            stats["allocator"] = allocator
        result = Result(exit_code=code if code is not None else -1, oom_killed=oom, stats=stats,
                        allocator=allocator, name=self.name, id=str(s.get("id", "")))
        if s.get("auto_remove"):
            cleanup.destroy(self.dir, None, s.get("container_dir"))
        else:
            self._state = self.dir.update(status="stopped", exit_code=code, oom_killed=oom,
                                          finished=time.time(), stats=stats,
                                          allocator=allocator, cgroup_removed=True)
        return result

    def _collect_allocator(self) -> Optional[Dict[str, Any]]:
        d = self.dir.file("pyalloc")
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(".json"))
        except OSError:
            return None
        per: Dict[str, Any] = {}
        totals: Dict[str, float] = {}
        for n in names:
            try:
                with open(os.path.join(d, n)) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                continue
            per[n] = data
            if isinstance(data, dict):
                for k, v in data.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        totals[k] = totals.get(k, 0) + v
        s = self._state or {}
        return {"policy": s.get("preload"), "processes": len(per), "totals": totals,
                "files": per}

    # -- operations on a running container ---------------------------------------------------
    def _require_running(self) -> Dict[str, Any]:
        s = self.state()
        if not (s.get("status") in ("created", "running") and alive(s.get("pid"),
                                                                    s.get("pid_start"))):
            raise ContainerError(f"container {self.name} is not running")
        return s

    def kill(self, sig: Union[int, str] = signal.SIGKILL) -> None:
        """Send a signal to the container's main process; a paused container is resumed so
        that the signal is delivered (as docker does)."""
        signum = parse_signal(sig)
        s = self._require_running()
        procs.signal_pid(int(s["pid"]), s.get("pid_start"), signum)
        self._thaw_quietly(s)

    def _thaw_quietly(self, s: Dict[str, Any]) -> None:
        if s.get("cgroup"):
            cgroups.from_dict(s["cgroup"])._thaw_after_signal()

    # -- pause and live limits -----------------------------------------------------------------
    def pause(self) -> None:
        """Freeze every process of the container (cgroup freezer) until resume()."""
        s = self._require_running()
        cg = cgroups.from_dict(s["cgroup"])
        try:
            if not cg.frozen():
                cg.freeze()
        except cgroups.CgroupError as e:
            raise ContainerError(f"cannot pause container {self.name}: {e}") from None

    def resume(self) -> None:
        s = self._require_running()
        cg = cgroups.from_dict(s["cgroup"])
        try:
            if not cg.frozen():
                raise ContainerError(f"container {self.name} is not paused")
            cg.thaw()
        except cgroups.CgroupError as e:
            raise ContainerError(f"cannot resume container {self.name}: {e}") from None

    def update(self, memory: Union[int, str, None] = None, pids: Optional[int] = None,
               cpus: Union[float, str, None] = None, *,
               memory_swap: Union[int, str, None] = None, cpu_shares: Optional[int] = None,
               cpuset_cpus: Optional[str] = None, cpuset_mems: Optional[str] = None) -> None:
        """Change the limits of a running container, as ``docker update`` does: memory and
        memory_swap take bytes or a size ("256M"; -1 for unlimited), pids a count (-1 for
        unlimited), cpus a number of CPUs (0 for unlimited). Values not given are kept;
        the new limits show in inspect()."""
        s = self._require_running()
        lim = cgroups.Limits(
            memory=None if memory is None else size_or_unlimited(memory, "memory", memory=True),
            memory_swap=None if memory_swap is None else size_or_unlimited(memory_swap,
                                                                            "memory_swap"),
            pids=None if pids is None else int_arg(pids, "pids"),
            cpu_shares=None if cpu_shares is None else int_arg(cpu_shares, "cpu_shares"),
            cpuset_cpus=cpuset_cpus, cpuset_mems=cpuset_mems)
        if cpus is not None:
            n = cpus_arg(cpus)
            lim.cpu_quota, lim.cpu_period = (int(n * 100000), 100000) if n > 0 else (-1, None)
        if lim.empty():
            raise ContainerError("update: nothing to change (give memory, pids or cpus)")
        try:
            cgroups.from_dict(s["cgroup"]).update(lim)
        except cgroups.CgroupError as e:
            raise ContainerError(f"cannot update container {self.name}: {e}") from None
        with self.dir.lock():
            cur = self.dir.read()
            limits = dict(cur.get("limits") or {})
            if lim.memory is not None:
                limits["memory"] = lim.memory if lim.memory > 0 else None
            if lim.memory_swap is not None:
                limits["memory_swap"] = lim.memory_swap
            if lim.pids is not None:
                limits["pids"] = lim.pids if lim.pids > 0 else None
            if cpus is not None:
                limits["cpus"] = cpus_arg(cpus) or None
            cur["limits"] = limits
            self.dir.write(cur)
        self._state = None

    def wait(self, timeout: Optional[float] = None) -> Result:
        """Wait until the container has stopped and its exit has been recorded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            s = self.state()
            if s.get("status") == "stopped":
                return self._result(s)
            if not alive(s.get("pid"), s.get("pid_start")) and not alive(
                    s.get("monitor_pid"), s.get("monitor_start")):
                self._reap_orphan(None)
                return self._result(self.state())
            if deadline is not None and time.monotonic() > deadline:
                raise ContainerError(f"timed out waiting for container {self.name}")
            time.sleep(0.01)

    def _result(self, s: Dict[str, Any]) -> Result:
        code = s.get("exit_code")
        return Result(exit_code=-1 if code is None else int(code),
                      oom_killed=bool(s.get("oom_killed")), stats=dict(s.get("stats") or {}),
                      allocator=s.get("allocator"), name=self.name, id=str(s.get("id", "")))

    def _reap_orphan(self, code: Optional[int]) -> None:
        """The container is dead and nobody is watching it: record what we know, drop cgroup."""
        with self.dir.lock():
            s = self.dir.read()
            if s.get("status") == "stopped":
                return
        self._state = s
        self._finish(None, forced_code=code)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL of the whole cgroup after ``timeout`` seconds."""
        s = self.state()
        if self._live_status(s) != "running":
            if s.get("status") != "stopped":
                self._reap_orphan(None)
            return
        pid, start = int(s["pid"]), s.get("pid_start")
        procs.signal_pid(pid, start, signal.SIGTERM)
        self._thaw_quietly(s)
        forced = not procs.wait_dead(pid, start, timeout)
        if forced:
            self.cgroup().kill_all()
            procs.signal_pid(pid, start, signal.SIGKILL)
            procs.wait_dead(pid, start, 10.0)
        self._await_record(137 if forced else None)

    def _await_record(self, code: Optional[int]) -> None:
        """Give the monitor a moment to record the exit; do it ourselves if it is gone."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            s = self.state()
            if s.get("status") == "stopped":
                return
            if not alive(s.get("monitor_pid"), s.get("monitor_start")):
                break
            time.sleep(0.005)
        self._reap_orphan(code)

    def remove(self, force: bool = False) -> None:
        s = self.state()
        status = self._live_status(s)
        if status == "running" and not force:
            raise ContainerError(f"container {self.name} is running: stop it first or use rm -f")
        cg = cleanup.cgroup_of(s)
        if status == "running" or s.get("status") in ("creating", "created", "running"):
            cleanup.kill_now(s, cg)
            # Let a live monitor record the exit first, so that it does not race our removal.
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and alive(s.get("monitor_pid"),
                                                         s.get("monitor_start")):
                try:
                    if self.dir.read().get("status") == "stopped":
                        break
                except StateError:
                    return
                time.sleep(0.005)
        cleanup.destroy(self.dir, cg, s.get("container_dir"))

    def exec(self, command: Sequence[str], env: Union[Sequence[str], Dict[str, str], None] = None,
             workdir: Optional[str] = None, stdin: StdioArg = None, stdout: StdioArg = None,
             stderr: StdioArg = None, capture_output: bool = False, *,
             process: Optional[Process] = None, console: int = -1, detach: bool = False,
             preserve_fds: int = 0) -> Result:
        """Run ``command`` inside the running container (every namespace, cgroup, root).

        ``process`` (an OCI process, as ``runc exec --process``) replaces the container's own
        process settings (args, env, cwd, user, capabilities, rlimits, noNewPrivileges,
        terminal); ``console`` is a connected unix socket that receives the pty master when
        ``process.terminal`` is set; with ``detach`` the call returns as soon as the command is
        exec'd (``Result.exit_code`` 0, ``Result.pid`` its pid) and never waits for it.
        """
        from pycontain.runtime.exec import exec_in

        return exec_in(self, command, env, workdir, (stdin, stdout, stderr), capture_output,
                       process=process, console=console, detach=detach,
                       preserve_fds=preserve_fds)

    # -- reporting ---------------------------------------------------------------------------
    def logs(self) -> bytes:
        try:
            with open(self.dir.file("container.log"), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def inspect(self) -> Dict[str, Any]:
        s = self.state()
        status = self._paused_status(s, self._live_status(s))
        stats = dict(s.get("stats") or {})
        if status in ("running", "created", "paused") and s.get("cgroup"):
            try:
                stats = self.cgroup().stats()
            except OSError:
                pass
        limits = s.get("limits") or {}
        return {
            "id": s.get("id"),
            "name": self.name,
            "state": status,
            "pid": s.get("pid") if status in ("running", "paused") else 0,
            "paused": status == "paused",
            "exit_code": s.get("exit_code"),
            "oom_killed": bool(s.get("oom_killed") or stats.get("oom_kills")),
            "created": s.get("created"),
            "started": s.get("started"),
            "finished": s.get("finished"),
            "image": s.get("image"),
            "rootfs": s.get("rootfs"),
            "command": s.get("command"),
            "init": s.get("init"),
            "detached": s.get("detached"),
            "auto_remove": s.get("auto_remove"),
            "net": s.get("net"),
            "network": s.get("network"),
            "slirp": s.get("slirp"),
            "volumes": s.get("volumes"),
            "limits": limits,
            "memory": {"current": stats.get("memory_current"), "peak": stats.get("memory_peak"),
                       "limit": limits.get("memory")},
            "stats": stats,
            "preload": s.get("preload"),
            "allocator": s.get("allocator"),
            "cgroup": s.get("cgroup"),
            "paths": {"state": self.dir.path, "log": self.dir.file("container.log"),
                      "container_dir": s.get("container_dir")},
        }

