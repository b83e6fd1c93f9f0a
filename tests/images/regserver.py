"""A real registry for the tests: Debian's docker-registry (the distribution project's server)
on 127.0.0.1 with a temporary storage dir, plain HTTP or TLS (a CA made here with openssl), with
no authentication, htpasswd basic auth, or bearer tokens from a token server (TokenServer)."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
OPENSSL = shutil.which("openssl")
HTPASSWD = shutil.which("htpasswd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: Optional[subprocess.Popen] = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on port {port}"
            assert proc is None or proc.poll() is None, "the server exited"
            time.sleep(0.05)


def _openssl(*args: str) -> None:
    subprocess.run([str(OPENSSL), *args], check=True, capture_output=True)


def make_ca(d: str) -> Tuple[str, str, str]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.crt, server.crt,
    server.key) in ``d``."""
    os.makedirs(d, exist_ok=True)
    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    key, csr, crt = (os.path.join(d, n) for n in ("server.key", "server.csr", "server.crt"))
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
             "-subj", "/CN=pycontain test CA")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", crt, "-days", "2", "-extfile", ext)
    return ca, crt, key


class Registry:
    """``with Registry(base, ...) as reg``: ``reg.address`` is ``127.0.0.1:PORT``,
    ``reg.storage`` the storage dir."""

    def __init__(self, base: str, tls: Optional[Tuple[str, str]] = None,
                 htpasswd: Optional[str] = None, token: Optional[Dict[str, str]] = None) -> None:
        self.base, self.tls, self.htpasswd, self.token = base, tls, htpasswd, token
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.storage = os.path.join(base, "storage")
        self.proc: Optional[subprocess.Popen] = None

    def config(self) -> str:
        out = ["version: 0.1", "log:", "  level: error", "storage:", "  filesystem:",
               f"    rootdirectory: {self.storage}", "  delete:", "    enabled: true",
               "http:", f"  addr: {self.address}"]
        if self.tls:
            out += ["  tls:", f"    certificate: {self.tls[0]}", f"    key: {self.tls[1]}"]
        if self.htpasswd:
            out += ["auth:", "  htpasswd:", "    realm: pycontain-test",
                    f"    path: {self.htpasswd}"]
        if self.token:
            out += ["auth:", "  token:"] + [f"    {k}: {v}" for k, v in self.token.items()]
        return "\n".join(out) + "\n"

    def __enter__(self) -> Registry:
        os.makedirs(self.base, exist_ok=True)
        conf = os.path.join(self.base, "config.yml")
        with open(conf, "w") as f:
            f.write(self.config())
        self.proc = subprocess.Popen([str(REGISTRY), "serve", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port, self.proc)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256",
                            digest[7:9], digest[7:], "data")

    def repo_has_layer(self, repo: str, digest: str) -> bool:
        return os.path.exists(os.path.join(self.storage, "docker", "registry", "v2",
                                           "repositories", repo, "_layers", "sha256",
                                           digest[7:], "link"))


