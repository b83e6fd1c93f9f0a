"""Running a CNI network configuration list, as the CNI specification describes it: each
plugin gets its configuration (with the list's ``name`` and ``cniVersion``, the previous
plugin's result as ``prevResult``, and ``runtimeConfig`` for the capabilities it declares)
on stdin and CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME and CNI_PATH in its
environment. ADD runs the list in order and caches the final result; DEL runs it in reverse
with the cached result as ``prevResult`` and tolerates what is already gone; CHECK replays
the cached result. Errors are the plugin's ``{"code", "msg"}`` object, as one line."""

from __future__ import annotations

import json
import os
import subprocess

from pycontain.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

CNI_PATH = ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni")


class CniError(ContainerError):
    pass


def plugin_dirs() -> List[str]:
    env = os.environ.get("CNI_PATH")
    dirs = env.split(":") if env else list(CNI_PATH)
    return [d for d in dirs if os.path.isdir(d)]


def _find(kind: str) -> str:
    if "/" in kind or kind in ("", ".", ".."):
        raise CniError(f"invalid CNI plugin type {kind!r}")
    for d in plugin_dirs():
        p = os.path.join(d, kind)
        if os.access(p, os.X_OK):
            return p
    raise CniError(f"CNI plugin {kind!r} not found in {':'.join(CNI_PATH)} (Debian: apt-get "
                   "install containernetworking-plugins)")


def _invoke(conf: Dict[str, Any], plugin: Dict[str, Any], command: str, cid: str,
            netns: str, ifname: str, prev: Optional[Dict[str, Any]],
            runtime_config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    body = dict(plugin, cniVersion=conf["cniVersion"], name=conf["name"])
    if prev is not None:
        body["prevResult"] = prev
    caps = {k for k, v in (plugin.get("capabilities") or {}).items() if v}
    wanted = {k: v for k, v in runtime_config.items() if k in caps}
    if wanted:
        body["runtimeConfig"] = wanted
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
           "CNI_IFNAME": ifname, "CNI_PATH": ":".join(plugin_dirs()),
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    exe = _find(str(plugin.get("type", "")))
    proc = subprocess.run([exe], input=json.dumps(body).encode(), env=env,
                          capture_output=True, timeout=60, check=False)
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            msg = f"{err.get('msg', '')}{': ' + err['details'] if err.get('details') else ''}"
        except ValueError:
            msg = out or proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
        raise CniError(f"network {conf['name']}: CNI {plugin.get('type')} {command} failed: "
                       f"{msg}")
    if command != "ADD" or not out:
        return prev
    try:
        result = json.loads(out)
    except ValueError:
        raise CniError(f"network {conf['name']}: CNI {plugin.get('type')} returned no JSON "
                       "result") from None
    if not isinstance(result, dict):
        raise CniError(f"network {conf['name']}: CNI {plugin.get('type')}: bad result")
    return result


def add(conf: Dict[str, Any], cid: str, netns: str, ifname: str,
        runtime_config: Dict[str, Any], cache: str) -> Dict[str, Any]:
    """CNI ADD of the whole list; the result is cached at ``cache`` (for DEL and CHECK). A
    failure part-way undoes the plugins already run (DEL), as runtimes do."""
    prev: Optional[Dict[str, Any]] = None
    done: List[Dict[str, Any]] = []
    try:
        for plugin in conf["plugins"]:
            prev = _invoke(conf, plugin, "ADD", cid, netns, ifname, prev, runtime_config)
            done.append(plugin)
    except BaseException:
        for plugin in reversed(done):
            try:
                _invoke(conf, plugin, "DEL", cid, netns, ifname, prev, runtime_config)
            except CniError:
                pass
        raise
    result = prev or {}
    os.makedirs(os.path.dirname(cache), mode=0o700, exist_ok=True)
    tmp = cache + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"config": conf, "result": result, "runtimeConfig": runtime_config,
                   "netns": netns, "ifname": ifname}, f)
    os.replace(tmp, cache)
    return result


def delete(cid: str, cache: str, netns: str = "") -> List[str]:
    """CNI DEL from the cached ADD (reverse order); nothing if there is no cache. Returns the
    errors (DEL goes on past them: what can be released is)."""
    try:
        with open(cache) as f:
            saved = json.load(f)
    except FileNotFoundError:
        return []
    except ValueError:
        os.unlink(cache)
        return [f"{cache}: unreadable CNI cache removed"]
    conf = saved["config"]
    errors = []
    # The spec: DEL with an absent namespace must still release what it can (IPAM).
    ns = netns if netns and os.path.exists(netns) else saved.get("netns", "")
    if ns and not os.path.exists(ns):
        ns = ""
    for plugin in reversed(conf["plugins"]):
        try:
            _invoke(conf, plugin, "DEL", cid, ns, saved.get("ifname", "eth0"),
                    saved.get("result"), saved.get("runtimeConfig") or {})
        except (CniError, OSError, subprocess.SubprocessError) as e:
            errors.append(str(e))
    os.unlink(cache)
    return errors
