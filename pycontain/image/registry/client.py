"""HTTP(S) to an OCI distribution registry: requests with the right Accept headers, the
bearer token dance of a ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` challenge
(anonymous, or basic credentials sent to the token realm), basic auth, TLS with the system's
CAs plus a certificate directory (podman's ``--cert-dir``: ``*.crt`` CAs, ``*.cert``/``*.key``
client pairs; by default ``/etc/containers/certs.d/HOST[:PORT]`` and docker's
``/etc/docker/certs.d``), ``tls_verify=False`` with a fall back to plain HTTP, kept-alive
connections, retries of a broken connection (a blob resumes with a ``Range`` request), and
blobs streamed through a SHA-256 check so that nothing unchecked is ever kept."""

from __future__ import annotations

import base64
import glob
import hashlib
import http.client
import json
import os
import re
import ssl
import time
import urllib.parse

from pycontain.image.errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

_PARAM = re.compile(r'(\w+)="([^"]*)"')
CHUNK = 1 << 20
RETRIES = 3


class RegistryError(ImageError):
    pass


class NotFound(RegistryError):
    pass


class Unauthorized(RegistryError):
    pass


class Options:
    """How to reach a registry: TLS (``tls_verify``, ``cert_dir``) and credentials
    (``creds`` given on the command line, else the auth files, see auth.py)."""

    def __init__(self, tls_verify: bool = True, cert_dir: Optional[str] = None,
                 creds: Optional[Tuple[str, str]] = None, authfile: Optional[str] = None,
                 plain_http: bool = False) -> None:
        from pycontain.image.registry import auth

        self.tls_verify, self.cert_dir = tls_verify, cert_dir
        self.creds, self.authfile, self.plain_http = creds, authfile, plain_http
        # Decided here, by who asks: a rootless image command then runs as root of a user
        # namespace, where root's places would be wrong.
        self.auth_paths = auth.search_path(authfile)
        self.user_certs = os.geteuid() != 0


def parse_creds(value: str) -> Tuple[str, str]:
    """``--creds USER[:PASSWORD]``."""
    user, _, password = value.partition(":")
    if not user:
        raise RegistryError("--creds: give USER[:PASSWORD]")
    return user, password


def cert_dirs(host: str, explicit: Optional[str], user: bool) -> List[str]:
    if explicit:
        if not os.path.isdir(explicit):
            raise RegistryError(f"--cert-dir {explicit}: no such directory")
        return [explicit]
    out = [os.path.join("/etc/containers/certs.d", host), os.path.join("/etc/docker/certs.d", host)]
    if user:
        out.insert(0, os.path.join(os.path.expanduser("~"), ".config", "containers", "certs.d",
                                   host))
    return [d for d in out if os.path.isdir(d)]


def ssl_context(host: str, opts: Options) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not opts.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for d in cert_dirs(host, opts.cert_dir, opts.user_certs):
        for ca in sorted(glob.glob(os.path.join(d, "*.crt"))):
            try:
                ctx.load_verify_locations(cafile=ca)
            except (ssl.SSLError, OSError) as e:
                raise RegistryError(f"{ca}: not a CA certificate ({e})") from None
        for cert in sorted(glob.glob(os.path.join(d, "*.cert"))):
            key = cert[:-len(".cert")] + ".key"
            if not os.path.exists(key):
                raise RegistryError(f"{cert}: no matching {os.path.basename(key)}")
            try:
                ctx.load_cert_chain(cert, key)
            except (ssl.SSLError, OSError) as e:
                raise RegistryError(f"{cert}: cannot load the client certificate ({e})") \
                    from None
    return ctx


