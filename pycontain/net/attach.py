"""A container on its networks: the plan kept in its state record before anything is made
(so that a creator killed mid-way leaves what ``detach`` needs), the network namespace and
CNI ADD per network (interfaces eth0, eth1, ...; published ports on the first network), an
/etc/hosts that names the containers sharing a network, and the teardown."""

from __future__ import annotations

import ipaddress
import os
import re

from pycontain.errors import ContainerError
from pycontain.net import cni, netns
from pycontain.net.config import Networks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence

_PORT = re.compile(r"^(?:(?P<ip>\d+\.\d+\.\d+\.\d+):)?(?P<host>\d+):(?P<cont>\d+)"
                   r"(?:/(?P<proto>tcp|udp|sctp))?$")


def parse_port(spec: str) -> Dict[str, Any]:
    """``[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp]`` as a CNI portMappings entry."""
    m = _PORT.match(spec.strip())
    if not m:
        raise ContainerError(f"invalid -p {spec!r} (want [HOST_IP:]HOST_PORT:CONTAINER_PORT"
                             "[/tcp|udp])")
    host, cont = int(m["host"]), int(m["cont"])
    for p in (host, cont):
        if not 0 < p < 65536:
            raise ContainerError(f"invalid -p {spec!r}: port {p} out of range")
    entry: Dict[str, Any] = {"hostPort": host, "containerPort": cont,
                             "protocol": m["proto"] or "tcp"}
    if m["ip"]:
        try:
            ipaddress.ip_address(m["ip"])
        except ValueError:
            raise ContainerError(f"invalid -p {spec!r}: bad host address") from None
        entry["hostIP"] = m["ip"]
    return entry


def plan(nets: Networks, root: str, cid: str, names: Sequence[str], ports: Sequence[str],
         ip: Optional[str], aliases: Sequence[str]) -> Dict[str, Any]:
    """Check the request and return the record to keep in the container's state."""
    if os.geteuid() != 0:
        raise ContainerError("--network NAME needs root (rootless containers have --net none "
                             "or host for now)")
    if len(set(names)) != len(names):
        raise ContainerError("a network is named twice")
    confs = [nets.get(n) for n in names]
    if ip is not None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise ContainerError(f"invalid --ip {ip!r}") from None
        subnet = ipaddress.ip_network(Networks.info(confs[0])["subnet"])
        if addr not in subnet:
            raise ContainerError(f"--ip {ip} is not in network {names[0]} ({subnet})")
    mappings = [parse_port(p) for p in ports]
    seen = {(m["hostPort"], m["protocol"]) for m in mappings}
    if len(seen) != len(mappings):
        raise ContainerError("a host port is published twice")
    return {"netns": os.path.join(root, ".netns", cid),
            "networks": [{"name": n, "ifname": f"eth{i}",
                          "cache": os.path.join(nets.cache_dir, f"{n}-{cid}-eth{i}.json")}
                         for i, n in enumerate(names)],
            "ports": mappings, "ip": ip, "aliases": list(aliases), "addresses": {}}


def attach(nets: Networks, record: Dict[str, Any], cid: str) -> None:
    """Make the namespace and run CNI ADD for each network (addresses into ``record``)."""
    netns.create(record["netns"])
    for i, n in enumerate(record["networks"]):
        conf = nets.get(n["name"])
        rc: Dict[str, Any] = {}
        if i == 0 and record["ports"]:
            rc["portMappings"] = record["ports"]
        if i == 0 and record.get("ip"):
            prefix = ipaddress.ip_network(Networks.info(conf)["subnet"]).prefixlen
            rc["ips"] = [f"{record['ip']}/{prefix}"]
            conf["plugins"][0] = dict(conf["plugins"][0],
                                      capabilities={"ips": True},
                                      ipam=dict(conf["plugins"][0]["ipam"],
                                                capabilities={"ips": True}))
        result = cni.add(conf, cid, record["netns"], n["ifname"], rc, n["cache"])
        addrs = [a.get("address", "").split("/")[0] for a in result.get("ips") or []]
        record["addresses"][n["name"]] = addrs[0] if addrs else None


def detach(record: Optional[Dict[str, Any]], cid: str) -> List[str]:
    """CNI DEL for each network (reverse order), then the namespace: idempotent; returns
    the errors met (teardown goes on past them)."""
    if not record:
        return []
    errors: List[str] = []
    for n in reversed(record.get("networks") or []):
        errors += cni.delete(cid, n["cache"], record.get("netns", ""))
    if record.get("netns"):
        netns.remove(record["netns"])
    return errors


def hosts_file(record: Dict[str, Any], name: str, hostname: str,
               peers: List[Dict[str, Any]]) -> str:
    """/etc/hosts for a container: localhost, itself (name, hostname, aliases) and every
    running container that shares a network with it, by name and aliases."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    mine = record.get("addresses") or {}
    own = next((a for a in mine.values() if a), None)
    if own:
        names = " ".join(dict.fromkeys([hostname, name, *record.get("aliases", [])]))
        lines.append(f"{own}\t{names}")
    for p in peers:
        for net, addr in (p["network"].get("addresses") or {}).items():
            if net in mine and addr:
                names = " ".join(dict.fromkeys([p["name"], *p["network"].get("aliases", [])]))
                lines.append(f"{addr}\t{names}")
    return "\n".join(lines) + "\n"
