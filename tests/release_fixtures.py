"""Signed release tarballs for tests, made and signed with the real ``openssl`` CLI.

``make_signed_release(tmp)`` builds ``istio-<ver>-<platform>.tar.gz`` (``.zip`` for ``win``) holding
``istio-<ver>/bin/istioctl`` (a fake istioctl: an executable Python script that appends its argv as one
JSON line to the file named by ``$ISTIOCTL_LOG`` when set, prints a plausible line, exits 0) and
``istio-<ver>/manifests/profiles/asm-multicloud.yaml``, then signs it with a fresh key using
``openssl dgst -sha256 -sign`` (raw DER ECDSA, the format of the ASM ``*.1.sig`` files).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

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


# Istio 1.8's own profile set, cut to what decides images (istio/istio release-1.8,
# manifests/profiles/*.yaml and manifests/charts/*/values.yaml): the hub and tag, pilot's image,
# the proxy's (sidecars, gateways, proxy_init) and install-cni's, and whether CNI is on.
ISTIO_PROFILES = {
    "default.yaml": """apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata:
  namespace: istio-system
spec:
  hub: @HUB@
  tag: @VERSION@
  components:
    base:
      enabled: true
    pilot:
      enabled: true
    ingressGateways:
    - name: istio-ingressgateway
      enabled: true
    cni:
      enabled: false
  values:
    global:
      proxy:
        image: proxyv2
      proxy_init:
        image: proxyv2
    pilot:
      image: pilot
""",
    "empty.yaml": """apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
spec:
  components:
    base:
      enabled: false
    pilot:
      enabled: false
""",
    "minimal.yaml": """apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
spec:
  components:
    ingressGateways:
    - name: istio-ingressgateway
      enabled: false
""",
    "cni.yaml": """apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
spec:
  components:
    cni:
      enabled: true
""",
}
DISCOVERY_CHART_VALUES = """pilot:
  image: pilot
global:
  hub: gcr.io/istio-testing
  tag: latest
  proxy:
    image: proxyv2
  proxy_init:
    image: proxyv2
"""
CNI_CHART_VALUES = """cni:
  hub: ""
  tag: ""
  image: install-cni
"""


def release_members(
    version: str, *, istio_profiles: bool = False, hub: str = "docker.io/istio"
) -> list[tuple[str, bytes, int]]:
    """(path, content, mode) of every file in the test release (``istio_profiles``: Istio 1.8's
    profile set and the CNI chart's values too, for ``images list``)."""
    root = f"istio-{version}"
    profile = ASM_MULTICLOUD.replace("@VERSION@", version).encode()
    members = [
        (f"{root}/bin/istioctl", FAKE_ISTIOCTL.replace("@VERSION@", version).encode(), 0o755),
        (f"{root}/manifests/profiles/asm-multicloud.yaml", profile, 0o644),
    ]
    if istio_profiles:
        for name, text in ISTIO_PROFILES.items():
            data = text.replace("@VERSION@", version).replace("@HUB@", hub).encode()
            members.append((f"{root}/manifests/profiles/{name}", data, 0o644))
        members.append((f"{root}/manifests/charts/istio-cni/values.yaml", CNI_CHART_VALUES.encode(), 0o644))
        discovery = f"{root}/manifests/charts/istio-control/istio-discovery/values.yaml"
        members.append((discovery, DISCOVERY_CHART_VALUES.encode(), 0o644))
    return members


def build_tarball(path: Path, version: str, **kw: Any) -> None:
    root = f"istio-{version}"
    members = release_members(version, **kw)
    folders = {str(Path(name).parent) for name, _, _ in members}
    folders |= {str(p) for f in list(folders) for p in Path(f).parents if str(p) != "."}
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(folders | {root}):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = 1_600_000_000
            tar.addfile(info)
        for name, data, mode in members:
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
    tmp: Path, version: str = "1.8.6-asm.8", platform: str = "linux-amd64", **kw: Any
) -> tuple[Path, Path, Path]:
    """Build and sign a small release in ``tmp``: (tarball, its ``.1.sig``, the public key PEM).

    ``istio_profiles=True, hub=...``: with Istio 1.8's profile set (see :func:`release_members`)."""
    tmp.mkdir(parents=True, exist_ok=True)
    ext = "zip" if platform == "win" else "tar.gz"
    tarball = tmp / f"istio-{version}-{platform}.{ext}"
    if platform == "win":
        build_zip(tarball, version)
    else:
        build_tarball(tarball, version, **kw)
    priv, pub = openssl_keypair(tmp / "keys", "release")
    sig = openssl_sign(priv, tarball, tmp / f"{tarball.name}.1.sig")
    return tarball, sig, pub


# --- hostile archives: each entry is one attack, with one line saying what is wrong ----------------


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, *, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = mode
    info.mtime = 1_600_000_000
    return info


def _zip(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name, date_time=(2020, 9, 13, 12, 0, 0))
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