class Client:
    """One repository of one registry. Not shared between threads: ``clone()`` gives a
    client with the same credentials and token and connections of its own."""

    def __init__(self, host: str, repository: str, opts: Optional[Options] = None,
                 registry: Optional[str] = None, timeout: float = 60.0) -> None:
        self.host, self.repository = host, repository
        self.opts = opts or Options()
        self.tls_verify = self.opts.tls_verify
        self.plain_http, self.timeout = self.opts.plain_http, timeout
        self.credentials = self.opts.creds
        if self.credentials is None:
            from pycontain.image.registry import auth

            self.credentials = auth.lookup(registry or host, repository,
                                           paths=self.opts.auth_paths)
        self.token: Optional[str] = None
        self._ctx: Dict[str, ssl.SSLContext] = {}
        self._pool: Dict[Tuple[str, bool], http.client.HTTPConnection] = {}

    def clone(self) -> Client:
        c = Client.__new__(Client)
        c.__dict__.update(self.__dict__)
        c._pool = {}
        return c

    def close(self) -> None:
        for conn in self._pool.values():
            conn.close()
        self._pool.clear()

    def _conn(self, host: str, https: bool) -> http.client.HTTPConnection:
        conn = self._pool.pop((host, https), None)
        if conn is not None:
            return conn
        if not https:
            return http.client.HTTPConnection(host, timeout=self.timeout)
        if host not in self._ctx:
            self._ctx[host] = ssl_context(host, self.opts)
        return http.client.HTTPSConnection(host, timeout=self.timeout, context=self._ctx[host])

    def _keep(self, host: str, https: bool, conn: http.client.HTTPConnection) -> None:
        old = self._pool.pop((host, https), None)
        if old is not None and old is not conn:
            old.close()
        self._pool[(host, https)] = conn

    def _auth_header(self) -> Dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.credentials:
            raw = f"{self.credentials[0]}:{self.credentials[1]}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def _target(self, target: str) -> Tuple[str, bool, str]:
        if target.startswith(("http://", "https://")):
            u = urllib.parse.urlsplit(target)
            return u.netloc, u.scheme == "https", u.path + (f"?{u.query}" if u.query else "")
        if target.startswith("/"):
            return self.host, not self.plain_http, target
        return self.host, not self.plain_http, f"/v2/{self.repository}/{target}"

    def call(self, method: str, target: str, body: Any = None,
             headers: Optional[Dict[str, str]] = None, ok: Tuple[int, ...] = (200,),
             scope: str = "pull", stream: bool = False) -> http.client.HTTPResponse:
        """``method`` on ``target``: a path under ``/v2/<repository>/``, an absolute path, or a
        URL (an upload's ``Location``). Follows redirects of GET and HEAD (blob storage),
        answers one authentication challenge for ``scope``, retries a broken connection of an
        idempotent request, falls back to plain HTTP when TLS fails and ``tls_verify`` is off.
        ``body``: bytes or a file (rewound for a retry). The response is read unless
        ``stream``; a status outside ``ok`` raises NotFound, Unauthorized or RegistryError."""
        host, https, path = self._target(target)
        authed, attempt, hops = False, 0, 0
        idempotent = method in ("GET", "HEAD", "PUT")
        while True:
            h = {"User-Agent": "pycontain", **self._auth_header(), **(headers or {})}
            if host != self.host:
                h.pop("Authorization", None)  # not for a storage backend or another host
            if hasattr(body, "seek"):
                body.seek(0)
            reused = (host, https) in self._pool
            conn = self._conn(host, https)
            try:
                conn.request(method, path, body=body, headers=h)
                resp = conn.getresponse()
            except ssl.SSLError as e:
                conn.close()
                if not self.tls_verify and host == self.host and https:
                    self.plain_http, https = True, False  # podman: a plain-HTTP registry
                    continue
                why = getattr(e, "verify_message", None) or e.reason or e
                raise RegistryError(f"{self.host}: TLS failed ({why}); --tls-verify=false "
                                    "for a registry without a trusted certificate, or "
                                    "--cert-dir with its CA") from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if isinstance(e, ConnectionRefusedError):
                    raise RegistryError(f"{host}: connection refused") from None
                if reused:  # a kept-alive connection the server had closed
                    continue
                attempt += 1
                if attempt > RETRIES or not idempotent:
                    raise RegistryError(f"{host}: {method} {path.split('?')[0]}: "
                                        f"{e or type(e).__name__}") from None
                time.sleep(0.1 * attempt)
                continue
            if method in ("GET", "HEAD") and resp.status in (301, 302, 303, 307, 308):
                loc = resp.getheader("Location") or ""
                resp.read()
                self._keep(host, https, conn)
                hops += 1
                if hops > 8 or not loc:
                    raise RegistryError(f"{self.host}: too many redirects for {path}")
                u = urllib.parse.urlsplit(urllib.parse.urljoin(
                    f"{'https' if https else 'http'}://{host}{path}", loc))
                host, https = u.netloc, u.scheme == "https"
                path = u.path + (f"?{u.query}" if u.query else "")
                continue
            if resp.status == 401 and not authed:
                challenge = resp.getheader("WWW-Authenticate") or ""
                resp.read()
                self._keep(host, https, conn)
                self._answer(challenge, scope)
                authed = True
                continue
            if resp.status in ok:
                if not stream:
                    resp.read()
                    self._keep(host, https, conn)
                return resp
            text = "" if method == "HEAD" else resp.read(8192).decode(errors="replace")
            conn.close()
            what = f"{method} {path.split('?')[0]}"
            if resp.status == 401:
                raise Unauthorized(f"{self.host}: unauthorized for {self.repository} "
                                   f"({_error_message(text) or 'pycontain login'})")
            if resp.status == 403:
                raise Unauthorized(f"{self.host}: denied: {what} "
                                   f"{_error_message(text)}".rstrip())
            if resp.status == 404:
                raise NotFound(f"{self.host}: {what}: {_error_message(text) or 'not found'}")
            raise RegistryError(f"{self.host}: {what}: HTTP {resp.status} "
                                f"{_error_message(text)}".rstrip())

    def ping(self) -> None:
        """``GET /v2/`` with the credentials: what ``login`` checks."""
        self.call("GET", "/v2/", scope="")

    def _answer(self, challenge: str, scope: str) -> None:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.credentials:
                raise Unauthorized(f"{self.host}: the registry wants credentials "
                                   "(pycontain login, or --creds)")
            if self.token:
                self.token = None
                return
            raise Unauthorized(f"{self.host}: invalid user name or password")
        if scheme.lower() != "bearer":
            raise RegistryError(f"{self.host}: unsupported authentication {scheme!r}")
        p = dict(_PARAM.findall(params))
        realm = urllib.parse.urlsplit(p.get("realm", ""))
        if realm.scheme not in ("http", "https") or not realm.netloc:
            raise RegistryError(f"{self.host}: bad token realm in the challenge")
        query = {k: p[k] for k in ("service", "scope") if k in p}
        ours = f"repository:{self.repository}:{scope}"
        # The challenge of a GET or HEAD names pull only; a push needs both.
        want_push = "push" in scope.split(",")
        if scope and (not query.get("scope") or (want_push and "push" not in query["scope"])):
            query["scope"] = ours
        if self.credentials:
            query["account"] = self.credentials[0]
        path = (realm.path or "/") + "?" + urllib.parse.urlencode(query)
        headers = {"User-Agent": "pycontain"}
        if self.credentials:
            raw = f"{self.credentials[0]}:{self.credentials[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        if realm.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                realm.netloc, timeout=self.timeout, context=ssl_context(realm.netloc, self.opts))
        else:
            conn = http.client.HTTPConnection(realm.netloc, timeout=self.timeout)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read(1 << 16)
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"token server {realm.netloc}: {e}") from None
        finally:
            conn.close()
        if resp.status in (401, 403):
            raise Unauthorized(f"token server {realm.netloc}: "
                               + ("invalid user name or password" if self.credentials
                                  else "unauthorized (pycontain login)"))
        if resp.status != 200:
            raise RegistryError(f"token server {realm.netloc}: HTTP {resp.status}")
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n "):
            raise RegistryError(f"token server {realm.netloc}: no token in its answer")
        self.token = token

    def get_json(self, path: str, accept: str, limit: int = 4 << 20) -> Tuple[bytes, str]:
        """A manifest: its raw bytes (digests are of these) and media type."""
        resp = self.call("GET", path, headers={"Accept": accept}, stream=True)
        data = resp.read(limit + 1)
        resp.close()
        if len(data) > limit:
            raise RegistryError(f"{self.host}: {path} is larger than {limit >> 20} MiB")
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        return data, ctype

    def fetch_blob(self, digest: str, out: Any, size: Optional[int] = None,
                   on_read: Optional[Callable[[int], None]] = None) -> None:
        """Stream blob ``digest`` into ``out`` (a file opened for writing at its start);
        RegistryError if its bytes hash otherwise (the caller then throws away what was
        written). A connection broken in the middle is resumed from where it stopped."""
        h = hashlib.sha256()
        n = 0
        failures = 0
        while True:
            headers = {"Range": f"bytes={n}-"} if n else {}
            resp = self.call("GET", f"blobs/{digest}", headers=headers, ok=(200, 206),
                             stream=True)
            if n and resp.status == 200:  # no ranges: start again
                h, n = hashlib.sha256(), 0
                out.seek(0)
                out.truncate()
            try:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    h.update(chunk)
                    out.write(chunk)
                    n += len(chunk)
                    if size is not None and n > size:
                        raise RegistryError(f"blob {digest[:19]}: more than the {size} bytes "
                                            "announced")
                    if on_read is not None:
                        on_read(len(chunk))
            except (OSError, http.client.HTTPException) as e:
                resp.close()
                failures += 1
                if failures > RETRIES:
                    raise RegistryError(f"blob {digest[:19]}: {e or type(e).__name__} "
                                        f"(after {RETRIES} retries)") from None
                time.sleep(0.1 * failures)
                continue
            resp.close()
            if size is not None and n < size and failures <= RETRIES:
                failures += 1  # a connection closed early, without an error
                continue
            break
        if "sha256:" + h.hexdigest() != digest:
            raise RegistryError(f"blob {digest[:19]}: digest mismatch (got sha256:"
                                f"{h.hexdigest()[:12]}): refused")
        if size is not None and n != size:
            raise RegistryError(f"blob {digest[:19]}: {n} bytes, the manifest says {size}")


def _error_message(body: str) -> str:
    try:
        errs = json.loads(body).get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errs)
    except (ValueError, AttributeError):
        return body.strip().splitlines()[0][:200] if body.strip() else ""
