"""Real registries for tests: Debian's ``docker-registry`` (distribution 2.8) with TLS from a test CA.

``start_registry(folder, ca)`` runs one on 127.0.0.1 on a free port (``auth=True``: htpasswd basic
auth), waits until it answers, and returns a :class:`Registry` whose ``stop()`` kills it by PID.
``seed(registry, layout, refs, path)`` pushes images from an OCI layout with ``skopeo copy --all
--preserve-digests`` (the independent client). Tests that need these skip with a clear reason when
``docker-registry`` or ``skopeo`` is absent (``requires_registry``).

Also here: :func:`skopeo_raw` (``skopeo inspect --raw``, the oracle for what was pushed) and
:class:`FaultyServer`, a TLS server that answers every request with one status or drops the
connection, for the retry tests.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

try:
    import trustme
except ImportError:  # pragma: no cover - in the dev lock
    trustme = None

HAVE_REGISTRY = bool(shutil.which("docker-registry") and shutil.which("skopeo") and shutil.which("htpasswd"))
requires_registry = pytest.mark.skipif(
    not HAVE_REGISTRY or trustme is None,
    reason="needs docker-registry, skopeo and htpasswd (scripts/system-deps.sh installs them) and trustme",
)
USER, PASSWORD = "pusher", "s3cret-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RegistryCA:
    ca_pem: Path
    cert: Path
    key: Path


def make_ca(folder: Path) -> RegistryCA:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    out = RegistryCA(folder / "ca.pem", folder / "tls.crt", folder / "tls.key")
    ca.cert_pem.write_to_path(str(out.ca_pem))
    leaf.private_key_pem.write_to_path(str(out.key))
    with open(out.cert, "wb") as fh:
        for pem in leaf.cert_chain_pems:
            fh.write(pem.bytes())
    return out


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    ca: RegistryCA
    root: Path
    pid: int
    proc: subprocess.Popen[bytes]
    authfile: Path | None = None

    @property
    def cert_dir(self) -> Path:
        d = self.root.parent / "certs.d"
        d.mkdir(exist_ok=True)
        shutil.copyfile(self.ca.ca_pem, d / "ca.crt")
        return d

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()


def write_authfile(path: Path, host: str, user: str = USER, password: str = PASSWORD) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    path.chmod(0o600)
    return path


def start_registry(folder: Path, ca: RegistryCA, *, auth: bool = False, access_log: bool = False) -> Registry:
    """``access_log``: the registry logs every request to ``folder/registry.log`` (for tests that
    look at what a client asked: HEADs, mounts, uploads)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        "version: 0.1",
        "log: {level: info, accesslog: {disabled: false}}"
        if access_log
        else "log: {level: error, accesslog: {disabled: true}}",
        f"storage: {{filesystem: {{rootdirectory: {folder / 'data'}}}, delete: {{enabled: true}}}}",
        f"http: {{addr: 127.0.0.1:{port}, tls: {{certificate: {ca.cert}, key: {ca.key}}}}}",
    ]
    authfile = None
    if auth:
        hashed = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True).stdout
        (folder / "htpasswd").write_bytes(hashed)
        lines.append(f"auth: {{htpasswd: {{realm: airgap-test, path: {folder / 'htpasswd'}}}}}")
        authfile = write_authfile(folder / "auth.json", f"127.0.0.1:{port}")
    (folder / "config.yml").write_text("\n".join(lines) + "\n")
    log = open(folder / "registry.log", "wb")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")], stdout=log, stderr=log)
    reg = Registry(f"127.0.0.1:{port}", ca, folder, proc.pid, proc, authfile)
    ctx = ssl.create_default_context(cafile=str(ca.ca_pem))
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(folder / 'registry.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"https://{reg.host}/v2/", context=ctx, timeout=2)
            return reg
        except urllib.error.HTTPError:
            return reg  # 401: up, wants credentials
        except OSError:
            time.sleep(0.05)
    reg.stop()
    raise RuntimeError("docker-registry did not start")


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["skopeo", *args], check=False, capture_output=True, text=True)
    if check and out.returncode:
        raise RuntimeError(f"skopeo {args[0]} failed: {out.stderr[-2000:]}")
    return out


