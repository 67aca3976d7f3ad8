"""A real ``docker-registry`` (distribution 2.8) on 127.0.0.1 for the pinned-install tests (``pin_*``).

``pin_registry`` starts one with TLS from a trustme CA (and htpasswd auth) on a free port, stops it
by PID, and seeds it through ``skopeo copy`` from an OCI layout written here (small JSON and one
tar layer). Skipped, with the reason, where ``docker-registry``, ``skopeo`` or ``htpasswd`` are absent.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PIN_USER, PIN_PASSWORD = "mesh-pusher", "pin-s3cret-never-printed"


def pin_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _blob(layout: Path, data: bytes) -> str:
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
    layer_digest = _blob(folder, layer)
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
                "digest": _blob(folder, config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}
            ],
        },
        sort_keys=True,
    ).encode()
    digest = _blob(folder, manifest)
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


def _wait_up(host: str, ctx: ssl.SSLContext, proc: subprocess.Popen[bytes]) -> None:
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
        _wait_up(host, ctx, proc)
        yield PinRegistry(host, work / "ca.pem", work / "certs", work / "auth.json", work)
    finally:
        os.kill(proc.pid, 15)
        proc.wait(timeout=10)
        log.close()
