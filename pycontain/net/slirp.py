"""A user-mode network for rootless containers: slirp4netns (Debian's package), as rootless
podman uses it. The container keeps a network namespace of its own; slirp4netns, run by the
launcher as the user, gives it a tap0 (10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3) and NATs
its traffic through the host's sockets, with ``--disable-host-loopback`` so that the
container cannot reach services bound to the host's 127.0.0.1. Published ports are
slirp4netns host forwards (``add_hostfwd`` on its API socket): connections to the host port
are made anew from inside the namespace. slirp4netns ends when the launcher closes its exit
fd (the container has ended, or the launcher died)."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket

from pycontain.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

GUEST_ADDR = "10.0.2.100"


class Slirp:
    def __init__(self, sock_path: str, ports: List[Dict[str, Any]]) -> None:
        self.sock_path = sock_path
        self.ports = ports
        self.pid = 0
        self.exit_w = -1

    def start(self, target_pid: int, timeout: float = 10.0) -> None:
        exe = shutil.which("slirp4netns")
        if exe is None:
            raise ContainerError("--net slirp4netns: slirp4netns is not installed (Debian: "
                                 "apt-get install slirp4netns)")
        exit_r, self.exit_w = os.pipe()
        ready_r, ready_w = os.pipe()
        try:
            os.set_inheritable(exit_r, True)
            os.set_inheritable(ready_w, True)
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            log = os.open(self.sock_path + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND
                          | os.O_CLOEXEC, 0o600)
            try:
                self.pid = os.posix_spawn(
                    exe, [exe, "--configure", "--mtu=65520", "--disable-host-loopback",
                          "--api-socket", self.sock_path, "--exit-fd", str(exit_r),
                          "--ready-fd", str(ready_w), str(target_pid), "tap0"],
                    {"PATH": "/usr/bin:/bin"},
                    file_actions=[(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1),
                                  (os.POSIX_SPAWN_DUP2, log, 2)],
                    setsid=True)
            finally:
                os.close(null)
                os.close(log)
        finally:
            os.close(exit_r)
            os.close(ready_w)
        try:
            ready, _, _ = select.select([ready_r], [], [], timeout)
            if not ready or os.read(ready_r, 1) != b"1":
                raise ContainerError("slirp4netns did not configure the container's network: "
                                     f"{self._last_log_line()}")
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(ready_r)
        try:
            for p in self.ports:
                self._api({"execute": "add_hostfwd", "arguments": {
                    "proto": p.get("protocol", "tcp"), "host_addr": p.get("hostIP", "0.0.0.0"),
                    "host_port": int(p["hostPort"]), "guest_addr": GUEST_ADDR,
                    "guest_port": int(p["containerPort"])}})
        except BaseException:
            self.stop()
            raise

    def _last_log_line(self) -> str:
        try:
            with open(self.sock_path + ".log") as f:
                lines = [ln.strip() for ln in f if ln.strip() and "tapfd" not in ln]
        except OSError:
            lines = []
        tun = [ln for ln in lines if "/dev/net/tun" in ln]
        why = (tun or lines or ["no message"])[-1]
        if tun:
            why += " (a normal user needs /dev/net/tun, mode 0666 on most distributions)"
        return why

    def _api(self, request: Dict[str, Any]) -> Dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.sock_path)
            s.sendall(json.dumps(request).encode())
            s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply: Dict[str, Any] = json.loads(data or b"{}")
        if "error" in reply:
            args = request.get("arguments") or {}
            raise ContainerError(f"cannot publish {args.get('host_addr')}:"
                                 f"{args.get('host_port')}: "
                                 f"{(reply['error'] or {}).get('desc', reply['error'])}")
        return reply

    def stop(self) -> None:
        if self.exit_w >= 0:
            os.close(self.exit_w)
            self.exit_w = -1
        if self.pid:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0
        try:
            os.unlink(self.sock_path)
        except OSError:
            pass


def stop_quietly(s: Optional[Slirp]) -> None:
    if s is not None:
        s.stop()