def dir_image(layout: Path, ref: str, folder: Path) -> Path:
    """A skopeo ``dir:`` folder for ``ref`` of the OCI layout, hard-linked to its blobs (the ``oci:``
    transport only reads OCI media types; ``dir:`` keeps Docker v2 manifests byte for byte too)."""
    index = json.loads((layout / "index.json").read_text())
    top = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == ref)
    blobs = layout / "blobs" / "sha256"
    folder.mkdir(parents=True)
    (folder / "version").write_text("Directory Transport Version: 1.1\n")
    os.link(blobs / top["digest"][7:], folder / "manifest.json")
    todo = [top["digest"][7:]]
    while todo:
        doc = json.loads((blobs / todo.pop()).read_bytes())
        for child in doc.get("manifests", []):
            os.link(blobs / child["digest"][7:], folder / f"{child['digest'][7:]}.manifest.json")
            todo.append(child["digest"][7:])
        for blob in ([doc["config"]] if "config" in doc else []) + doc.get("layers", []):
            if not (folder / blob["digest"][7:]).exists():
                os.link(blobs / blob["digest"][7:], folder / blob["digest"][7:])
    return folder


def seed(reg: Registry, layout: Path, refs: list[str], path: str = "istio") -> None:
    """Push ``refs`` (``NAME:TAG`` in the layout) to ``reg/path/NAME:TAG``, byte for byte."""
    auth = ["--dest-authfile", str(reg.authfile)] if reg.authfile else []
    for n, ref in enumerate(refs):
        folder = dir_image(layout, ref, layout.parent / f".seed-{os.getpid()}-{reg.host.replace(':', '-')}-{n}")
        try:
            skopeo(
                "copy", "--all", "--preserve-digests", "--dest-cert-dir", str(reg.cert_dir), *auth,
                f"dir:{folder}", f"docker://{reg.host}/{path}/{ref}",
            )  # fmt: skip
        finally:
            shutil.rmtree(folder)


def skopeo_raw(reg: Registry, ref: str) -> bytes:
    """The manifest bytes the registry serves for ``ref`` (``skopeo inspect --raw``)."""
    auth = ["--authfile", str(reg.authfile)] if reg.authfile else []
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--cert-dir", str(reg.cert_dir), *auth, f"docker://{reg.host}/{ref}"],
        check=True,
        capture_output=True,
    )
    return out.stdout


