"""The container part of `make demo`: a container with limits and the allocator inside, an
out-of-memory kill, pause/unpause and a live update, a bridge network with a published port
and a name (inside a network namespace of its own), an image imported and run, the OCI
command line's lifecycle and a user namespace, and rootless pycontain with the sandbox recipe.
Private state and storage roots in temporary directories; nothing is left."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any, Callable, Dict, Optional

WORKLOAD = r"""
import os, socket
d = {i: str(i) * 8 for i in range(200000)}
print(f"hostname={socket.gethostname()} pid={os.getpid()} "
      f"processes={len([p for p in os.listdir('/proc') if p.isdigit()])} dict={len(d)}")
"""
HOG = "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n"
TICKER = ("i=0; while true; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; "
          "sleep 0.02; done")


def _allocator_summary(alloc: Optional[Dict[str, Any]]) -> str:
    if not alloc:
        return "no allocator statistics"
    totals = alloc.get("totals") or {}
    keys = [k for k in ("mallocs", "frees", "reallocs", "requests", "bytes_requested",
                        "peak_live_bytes", "peak_mapped_bytes") if k in totals]
    keys = keys or sorted(totals)[:6]
    parts = [f"{k}={int(totals[k]):,}" for k in keys]
    return f"policy={alloc.get('policy')} processes={alloc.get('processes')} " + " ".join(parts)


def run(section: Callable[[str], None]) -> Optional[str]:
    """Prints the section; returns a reason string instead when it cannot run here."""
    if os.geteuid() != 0:
        return "containers need root (namespaces, mounts, cgroups)"
    import pycontain

    preload: Optional[str] = "best"
    try:
        from pyalloc import preload as pl

        if not os.path.isfile(str(pl.library_path())):
            preload = None
    except Exception:
        preload = None

    section("3. Containers: limits and the allocator inside, pause and update, a network "
            "with a published port, an image pushed to and pulled from a registry, the OCI "
            "command line, rootless")
    with tempfile.TemporaryDirectory(prefix="pycontain-demo-") as tmp:
        roots = {"root": os.path.join(tmp, "state"), "storage": os.path.join(tmp, "storage")}
        opts: Dict[str, Any] = {"memory": "64M", "pids": 64, "cpus": 0.5, "hostname": "demo"}
        if preload:
            opts["preload"] = preload
        flags = " ".join(f"--{k} {v}" for k, v in opts.items())
        print(f"$ pycontain run --rm {flags} -- python3 -c <build a 200k-entry dict>")
        res = pycontain.run(["python3", "-c", WORKLOAD], capture_output=True, **roots, **opts)
        print("  " + (res.stdout or b"").decode().strip())
        stats = res.stats
        print(f"  exit code {res.exit_code}; cgroup memory peak "
              f"{stats.get('memory_peak', 0) / 2**20:.1f} MiB of {opts['memory']}; "
              f"cpu {stats.get('cpu_usage_usec', 0) / 1000:.0f} ms")
        if preload:
            print(f"  allocator inside: {_allocator_summary(res.allocator)}")
        else:
            print("  (libpyalloc.so is not built: ran without --preload)")
        print()
        print("$ pycontain run --rm --memory 32M -- python3 -c <allocate until killed>")
        hog = pycontain.run(["python3", "-c", HOG], memory="32M", capture_output=True, **roots)
        print(f"  exit code {hog.exit_code}, oom_killed={hog.oom_killed} "
              "(the kernel's OOM killer stopped it at the cgroup limit)")
        _pause_update_part(pycontain, roots)
        _network_part(tmp, roots)
        busybox = shutil.which("busybox")
        if busybox:
            rootfs = _busybox_rootfs(tmp, busybox)
            _image_part(pycontain, tmp, rootfs, roots)
            _oci_part(tmp, rootfs)
            _oci_userns_part(tmp, rootfs)
        else:
            print("\n(busybox-static is not installed: image and OCI parts skipped)")
    _rootless_part()
    return None


ROOTLESS_USER = "nobody"
SANDBOX_INPUTS = [("print(6 * 7)", "prints"),
                  ("open('/etc/passwd', 'a')", "writes to the root"),
                  ("import socket; socket.create_connection(('10.0.0.1', 80), 1)",
                   "opens a connection"),
                  ("while True: pass", "spins forever")]


def _rootless_part() -> None:
    """pycontain as a normal user (``nobody``: no subordinate ids, so a single-id map), and the
    sandbox recipe of examples/sandbox.py. Debian's python3 runs it (the default interpreter
    may live where other users cannot read), on a world-readable copy of the package."""
    import pwd

    print()
    py = "/usr/bin/python3"
    try:
        pw = pwd.getpwnam(ROOTLESS_USER)
    except KeyError:
        print(f"(no user {ROOTLESS_USER!r}: the rootless part is skipped)")
        return
    if subprocess.run([py, "-c", "import _cffi_backend"], capture_output=True).returncode:
        print(f"({py} with python3-cffi-backend is needed for the rootless part: skipped)")
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = tempfile.mkdtemp(prefix="pycontain-demo-rootless-")
    try:
        os.chmod(base, 0o755)
        shutil.copytree(os.path.join(here, "pycontain"), os.path.join(base, "pycontain"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        home = os.path.join(base, "home")
        os.mkdir(home, 0o700)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        env = {"HOME": home, "PATH": "/usr/bin:/bin", "PYTHONPATH": base,
               "PYCONTAIN_ROOT": os.path.join(home, "state"), "PYCONTAIN_SUBIDS": "0",
               "PYTHONDONTWRITEBYTECODE": "1"}

        def as_user(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
            return subprocess.run([py, *args], input=stdin, capture_output=True, env=env,
                                  user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], cwd=home,
                                  timeout=60)

        print(f"$ sudo -u {ROOTLESS_USER} pycontain run --rm -- sh -c 'id -u; cat "
              "/proc/self/uid_map'")
        r = as_user("-m", "pycontain", "run", "--rm", "--", "sh", "-c",
                    "id -u; cat /proc/self/uid_map")
        out = r.stdout.decode().split()
        print(f"  root inside (uid {out[0] if out else '?'}), uid {pw.pw_uid} outside: map "
              f"{' '.join(out[1:])}" if r.returncode == 0 else
              f"  failed: {r.stderr.decode().strip()}")
        with open(os.path.join(here, "examples", "sandbox.py")) as f:
            recipe = f.read()
        print(f"$ sudo -u {ROOTLESS_USER} python3 examples/sandbox.py < untrusted.py   "
              "# no network, read-only root, 256M, a time limit (2 s here)")
        for code, what in SANDBOX_INPUTS:
            r = as_user("-c", recipe.replace("seconds: float = 5", "seconds: float = 2"),
                        stdin=code.encode())
            errs = r.stderr.decode().strip().splitlines()
            tail = r.stdout.decode().strip() or (errs[-1] if errs else "") or (
                "killed at the time limit" if r.returncode == 137 else "")
            print(f"  code that {what}: exit {r.returncode}  {tail[:70]}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


FETCH = ("import sys, time, urllib.request\nfor _ in range(100):\n    try:\n        r = "
         "urllib.request.urlopen(sys.argv[1], timeout=1); print(r.status, len(r.read())); "
         "break\n    except OSError:\n        time.sleep(0.05)")


def _network_part(tmp: str, roots: Dict[str, str]) -> None:
    """A bridge network, a published port and a name, inside a network namespace made to play
    the host (so nothing touches this machine's interfaces, and it runs anywhere)."""
    import shutil as _shutil

    print()
    if not os.path.exists("/usr/lib/cni/bridge") or not _shutil.which("nsenter"):
        print("(the CNI plugins or nsenter are missing: the network part is skipped)")
        return
    from pycontain.net import netns

    ns = os.path.join(tmp, "demo-host-netns")
    netns.create(ns)
    env = dict(os.environ, PYCONTAIN_ROOT=roots["root"], PYCONTAIN_STORAGE=roots["storage"])

    def pc(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["nsenter", f"--net={ns}", *args], env=env, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=60)

    py = [sys.executable, "-m", "pycontain"]
    try:
        pc("ip", "link", "set", "lo", "up")
        print("(inside a network namespace playing the host)")
        print("$ pycontain network create demo-net --subnet 10.123.0.0/24")
        pc(*py, "network", "create", "demo-net", "--subnet", "10.123.0.0/24")
        print("$ pycontain run -d --name web --network demo-net -p 127.0.0.1:8080:80 -- "
              "python3 -m http.server 80")
        pc(*py, "run", "-d", "--name", "web", "--network", "demo-net", "-p",
           "127.0.0.1:8080:80", "--", "python3", "-m", "http.server", "80")
        r = pc(sys.executable, "-c", FETCH, "http://127.0.0.1:8080/")
        print(f"$ curl http://127.0.0.1:8080/   -> {r.stdout.decode().strip() or 'failed'} "
              "(status, bytes) from the container")
        r = pc(*py, "run", "--rm", "--network", "demo-net", "--", "python3", "-c", FETCH,
               "http://web/")
        print(f"$ pycontain run --rm --network demo-net -- <fetch http://web/>   -> "
              f"{r.stdout.decode().strip() or r.stderr.decode().strip()}")
    finally:
        pc(*py, "rm", "-f", "web")
        pc(*py, "network", "rm", "demo-net")
        netns.remove(ns)


def _pause_update_part(pycontain: Any, roots: Dict[str, str]) -> None:
    print()
    print("$ pycontain run -d --name ticker --memory 64M -- sh -c <count, 50 times a second>")
    c = pycontain.start(["sh", "-c", TICKER], name="ticker", memory="64M", **roots)
    try:
        time.sleep(0.3)
        c.pause()
        counter = os.path.join(c.inspect()["paths"]["container_dir"], "upper", "tmp", "n")
        before = _read_int(counter)
        time.sleep(0.3)
        print(f"$ pycontain pause ticker   -> {c.status}; counter {before} -> "
              f"{_read_int(counter)} after 0.3 s")
        c.resume()
        time.sleep(0.3)
        print(f"$ pycontain unpause ticker -> {c.status}; counter now {_read_int(counter)}")
        c.update(memory="128M", pids=32)
        lim = c.inspect()["limits"]
        print(f"$ pycontain update --memory 128M --pids 32 ticker -> limits now "
              f"{lim['memory'] / 2**20:.0f} MiB, {lim['pids']} processes")
    finally:
        c.remove(force=True)


def _read_int(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _busybox_rootfs(tmp: str, busybox: str) -> str:
    rootfs = os.path.join(tmp, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    for d in ("proc", "dev", "sys", "tmp", "etc"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy2(busybox, os.path.join(rootfs, "bin", "busybox"))
    for applet in ("sh", "ls", "cat", "echo", "hostname", "wc", "true", "ps"):
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    with open(os.path.join(rootfs, "etc", "motd"), "w") as f:
        f.write("hello from an imported image\n")
    return rootfs


def _image_part(pycontain: Any, tmp: str, rootfs: str, roots: Dict[str, str]) -> None:
    from pycontain.image.store import ImageStore

    tar = os.path.join(tmp, "busybox-rootfs.tar")
    with tarfile.open(tar, "w") as t:
        t.add(rootfs, arcname=".")
    print()
    print("$ pycontain image import busybox-rootfs.tar --name demo/busybox:1")
    store = ImageStore(roots["storage"], root=roots["root"])
    img = store.import_image(tar, name="demo/busybox:1")
    print(f"  {img.reference}: {len(img.layers)} layer, id {img.id[:19]}, {img.size:,} bytes")
    print("$ pycontain run --rm --image demo/busybox:1 -- sh -c 'cat /etc/motd; ls /bin | wc -l'")
    res = pycontain.run(["sh", "-c", "cat /etc/motd; ls /bin | wc -l"], image="demo/busybox:1",
                        capture_output=True, **roots)
    out = (res.stdout or b"").decode().split()
    print(f"  {' '.join(out[:-1])} / {out[-1] if out else '?'} programs in /bin; "
          f"exit code {res.exit_code}")
    try:
        _registry_part(pycontain, tmp, roots, store)
    finally:
        store.remove("demo/busybox:1")


def _registry_part(pycontain: Any, tmp: str, roots: Dict[str, str], store: Any) -> None:
    """Push to and pull from a registry this demo starts on 127.0.0.1 (Debian's
    docker-registry, plain HTTP, storage in the demo's temp dir)."""
    import socket

    registry = shutil.which("docker-registry")
    print()
    if registry is None:
        print("(docker-registry is not installed: the registry part is skipped)")
        return
    from pycontain.image.registry.client import Options
    from pycontain.image.registry.progress import Display
    from pycontain.image.registry.pull import pull
    from pycontain.image.registry.push import push

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = os.path.join(tmp, "registry.yml")
    with open(conf, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                f"    rootdirectory: {os.path.join(tmp, 'registry')}\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([registry, "serve", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    print("(the local registry did not start: the registry part is skipped)")
                    return
                time.sleep(0.05)
        ref = f"127.0.0.1:{port}/demo/busybox:1"
        opts = Options(tls_verify=False)
        display = Display(stream=sys.stdout, tty=False)
        print(f"(a registry started for this demo: docker-registry on 127.0.0.1:{port})")
        print(f"$ pycontain push --tls-verify=false demo/busybox:1 {ref}")
        digest = push(store, "demo/busybox:1", ref, opts, display=display)
        print(f"  {digest}")
        print(f"$ pycontain image rm demo/busybox:1; pycontain pull --tls-verify=false {ref}")
        store.remove("demo/busybox:1")
        img = pull(store, ref, opts, display=display)
        print(f"  {img.id}")
        print(f"$ pycontain run --rm --image {ref} -- cat /etc/motd")
        res = pycontain.run(["cat", "/etc/motd"], image=ref, capture_output=True, **roots)
        print("  " + (res.stdout or b"").decode().strip() + f"  (exit code {res.exit_code})")
        store.remove(ref)
        store.import_image(os.path.join(tmp, "busybox-rootfs.tar"), name="demo/busybox:1")
    finally:
        proc.terminate()
        proc.wait(10)


def _oci_userns_part(tmp: str, rootfs: str) -> None:
    """pycontain-oci with linux.uidMappings (podman's --uidmap): root inside is 100000."""
    # The root of the user namespace (100000) must reach the rootfs, as with runc: not under
    # this demo's private (0700) directory.
    outer = tempfile.mkdtemp(prefix="pycontain-demo-userns-")
    try:
        os.chmod(outer, 0o755)
        _oci_userns_run(tmp, rootfs, os.path.join(outer, "bundle"))
    finally:
        shutil.rmtree(outer, ignore_errors=True)


def _oci_userns_run(tmp: str, rootfs: str, bundle: str) -> None:
    root = os.path.join(bundle, "rootfs")
    shutil.copytree(rootfs, root, symlinks=True)
    for dirpath, dirs, files in os.walk(root):
        for n in [*dirs, *files]:
            os.lchown(os.path.join(dirpath, n), 100000, 100000)
    os.lchown(root, 100000, 100000)
    oci = [sys.executable, "-m", "pycontain.oci.cli", "--root", os.path.join(tmp, "oci")]
    subprocess.run([*oci, "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"].update(terminal=False, args=["sh", "-c", "cat /proc/self/uid_map"])
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = cfg["linux"]["gidMappings"] = [
        {"containerID": 0, "hostID": 100000, "size": 65536}]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    print("$ pycontain-oci run --bundle B demo-userns   # linux.uidMappings 0:100000:65536")
    r = subprocess.run([*oci, "run", "--bundle", bundle, "demo-userns"], capture_output=True,
                       stdin=subprocess.DEVNULL)
    print(f"  uid_map inside: {' '.join(r.stdout.decode().split())}; exit {r.returncode}"
          + (f" ({r.stderr.decode().strip()})" if r.returncode else ""))


def _oci_part(tmp: str, rootfs: str) -> None:
    """runc's command line, as podman or containerd drive it: create, start, state, delete."""
    bundle = os.path.join(tmp, "bundle")
    os.makedirs(bundle)
    oci = [sys.executable, "-m", "pycontain.oci.cli", "--root", os.path.join(tmp, "oci")]
    subprocess.run([*oci, "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["root"]["path"] = rootfs
    cfg["process"].update(terminal=False, args=["sh", "-c", "echo hello from pycontain-oci"])
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    print()
    print("$ pycontain-oci create --bundle B demo; pycontain-oci state demo; "
          "pycontain-oci start demo; ...")
    subprocess.run([*oci, "create", "--bundle", bundle, "demo"], check=True,
                   stdin=subprocess.DEVNULL)

    def status() -> str:
        state = subprocess.run([*oci, "state", "demo"], capture_output=True, check=True)
        return str(json.loads(state.stdout)["status"])

    before = status()
    subprocess.run([*oci, "start", "demo"], check=True)
    for _ in range(100):
        after = status()
        if after == "stopped":
            break
        time.sleep(0.02)
    subprocess.run([*oci, "delete", "demo"], check=True)
    print(f"  state after create: {before}; after start: {after}; deleted")
