"""HTTP(S) to an OCI distribution registry: GET with the right Accept headers, the bearer
token dance of a ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` challenge
(anonymous, or basic credentials sent to the token realm), basic auth, TLS with the system's
CAs unless ``tls_verify`` is off, a retry of a broken connection, and blobs streamed through a
SHA-256 check so that nothing unchecked is ever kept."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
import time
import urllib.parse

from pycontain.image.errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple

_PARAM = re.compile(r'(\w+)="([^"]*)"')
CHUNK = 1 << 20


class RegistryError(ImageError):
    pass


class Client:
    def __init__(self, host: str, repository: str, tls_verify: bool = True,
                 credentials: Optional[Tuple[str, str]] = None, plain_http: bool = False,
                 timeout: float = 60.0) -> None:
        self.host, self.repository = host, repository
        self.tls_verify, self.credentials = tls_verify, credentials
        self.plain_http, self.timeout = plain_http, timeout
        self.token: Optional[str] = None

    def _conn(self, host: str, https: bool) -> http.client.HTTPConnection:
        if not https:
            return http.client.HTTPConnection(host, timeout=self.timeout)
        ctx = ssl.create_default_context()
        if not self.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(host, timeout=self.timeout, context=ctx)

    def _auth_header(self) -> Dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.credentials:
            raw = f"{self.credentials[0]}:{self.credentials[1]}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def request(self, path: str, accept: str = "", retries: int = 3
                ) -> http.client.HTTPResponse:
        """GET ``/v2/<repository>/<path>``; follows redirects (blob storage), answers one
        authentication challenge, retries a broken connection."""
        url = f"/v2/{self.repository}/{path}"
        host, https = self.host, not self.plain_http
        authed = False
        for attempt in range(retries + 6):
            headers = {"User-Agent": "pycontain", **self._auth_header()}
            if accept:
                headers["Accept"] = accept
            conn = self._conn(host, https)
            try:
                conn.request("GET", url, headers=headers)
                resp = conn.getresponse()
            except ssl.SSLError as e:
                conn.close()
                if not self.tls_verify and host == self.host:  # podman: a plain-HTTP registry
                    self.plain_http, https = True, False
                    continue
                raise RegistryError(f"{self.host}: TLS failed ({e.reason}); --tls-verify=false "
                                    "for a registry without a trusted certificate") from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if https and not self.plain_http and isinstance(e, ConnectionRefusedError):
                    raise RegistryError(f"{self.host}: connection refused") from None
                if attempt >= retries:
                    raise RegistryError(f"{self.host}: {e}") from None
                time.sleep(0.2 * (attempt + 1))
                continue
            if resp.status in (301, 302, 303, 307, 308):
                loc = urllib.parse.urlsplit(resp.getheader("Location") or "")
                resp.read()
                conn.close()
                host, https = loc.netloc or host, (loc.scheme or "https") == "https"
                url = loc.path + (f"?{loc.query}" if loc.query else "")
                self_token, self.token = self.token, None  # not for the storage backend
                if host == self.host:
                    self.token = self_token
                continue
            if resp.status == 401 and not authed:
                challenge = resp.getheader("WWW-Authenticate") or ""
                resp.read()
                conn.close()
                self._answer(challenge)
                authed = True
                continue
            if resp.status == 401:
                resp.read()
                raise RegistryError(f"{self.host}: unauthorized for {self.repository} "
                                    "(pycontain login, or check the name)")
            if resp.status == 404:
                resp.read()
                raise RegistryError(f"{self.host}/{self.repository}: {path} not found")
            if resp.status != 200:
                body = resp.read(4096).decode(errors="replace")
                raise RegistryError(f"{self.host}: GET {url}: HTTP {resp.status} "
                                    f"{_error_message(body)}")
            return resp
        raise RegistryError(f"{self.host}: too many redirects or retries for {url}")

    def _answer(self, challenge: str) -> None:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.credentials:
                raise RegistryError(f"{self.host}: the registry wants credentials "
                                    "(pycontain login)")
            return  # sent as Basic from now on
        if scheme.lower() != "bearer":
            raise RegistryError(f"{self.host}: unsupported authentication {scheme!r}")
        p = dict(_PARAM.findall(params))
        realm = urllib.parse.urlsplit(p.get("realm", ""))
        if realm.scheme not in ("http", "https") or not realm.netloc:
            raise RegistryError(f"{self.host}: bad token realm in the challenge")
        query = {k: p[k] for k in ("service", "scope") if k in p}
        query.setdefault("scope", f"repository:{self.repository}:pull")
        path = realm.path + "?" + urllib.parse.urlencode(query)
        headers = {"User-Agent": "pycontain"}
        if self.credentials:
            raw = f"{self.credentials[0]}:{self.credentials[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        conn = self._conn(realm.netloc, realm.scheme == "https")
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read(1 << 16)
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"token server {realm.netloc}: {e}") from None
        finally:
            conn.close()
        if resp.status != 200:
            raise RegistryError(f"token server {realm.netloc}: HTTP {resp.status} (unauthorized)")
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token server {realm.netloc}: no token in its answer")
        self.token = token

    def get_json(self, path: str, accept: str, limit: int = 4 << 20) -> Tuple[bytes, str]:
        """A manifest: its raw bytes (digests are of these) and media type."""
        resp = self.request(path, accept)
        data = resp.read(limit + 1)
        if len(data) > limit:
            raise RegistryError(f"{self.host}: {path} is larger than {limit >> 20} MiB")
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        return data, ctype

    def fetch_blob(self, digest: str, out: Any, size: Optional[int] = None,
                   on_read: Optional[Callable[[int], None]] = None) -> None:
        """Stream blob ``digest`` into ``out``; RegistryError if its bytes hash otherwise
        (the caller then throws away what was written)."""
        resp = self.request(f"blobs/{digest}")
        h = hashlib.sha256()
        n = 0
        while True:
            chunk = resp.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
            out.write(chunk)
            n += len(chunk)
            if size is not None and n > size:
                raise RegistryError(f"blob {digest[:19]}: more than the {size} bytes announced")
            if on_read is not None:
                on_read(len(chunk))
        if "sha256:" + h.hexdigest() != digest:
            raise RegistryError(f"blob {digest[:19]}: digest mismatch (got sha256:"
                                f"{h.hexdigest()[:12]}): refused")
        if size is not None and n != size:
            raise RegistryError(f"blob {digest[:19]}: {n} bytes, the manifest says {size}")


    def send(self, method: str, target: str, body: Any = None,
             headers: Optional[Dict[str, str]] = None, ok: Tuple[int, ...] = (200, 201, 202),
             scope: str = "pull,push") -> http.client.HTTPResponse:
        """``method`` on ``/v2/<repository>/<target>`` or on an absolute upload URL (what a
        ``Location`` header gives), answering one authentication challenge (``scope``).
        ``body``: bytes, or a file (rewound for a retry). Returns the response, read."""
        authed = False
        for _ in range(3):
            if target.startswith(("http://", "https://")):
                u = urllib.parse.urlsplit(target)
                host, https, path = u.netloc, u.scheme == "https", u.path + (
                    f"?{u.query}" if u.query else "")
            elif target.startswith("/"):
                host, https, path = self.host, not self.plain_http, target
            else:
                host, https, path = self.host, not self.plain_http, \
                    f"/v2/{self.repository}/{target}"
            h = {"User-Agent": "pycontain", **self._auth_header(), **(headers or {})}
            if hasattr(body, "seek"):
                body.seek(0)
            conn = self._conn(host, https)
            try:
                conn.request(method, path, body=body, headers=h)
                resp = conn.getresponse()
                resp.read()
            except ssl.SSLError as e:
                conn.close()
                if not self.tls_verify and not self.plain_http:
                    self.plain_http = True
                    continue
                raise RegistryError(f"{self.host}: TLS failed ({e.reason})") from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise RegistryError(f"{self.host}: {method} {path}: {e}") from None
            conn.close()
            if resp.status == 401 and not authed:
                challenge = resp.getheader("WWW-Authenticate") or ""
                if "scope=" not in challenge and challenge.lower().startswith("bearer"):
                    challenge += f',scope="repository:{self.repository}:{scope}"'
                self._answer(challenge)
                authed = True
                continue
            if resp.status == 401:
                raise RegistryError(f"{self.host}: unauthorized to push to {self.repository}")
            if resp.status not in ok:
                raise RegistryError(f"{self.host}: {method} {path.split('?')[0]}: HTTP "
                                    f"{resp.status}")
            return resp
        raise RegistryError(f"{self.host}: {method} {target}: gave up")


def _error_message(body: str) -> str:
    try:
        errs = json.loads(body).get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errs)
    except (ValueError, AttributeError):
        return body.strip()[:200]