def htpasswd_file(path: str, users: Dict[str, str]) -> str:
    with open(path, "w") as f:
        for user, password in users.items():
            out = subprocess.run([str(HTPASSWD), "-Bbn", user, password], check=True,
                                 capture_output=True, text=True).stdout.strip()
            f.write(out + "\n")
    return path


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A token server of the distribution token spec, written for the tests: ``GET /token?
    service=&scope=&account=`` answers ``{"token": JWT}`` (RS256, signed with openssl, the
    certificate in the ``x5c`` header), granting what ``scope`` asks to a user with the right
    basic credentials, and nothing to an anonymous or wrong one (401). ``requests`` records
    (user or None, scope) per request."""

    def __init__(self, base: str, users: Dict[str, str], service: str = "pycontain-test",
                 issuer: str = "pycontain-test-issuer") -> None:
        self.base, self.users, self.service, self.issuer = base, users, service, issuer
        os.makedirs(base, exist_ok=True)
        self.key, self.cert = os.path.join(base, "token.key"), os.path.join(base, "token.crt")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out",
                 self.cert, "-days", "2", "-subj", "/CN=pycontain test token issuer")
        der = subprocess.run([str(OPENSSL), "x509", "-in", self.cert, "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: List[Tuple[Optional[str], str]] = []
        self.lock = threading.Lock()
        # Bound here, on a port the kernel picks: no window in which another socket could
        # take a port chosen earlier.
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = int(self.httpd.server_address[1])
        self.realm = f"http://127.0.0.1:{self.port}/token"

    def registry_config(self) -> Dict[str, str]:
        return {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                "rootcertbundle": self.cert}

    def sign(self, claims: Dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing = f"{_b64url(json.dumps(header).encode())}." \
                  f"{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run([str(OPENSSL), "dgst", "-sha256", "-sign", self.key],
                             input=signing.encode(), check=True, capture_output=True).stdout
        return f"{signing}.{_b64url(sig)}"

    def _handler(self) -> type:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                scope = (q.get("scope") or [""])[0]
                user = None
                h = self.headers.get("Authorization") or ""
                if h.startswith("Basic "):
                    name, _, pw = base64.b64decode(h[6:]).decode().partition(":")
                    if outer.users.get(name) != pw:
                        with outer.lock:
                            outer.requests.append((f"bad:{name}", scope))
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = name
                with outer.lock:
                    outer.requests.append((user, scope))
                access = []
                if user and scope:
                    kind, name, actions = scope.split(":")
                    access = [{"type": kind, "name": name, "actions": actions.split(",")}]
                now = int(time.time())
                token = outer.sign({"iss": outer.issuer, "sub": user or "", "aud":
                                    (q.get("service") or [""])[0], "exp": now + 600,
                                    "nbf": now - 60, "iat": now, "jti": os.urandom(8).hex(),
                                    "access": access})
                body = json.dumps({"token": token, "expires_in": 600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def __enter__(self) -> TokenServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Pc:
    """The pycontain CLI with its own state and storage roots under ``base``."""

    def __init__(self, base: str, **env: str) -> None:
        self.base = base
        self.env = dict(os.environ, PYCONTAIN_ROOT=os.path.join(base, "state"),
                        PYCONTAIN_STORAGE=os.path.join(base, "storage"), PYTHONPATH=ROOT_DIR,
                        REGISTRY_AUTH_FILE=os.path.join(base, "auth.json"), **env)

    def run(self, *args: str, input: Optional[bytes] = None,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pycontain", *args],
                              env={**self.env, **(env or {})}, capture_output=True,
                              timeout=180, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def ok(self, *args: str, **kw: Any) -> str:
        r = self.run(*args, **kw)
        assert r.returncode == 0, f"{args}: {r.stderr.decode()}"
        return r.stdout.decode()

    def fails(self, *args: str, **kw: Any) -> str:
        """The one line of a failed command's error."""
        r = self.run(*args, **kw)
        lines = r.stderr.decode().strip().splitlines()
        assert r.returncode == 125 and len(lines) == 1, (args, r.returncode, r.stderr)
        return lines[0]

    def leftovers(self) -> List[str]:
        tmp = os.path.join(self.base, "storage", "tmp")
        return os.listdir(tmp) if os.path.isdir(tmp) else []


def upload_blob(address: str, repo: str, data: bytes) -> str:
    """A blob pushed monolithically over plain HTTP (no auth): its digest."""
    import hashlib
    import urllib.request

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"http://{address}/v2/{repo}/blobs/uploads/", data=b"",
                                 method="POST")
    with urllib.request.urlopen(req) as resp:
        loc = urllib.parse.urljoin(f"http://{address}/", resp.headers["Location"])
    sep = "&" if "?" in loc else "?"
    req = urllib.request.Request(f"{loc}{sep}digest={digest}", data=data, method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req).close()
    return digest


def put_manifest(address: str, repo: str, ref: str, data: bytes, media_type: str) -> str:
    import hashlib
    import urllib.request

    req = urllib.request.Request(f"http://{address}/v2/{repo}/manifests/{ref}", data=data,
                                 method="PUT", headers={"Content-Type": media_type})
    urllib.request.urlopen(req).close()
    return "sha256:" + hashlib.sha256(data).hexdigest()


class CuttingProxy:
    """A TCP proxy to ``127.0.0.1:port`` that breaks one connection, once: the first whose
    answer passes ``cut_after`` bytes is closed in the middle. ``requests`` holds what
    clients sent (to see the ``Range`` of a resumed download)."""

    def __init__(self, port: int, cut_after: int) -> None:
        self.target, self.cut_after = port, cut_after
        self.cut = False
        self.requests: List[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.lock = threading.Lock()

    def __enter__(self) -> CuttingProxy:
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        # close() alone does not wake a thread blocked in accept(): the socket would go on
        # listening (and accepting) after the test, on a port a later test may be talking to.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.acceptor.join(10)
        self.sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    def _up(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.requests.append(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _down(self, src: socket.socket, dst: socket.socket) -> None:
        n = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                n += len(data)
                with self.lock:
                    cut = not self.cut and n > self.cut_after
                    self.cut = self.cut or cut
                if cut:
                    dst.sendall(data[: len(data) // 2])
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
