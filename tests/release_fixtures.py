"""Signed release tarballs for tests, made and signed with the real ``openssl`` CLI.

``make_signed_release(tmp)`` builds ``istio-<ver>-<platform>.tar.gz`` (``.zip`` for ``win``) holding
``istio-<ver>/bin/istioctl`` (a fake istioctl: an executable Python script that appends its argv as one
JSON line to the file named by ``$ISTIOCTL_LOG`` when set, prints a plausible line, exits 0) and
``istio-<ver>/manifests/profiles/asm-multicloud.yaml``, then signs it with a fresh key using
``openssl dgst -sha256 -sign`` (raw DER ECDSA, the format of the ASM ``*.1.sig`` files).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import zipfile
from pathlib import Path

FAKE_ISTIOCTL = r'''#!/usr/bin/env python3
"""A fake istioctl for tests: logs its argv, prints a plausible line, exits 0."""
import json
import os
import sys

log = os.environ.get("ISTIOCTL_LOG")
if log:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(sys.argv[1:]) + "\n")
args = sys.argv[1:]
if args[:1] == ["version"]:
    print("client version: @VERSION@")
elif args[:1] == ["install"]:
    print("\u2714 Istio core installed\n\u2714 Istiod installed\n\u2714 Installation complete")
else:
    print("istioctl (fake) @VERSION@: " + " ".join(args))
sys.exit(0)
'''

ASM_MULTICLOUD = """apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
spec:
  profile: empty
  hub: gcr.io/gke-release/asm
  tag: @VERSION@
  components:
    base:
      enabled: true
    pilot:
      enabled: true
  values:
    global:
      meshID: mesh1
"""


def release_members(version: str) -> list[tuple[str, bytes, int]]:
    """(path, content, mode) of every file in the test release."""
    root = f"istio-{version}"
    return [
        (f"{root}/bin/istioctl", FAKE_ISTIOCTL.replace("@VERSION@", version).encode(), 0o755),
        (f"{root}/manifests/profiles/asm-multicloud.yaml", ASM_MULTICLOUD.replace("@VERSION@", version).encode(), 0o644),
    ]


def build_tarball(path: Path, version: str) -> None:
    root = f"istio-{version}"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for d in (root, f"{root}/bin", f"{root}/manifests", f"{root}/manifests/profiles"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = 1_600_000_000
            tar.addfile(info)
        for name, data, mode in release_members(version):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = 1_600_000_000
            tar.addfile(info, io.BytesIO(data))


def build_zip(path: Path, version: str) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in release_members(version):
            info = zipfile.ZipInfo(name, date_time=(2020, 9, 13, 12, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)


def openssl_keypair(folder: Path, name: str = "release", *, algorithm: str = "P-256") -> tuple[Path, Path]:
    """A fresh key made by ``openssl genpkey``: (private PEM, public PEM). ``algorithm``: P-256, P-384, RSA."""
    folder.mkdir(parents=True, exist_ok=True)
    priv, pub = folder / f"{name}.key", folder / f"{name}.pem"
    if algorithm == "RSA":
        opts = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    else:
        opts = ["-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{algorithm}"]
    subprocess.run(["openssl", "genpkey", *opts, "-out", str(priv)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(priv), "-pubout", "-out", str(pub)], check=True, capture_output=True)
    return priv, pub


def openssl_sign(priv: Path, data_file: Path, sig: Path, *, digest: str = "sha256") -> Path:
    """``openssl dgst -<digest> -sign priv -out sig data_file`` (raw DER for ECDSA)."""
    subprocess.run(
        ["openssl", "dgst", f"-{digest}", "-sign", str(priv), "-out", str(sig), str(data_file)],
        check=True,
        capture_output=True,
    )
    return sig


def make_signed_release(
    tmp: Path, version: str = "1.8.6-asm.8", platform: str = "linux-amd64"
) -> tuple[Path, Path, Path]:
    """Build and sign a small release in ``tmp``: (tarball, its ``.1.sig``, the public key PEM)."""
    tmp.mkdir(parents=True, exist_ok=True)
    ext = "zip" if platform == "win" else "tar.gz"
    tarball = tmp / f"istio-{version}-{platform}.{ext}"
    if platform == "win":
        build_zip(tarball, version)
    else:
        build_tarball(tarball, version)
    priv, pub = openssl_keypair(tmp / "keys", "release")
    sig = openssl_sign(priv, tarball, tmp / f"{tarball.name}.1.sig")
    return tarball, sig, pub
