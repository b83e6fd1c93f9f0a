"""Registries that want credentials: docker-registry over TLS (a CA made by the test, given
with --cert-dir) with htpasswd basic auth, and docker-registry with bearer tokens from a token
server written for the test. ``pycontain login`` stores what podman and skopeo read; skopeo is
the second client."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from typing import Any, Iterator, Tuple

import pytest

from tests.busybox import make_busybox_root
from tests.images.regserver import (
    HTPASSWD,
    OPENSSL,
    REGISTRY,
    SKOPEO,
    Pc,
    Registry,
    TokenServer,
    htpasswd_file,
    make_ca,
)

pytestmark = [
    pytest.mark.skipif(REGISTRY is None, reason="docker-registry is not installed"),
    pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed"),
    pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed"),
    pytest.mark.skipif(HTPASSWD is None, reason="htpasswd is not installed (apache2-utils)"),
]

USER, PASSWORD = "alice", "s3cret pass:word"


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Registry, str]]:
    """(registry, cert dir holding its CA as ca.crt)."""
    base = str(tmp_path_factory.mktemp("tlsreg"))
    ca, crt, key = make_ca(os.path.join(base, "pki"))
    certs = os.path.join(base, "certs.d")
    os.makedirs(certs)
    with open(ca, "rb") as src, open(os.path.join(certs, "ca.crt"), "wb") as dst:
        dst.write(src.read())
    pw = htpasswd_file(os.path.join(base, "htpasswd"), {USER: PASSWORD})
    with Registry(os.path.join(base, "reg"), tls=(crt, key), htpasswd=pw) as reg:
        yield reg, certs


def _image(pc: Pc, tmp: str, name: str, motd: str) -> None:
    root = os.path.join(tmp, "root-" + name.replace("/", "-").replace(":", "-"))
    make_busybox_root(root, files={"etc/motd": motd})
    tar = root + ".tar"
    subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
    pc.ok("image", "import", tar, "--name", name)


def test_tls_basic_auth_login_push_pull_logout(tls_registry: Tuple[Registry, str],
                                               tmp_path: Any) -> None:
    reg, certs = tls_registry
    pc = Pc(str(tmp_path))
    authfile = pc.env["REGISTRY_AUTH_FILE"]
    ref = f"{reg.address}/team/box:1"
    _image(pc, str(tmp_path), "mine/box:1", "over tls\n")

    # Without credentials: refused, one line, nothing stored or written.
    line = pc.fails("push", "--cert-dir", certs, "mine/box:1", ref)
    assert "credentials" in line or "unauthorized" in line, line
    line = pc.fails("login", "--cert-dir", certs, "-u", USER, "-p", "wrong", reg.address)
    assert "invalid user name or password" in line, line
    assert not os.path.exists(authfile)
    # The CA is needed: without --cert-dir the certificate is not trusted.
    line = pc.fails("login", "-u", USER, "--password-stdin", reg.address,
                    input=PASSWORD.encode() + b"\n")
    assert "TLS failed" in line and "certificate" in line, line

    out = pc.ok("login", "--cert-dir", certs, "-u", USER, "--password-stdin", reg.address,
                input=PASSWORD.encode() + b"\n")
    assert out.strip() == "Login Succeeded!"
    assert stat.S_IMODE(os.stat(authfile).st_mode) == 0o600
    with open(authfile) as f:
        assert list(json.load(f)["auths"]) == [reg.address]
    assert pc.ok("login", "--get-login", reg.address).strip() == USER

    digest = pc.ok("push", "-q", "--cert-dir", certs, "mine/box:1", ref).strip()
    # skopeo reads the same auth file and trusts the same CA.
    info = json.loads(subprocess.run(
        [str(SKOPEO), "inspect", "--authfile", authfile, "--cert-dir", certs,
         f"docker://{ref}"], check=True, capture_output=True).stdout)
    assert info["Digest"] == digest
    pc.ok("image", "rm", "mine/box:1")
    pc.ok("pull", "-q", "--cert-dir", certs, ref)
    assert json.loads(pc.ok("image", "inspect", ref))[0]["RepoTags"] == [ref]
    # --tls-verify=false talks TLS without checking the certificate.
    pc.ok("pull", "-q", "--tls-verify=false", ref)

    out = pc.ok("logout", reg.address)
    assert out.strip() == f"Removed login credentials for {reg.address}"
    assert "not logged into" in pc.fails("logout", reg.address)
    line = pc.fails("pull", "-q", "--cert-dir", certs, ref)
    assert "credentials" in line or "unauthorized" in line, line
    # --creds: for one command, without the auth file.
    pc.ok("pull", "-q", "--cert-dir", certs, "--creds", f"{USER}:{PASSWORD}", ref)
    with open(authfile) as f:
        assert json.load(f)["auths"] == {}
    assert pc.leftovers() == []


def test_credentials_written_by_skopeo_are_used(tls_registry: Tuple[Registry, str],
                                                tmp_path: Any) -> None:
    """An auth file that skopeo (containers/image) wrote is one pycontain reads."""
    reg, certs = tls_registry
    pc = Pc(str(tmp_path))
    authfile = pc.env["REGISTRY_AUTH_FILE"]
    subprocess.run([str(SKOPEO), "login", "--authfile", authfile, "--cert-dir", certs,
                    "-u", USER, "--password-stdin", reg.address], input=PASSWORD.encode(),
                   check=True, capture_output=True)
    _image(pc, str(tmp_path), "mine/sk:1", "skopeo login\n")
    pc.ok("push", "-q", "--cert-dir", certs, "mine/sk:1", f"{reg.address}/team/sk:1")
    pc.ok("logout", "--all")
    with open(authfile) as f:
        assert json.load(f)["auths"] == {}


def test_bearer_token_flow(tmp_path: Any) -> None:
    """docker-registry with token auth: the client follows the Bearer challenge to the token
    server, with basic credentials after login, and gets a token per scope."""
    base = str(tmp_path)
    with TokenServer(os.path.join(base, "tok"), {USER: PASSWORD}) as ts, \
            Registry(os.path.join(base, "reg"), token=ts.registry_config()) as reg:
        pc = Pc(os.path.join(base, "pc"))
        ref = f"{reg.address}/tok/box:1"
        _image(pc, base, "mine/tok:1", "token\n")
        line = pc.fails("push", "--tls-verify=false", "mine/tok:1", ref)
        assert "unauthorized" in line, line
        line = pc.fails("login", "--tls-verify=false", "-u", USER, "-p", "nope", reg.address)
        assert "invalid user name or password" in line, line
        pc.ok("login", "--tls-verify=false", "-u", USER, "-p", PASSWORD, reg.address)
        digest = pc.ok("push", "-q", "--tls-verify=false", "mine/tok:1", ref).strip()
        assert (USER, "repository:tok/box:pull,push") in ts.requests, ts.requests
        pc.ok("image", "rm", "mine/tok:1")
        pc.ok("pull", "-q", "--tls-verify=false", ref)
        assert (USER, "repository:tok/box:pull") in ts.requests, ts.requests
        info = json.loads(subprocess.run(
            [str(SKOPEO), "inspect", "--tls-verify=false", "--authfile",
             pc.env["REGISTRY_AUTH_FILE"], f"docker://{ref}"], check=True,
            capture_output=True).stdout)
        assert info["Digest"] == digest
        pc.ok("logout", reg.address)
        line = pc.fails("pull", "-q", "--tls-verify=false", ref)
        assert "unauthorized" in line, line
        assert pc.leftovers() == []
