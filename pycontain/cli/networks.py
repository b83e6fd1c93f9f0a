"""``pycontain network create|ls|inspect|rm``: bridge networks on the CNI plugins
(pycontain/net)."""

from __future__ import annotations

import argparse
import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Sequence


def add_subparsers(sub: Any, parents: Sequence[argparse.ArgumentParser], cls: Any) -> None:
    n = sub.add_parser("network", parents=list(parents), help="manage networks")
    nsub = n.add_subparsers(dest="network_verb", metavar="VERB", parser_class=cls)
    nsub.required = True
    c = nsub.add_parser("create", parents=list(parents), help="create a bridge network")
    c.add_argument("--subnet", help="CIDR, e.g. 10.90.0.0/24 (default: the next free /24)")
    c.add_argument("--gateway", help="the bridge's address (default: the first)")
    c.add_argument("--internal", action="store_true", help="no route out, no masquerade")
    c.add_argument("name")
    ls = nsub.add_parser("ls", parents=list(parents), help="list networks")
    ls.add_argument("--json", action="store_true")
    i = nsub.add_parser("inspect", parents=list(parents), help="JSON of networks")
    i.add_argument("name", nargs="+")
    r = nsub.add_parser("rm", parents=list(parents), help="remove networks no container uses")
    r.add_argument("name", nargs="+")


def _users(rt: Any) -> Dict[str, List[str]]:
    """network name -> the containers (created or running) attached to it."""
    from pycontain.runtime.state import iter_states

    out: Dict[str, List[str]] = {}
    rt.reap()
    for s in iter_states(rt.root):
        net = s.get("network") or {}
        if s.get("status") in ("creating", "created", "running") and net:
            for n in net.get("networks") or []:
                out.setdefault(n["name"], []).append(str(s.get("name")))
    return out


def run(args: argparse.Namespace) -> int:
    from pycontain.net.config import Networks
    from pycontain.runtime.runtime import Runtime

    rt = Runtime(getattr(args, "root", None), getattr(args, "storage", None))
    nets = Networks(rt.storage)
    verb = args.network_verb
    if verb == "create":
        conf = nets.create(args.name, args.subnet, args.gateway, args.internal)
        print(conf["name"])
    elif verb == "ls":
        infos = [nets.info(nets.get(n)) for n in nets.names()]
        if args.json:
            print(json.dumps(infos, indent=2))
        else:
            print(f"{'NAME':20} {'SUBNET':18} {'GATEWAY':15} INTERNAL")
            for i in infos:
                print(f"{i['name']:20} {i['subnet']:18} {i['gateway'] or '-':15} "
                      f"{'yes' if i['internal'] else 'no'}")
    elif verb == "inspect":
        users = _users(rt)
        out = []
        for name in args.name:
            info = nets.info(nets.get(name))
            info["containers"] = sorted(users.get(name, []))
            out.append(info)
        print(json.dumps(out, indent=2))
    elif verb == "rm":
        users = _users(rt)
        for name in args.name:
            nets.remove(name, users.get(name, []))
            print(name)
    return 0