def registry_blob_files(reg: Registry) -> Iterator[Path]:
    yield from (reg.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256").glob("*/*/data")


class FaultyServer:
    """A TLS server on 127.0.0.1 that answers every request with ``status`` (or, with ``status=0``,
    closes the connection without a reply). ``hits`` counts requests (retries show as several)."""

    def __init__(self, ca: RegistryCA, status: int) -> None:
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                outer.hits += 1
                if status == 0:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = json.dumps({"errors": [{"code": "UNKNOWN", "message": f"status {status}"}]}).encode()
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="faulty"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _reply

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(ca.cert), str(ca.key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class DroppingProxy:
    """A TCP proxy to ``target`` (TLS passes through untouched) that cuts a connection once it has
    carried ``cut_after`` bytes towards the registry: a connection dropped mid-blob. The first
    ``drops`` such connections are cut (``drops=-1``: every one); later ones pass."""

    def __init__(self, target: str, *, cut_after: int, drops: int = 1) -> None:
        self.target = target
        self.cut_after = cut_after
        self.drops = drops
        self.cut = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            host, port = self.target.split(":")
            upstream = socket.create_connection((host, int(port)))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        carried = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                carried += len(data) if counted else 0
                if counted and carried > self.cut_after and (self.drops < 0 or self.cut < self.drops):
                    self.cut += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def stop(self) -> None:
        self._stop = True
        self.listener.close()


class TokenRegistry:
    """A TLS stand-in for a registry behind the distribution token flow (what Harbor or a cloud
    registry does): ``/v2/`` and blob HEADs answer 401 ``Bearer realm=…/token`` until given a
    token; ``/token`` hands one out for basic ``USER:PASSWORD``; ``blobs`` lists the digests held
    (per repository). ``requests`` logs (method, path, scope) of every call."""

    def __init__(self, ca: RegistryCA, blobs: dict[str, set[str]]) -> None:
        self.requests: list[tuple[str, str, str]] = []
        outer = self
        token = "t0ken-for-tests"
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _reply(self) -> None:
                path, _, query = self.path.partition("?")
                scope = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("scope", "")
                outer.requests.append((self.command, path, urllib.parse.unquote(scope)))
                if path == "/token":  # a token is good for the scope it was asked for
                    ok = self.headers.get("Authorization") == basic
                    body = json.dumps({"token": f"{token}|{urllib.parse.unquote(scope)}"}).encode()
                    return self._send(200 if ok else 401, body if ok else b"")
                repo, _, digest = path.removeprefix("/v2/").partition("/blobs/")
                need = "" if path == "/v2/" else f"repository:{repo}:pull"
                given = self.headers.get("Authorization", "")
                if not given.startswith(f"Bearer {token}|") or (need and given.split("|", 1)[1] != need):
                    realm = f'Bearer realm="https://{outer.host}/token",service="test-registry"'
                    return self._send(401, b"{}", {"WWW-Authenticate": realm})
                if path == "/v2/":
                    return self._send(200, b"{}")
                return self._send(200 if digest in blobs.get(repo, set()) else 404)

            do_GET = do_HEAD = _reply

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(ca.cert), str(ca.key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- pin_*: the pinned-install tests' own registry (mesh install --images, the live digest check) ---------
#
# ``pin_registry`` starts one docker-registry with TLS from a trustme CA and htpasswd auth on a free
# port, stops it by PID, and seeds it through ``skopeo copy`` from an OCI layout written here (small
# JSON and one tar layer). Skipped, with the reason, where docker-registry, skopeo or htpasswd are absent.

PIN_USER, PIN_PASSWORD = "mesh-pusher", "pin-s3cret-never-printed"


def pin_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin_blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}"


def pin_oci_layout(folder: Path, name: str, tag: str) -> str:
    """An OCI image layout holding one small image ``name:tag``; returns its manifest digest."""
    (folder / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = f"{name} {tag}\n".encode()
        info = tarfile.TarInfo(f"etc/{name}")
        info.size, info.mtime = len(data), 1_600_000_000
        tar.addfile(info, io.BytesIO(data))
    layer = buf.getvalue()
    layer_digest = _pin_blob(folder, layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "config": {"Labels": {"name": name}},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _pin_blob(folder, config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}
            ],
        },
        sort_keys=True,
    ).encode()
    digest = _pin_blob(folder, manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (folder / "index.json").write_text(json.dumps(index))
    return digest


@dataclass
class PinRegistry:
    host: str  # 127.0.0.1:PORT
    ca_pem: Path
    cert_dir: Path  # ca.crt, for skopeo
    authfile: Path  # containers-auth.json with the registry's credentials
    work: Path

    def seed(self, path: str, name: str, tag: str) -> str:
        """Push ``name:tag`` (a fresh OCI layout) to ``HOST/path/name:tag`` with skopeo; its digest."""
        layout = self.work / f"layout-{name}-{tag}"
        digest = pin_oci_layout(layout, name, tag)
        digestfile = self.work / f"digest-{name}-{tag}"
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--preserve-digests", "--digestfile", str(digestfile),
             "--dest-cert-dir", str(self.cert_dir), "--authfile", str(self.authfile),
             f"oci:{layout}:{tag}", f"docker://{self.host}/{path}/{name}:{tag}"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        assert digestfile.read_text().strip() == digest  # the registry holds our bytes, digest unchanged
        return digest


def _pin_wait_up(host: str, ctx: ssl.SSLContext, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"https://{host}/v2/", context=ctx, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # 401: it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("docker-registry did not start")


@pytest.fixture
def pin_registry(tmp_path: Path) -> Iterator[PinRegistry]:
    """docker-registry on 127.0.0.1:free port, TLS from a trustme CA, htpasswd auth; stopped by PID."""
    missing = [t for t in ("docker-registry", "skopeo", "htpasswd") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/system-deps.sh installs them)")
    import trustme

    work = tmp_path / "pin-registry"
    (work / "certs").mkdir(parents=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    ca.cert_pem.write_to_path(str(work / "certs" / "ca.crt"))
    cert.private_key_pem.write_to_path(str(work / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(work / "server.crt"))
    subprocess.run(
        ["htpasswd", "-Bbc", str(work / "htpasswd"), PIN_USER, PIN_PASSWORD], check=True, capture_output=True
    )
    port = pin_free_port()
    host = f"127.0.0.1:{port}"
    (work / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {host}\n  tls:\n    certificate: {work / 'server.crt'}\n    key: {work / 'server.key'}\n"
        f"auth:\n  htpasswd:\n    realm: pin\n    path: {work / 'htpasswd'}\n"
    )
    token = base64.b64encode(f"{PIN_USER}:{PIN_PASSWORD}".encode()).decode()
    (work / "auth.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))
    os.chmod(work / "auth.json", 0o600)
    log = open(work / "registry.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(["docker-registry", "serve", str(work / "config.yml")], stdout=log, stderr=log)
    try:
        ctx = ssl.create_default_context(cafile=str(work / "ca.pem"))
        _pin_wait_up(host, ctx, proc)
        yield PinRegistry(host, work / "ca.pem", work / "certs", work / "auth.json", work)
    finally:
        os.kill(proc.pid, 15)
        proc.wait(timeout=10)
        log.close()
