"""Networks: one CNI conflist per network under ``<storage>/networks/NAME.conflist``.

A network is a Linux bridge (the CNI ``bridge`` plugin; its name ``pyc-`` and 8 hex digits of
the network's name) with host-local addresses from its subnet, the gateway on the bridge, a
masquerade for traffic out of the subnet, and ``portmap`` for published ports. ``--internal``
networks have no gateway address, no default route and no masquerade: their containers reach
one another only. The default network ``pycontain`` (subnet $PYCONTAIN_DEFAULT_SUBNET, else
10.89.0.0/24) is made on first use; new networks without ``--subnet`` get the next free
10.89.N.0/24.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re

from pycontain.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

DEFAULT_NETWORK = "pycontain"
CNI_VERSION = "1.0.0"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


class NetworkError(ContainerError):
    pass


class Networks:
    def __init__(self, storage: str) -> None:
        self.dir = os.path.join(storage, "networks")
        self.ipam_dir = os.path.join(storage, "cni", "ipam")
        self.cache_dir = os.path.join(storage, "cni", "cache")

    def _path(self, name: str) -> str:
        if not _NAME.match(name or ""):
            raise NetworkError(f"invalid network name {name!r} (letters, digits, _ . -)")
        return os.path.join(self.dir, f"{name}.conflist")

    def names(self) -> List[str]:
        try:
            return sorted(n[: -len(".conflist")] for n in os.listdir(self.dir)
                          if n.endswith(".conflist"))
        except FileNotFoundError:
            return []

    def get(self, name: str) -> Dict[str, Any]:
        if name == DEFAULT_NETWORK and not os.path.exists(self._path(name)):
            return self.create(name, os.environ.get("PYCONTAIN_DEFAULT_SUBNET") or
                               "10.89.0.0/24", exist_ok=True)
        try:
            with open(self._path(name)) as f:
                conf = json.load(f)
        except FileNotFoundError:
            raise NetworkError(f"no such network: {name}") from None
        except ValueError as e:
            raise NetworkError(f"network {name}: unreadable conflist: {e}") from None
        return dict(conf)

    def subnets(self) -> List[ipaddress.IPv4Network]:
        out = []
        for n in self.names():
            try:
                out.append(ipaddress.ip_network(self.info(self.get(n))["subnet"]))
            except (NetworkError, KeyError, ValueError):
                continue
        return out

    def create(self, name: str, subnet: Optional[str] = None, gateway: Optional[str] = None,
               internal: bool = False, exist_ok: bool = False) -> Dict[str, Any]:
        path = self._path(name)
        used = self.subnets()
        if subnet is None:
            net = next(ipaddress.ip_network(f"10.89.{i}.0/24") for i in range(1, 256)
                       if not any(ipaddress.ip_network(f"10.89.{i}.0/24").overlaps(u)
                                  for u in used))
        else:
            try:
                net = ipaddress.ip_network(subnet, strict=True)
            except ValueError as e:
                raise NetworkError(f"invalid --subnet {subnet!r}: {e}") from None
            if net.version != 4 or net.prefixlen > 30:
                raise NetworkError(f"invalid --subnet {subnet}: an IPv4 network of /30 or "
                                   "more addresses")
            clash = next((u for u in used if u.overlaps(net)), None)
            if clash is not None:
                raise NetworkError(f"subnet {net} overlaps {clash}, used by another network")
        hosts = list(net.hosts())
        gw = ipaddress.ip_address(gateway) if gateway else hosts[0]
        if gw not in net:
            raise NetworkError(f"--gateway {gw} is not in {net}")
        rng: Dict[str, Any] = {"subnet": str(net)}
        ipam: Dict[str, Any] = {"type": "host-local", "ranges": [[rng]],
                                "dataDir": self.ipam_dir}
        bridge: Dict[str, Any] = {
            "type": "bridge", "bridge": "pyc-" + hashlib.sha1(name.encode()).hexdigest()[:8],
            "hairpinMode": True, "ipam": ipam}
        if internal:
            bridge.update(isGateway=False, ipMasq=False)
        else:
            rng["gateway"] = str(gw)
            ipam["routes"] = [{"dst": "0.0.0.0/0"}]
            bridge.update(isGateway=True, ipMasq=True)
        conf = {"cniVersion": CNI_VERSION, "name": name, "plugins": [
            bridge, {"type": "portmap", "capabilities": {"portMappings": True}}],
            "pycontain": {"internal": internal}}
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(conf, f, indent=2)
        try:
            os.link(tmp, path)  # fails if the name is taken
        except FileExistsError:
            if not exist_ok:
                raise NetworkError(f"network {name} already exists") from None
            with open(path) as f:
                conf = json.load(f)
        finally:
            os.unlink(tmp)
        return conf

    def remove(self, name: str, users: List[str]) -> None:
        path = self._path(name)
        if not os.path.exists(path):
            raise NetworkError(f"no such network: {name}")
        if users:
            raise NetworkError(f"network {name} is in use by {', '.join(sorted(users))}")
        try:
            bridge = self.info(self.get(name)).get("bridge")
        except (NetworkError, KeyError, IndexError):
            bridge = None
        os.unlink(path)
        if bridge:  # the bridge plugin leaves its bridge behind on DEL; podman removes it too
            import subprocess

            subprocess.run(["ip", "link", "del", "dev", str(bridge)], capture_output=True,
                           check=False)
        import shutil

        shutil.rmtree(os.path.join(self.ipam_dir, name), ignore_errors=True)

    @staticmethod
    def info(conf: Dict[str, Any]) -> Dict[str, Any]:
        bridge = conf["plugins"][0]
        rng = bridge["ipam"]["ranges"][0][0]
        return {"name": conf["name"], "driver": "bridge", "bridge": bridge.get("bridge"),
                "subnet": rng["subnet"], "gateway": rng.get("gateway"),
                "internal": bool((conf.get("pycontain") or {}).get("internal"))}