def evil_archive(kind: str, folder: Path) -> Path:
    """Build the hostile archive ``kind`` in ``folder`` (see :data:`EVIL_KINDS`)."""
    folder.mkdir(parents=True, exist_ok=True)
    ok = (_info("istio-1/bin/istioctl", mode=0o755), b"#!/bin/sh\n")
    tgz = folder / f"evil-{kind}.tar.gz"
    if kind == "dotdot":  # a member climbing out with ../
        return _tar(tgz, [ok, (_info("istio-1/../../escaped.txt"), b"pwned\n")])
    if kind == "absolute":  # an absolute member name
        return _tar(tgz, [ok, (_info(str(folder.parent / "escaped-abs.txt")), b"pwned\n")])
    if kind == "symlink-out":  # a symlink pointing outside the tree
        return _tar(tgz, [ok, (_info("istio-1/out", tarfile.SYMTYPE, link="../../.."), None)])
    if kind == "symlink-abs":  # a symlink to an absolute path
        return _tar(tgz, [ok, (_info("istio-1/etc", tarfile.SYMTYPE, link="/etc"), None)])
    if kind == "symlink-write-through":  # a link inside, then a member written through it
        return _tar(
            tgz,
            [
                ok,
                (_info("istio-1/sub", tarfile.DIRTYPE, mode=0o755), None),
                (_info("istio-1/d", tarfile.SYMTYPE, link="sub"), None),
                (_info("istio-1/d/x.txt"), b"through a link\n"),
            ],
        )
    if kind == "symlink-chain":  # each link looks inside on its own; together they escape
        return _tar(
            tgz,
            [
                ok,
                (_info("istio-1/s", tarfile.SYMTYPE, link="l/../.."), None),
                (_info("istio-1/l", tarfile.SYMTYPE, link="."), None),
            ],
        )
    if kind == "hardlink-out":  # a hard link to a file outside the tree
        return _tar(tgz, [ok, (_info("istio-1/passwd", tarfile.LNKTYPE, link="../../etc/passwd"), None)])
    if kind == "hardlink-abs":  # a hard link to an absolute path
        return _tar(tgz, [ok, (_info("istio-1/passwd", tarfile.LNKTYPE, link="/etc/passwd"), None)])
    if kind == "device":  # a character device node
        dev = _info("istio-1/null", tarfile.CHRTYPE)
        dev.devmajor, dev.devminor = 1, 3
        return _tar(tgz, [ok, (dev, None)])
    if kind == "fifo":  # a named pipe
        return _tar(tgz, [ok, (_info("istio-1/pipe", tarfile.FIFOTYPE), None)])
    if kind == "duplicate":  # the same file twice (a later copy would replace a checked one)
        return _tar(tgz, [ok, (_info("istio-1/bin/istioctl", mode=0o755), b"#!/bin/sh\necho evil\n")])
    if kind == "bomb":  # 4 MiB of zeros in a few KiB: over the test cap of 2 MiB
        return _tar(tgz, [ok, (_info("istio-1/zeros"), bytes(4 * 1024 * 1024))])
    if kind == "garbage":  # not an archive at all
        tgz.write_bytes(b"\x1f\x8b" + b"\x00" * 64)
        return tgz
    zp = folder / f"evil-{kind}.zip"
    if kind == "zip-dotdot":  # a zip member climbing out with ../
        return _zip(zp, [("istio-1/../../escaped.txt", b"pwned\n", 0o100644)])
    if kind == "zip-absolute":  # an absolute zip member
        return _zip(zp, [("/tmp/escaped-abs.txt", b"pwned\n", 0o100644)])
    if kind == "zip-symlink":  # a zip entry with symlink mode bits
        return _zip(zp, [("istio-1/link", b"/etc/passwd", 0o120777)])
    if kind == "zip-bomb":  # 4 MiB of zeros compressed to a few KiB
        return _zip(zp, [("istio-1/zeros", bytes(4 * 1024 * 1024), 0o100644)])
    raise ValueError(kind)


EVIL_KINDS = (
    "dotdot",
    "absolute",
    "symlink-out",
    "symlink-abs",
    "symlink-write-through",
    "symlink-chain",
    "hardlink-out",
    "hardlink-abs",
    "device",
    "fifo",
    "duplicate",
    "bomb",
    "garbage",
    "zip-dotdot",
    "zip-absolute",
    "zip-symlink",
    "zip-bomb",
)


# --- an extracted, verified release (mesh install tests) ------------------------------------------------


@pytest.fixture(scope="session")
def _release_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("release")
    from tests.helpers import run_cli

    tarball, sig, pub = make_signed_release(tmp)
    out = tmp / "extracted"
    r = run_cli("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", out)
    assert r.code == 0, r.err
    return out


@pytest.fixture
def release(_release_template: Path, tmp_path: Path) -> Path:
    """A private copy of the extracted release (tests may tamper with it)."""
    dst = tmp_path / "release"
    shutil.copytree(_release_template, dst, symlinks=True)
    return dst
