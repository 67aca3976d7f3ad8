"""Roots made by openssl with chosen extensions (issue 23: adopted roots), for the hardening tests."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import openssl

MAKEFILE_EXTS = (
    "subjectKeyIdentifier = hash",
    "basicConstraints = critical, CA:true",
    "keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign",
)


def openssl_root(
    folder: Path, exts: tuple[str, ...] = MAKEFILE_EXTS, *, md: str = "sha256", days: int = 3650
) -> tuple[Path, Path]:
    """(root-cert.pem, root-key.pem): an EC P-256 self-signed root whose extensions are exactly ``exts``
    (openssl config lines), signed with ``md``, as Istio's Makefile.selfsigned.mk makes them."""
    folder.mkdir(parents=True, exist_ok=True)
    key, cert, conf = folder / "root-key.pem", folder / "root-cert.pem", folder / "root-ca.conf"
    conf.write_text(
        "[ req ]\nprompt = no\nutf8 = yes\ndistinguished_name = dn\nx509_extensions = ext\n"
        "[ dn ]\nO = Istio\nCN = Root CA\n[ ext ]\n" + "\n".join(exts) + "\n"
    )
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    openssl("req", "-x509", "-new", "-key", key, "-config", conf, f"-{md}", "-days", str(days), "-out", cert)
    return cert, key


def openssl_leaf(folder: Path, ca_cert: Path, ca_key: Path, passfile: Path | None = None) -> Path:
    """A workload-like leaf (SPIFFE URI SAN, serverAuth + clientAuth) signed by ``ca_key``, as istiod signs."""
    key, csr, cert, ext = folder / "leaf.key", folder / "leaf.csr", folder / "leaf.pem", folder / "leaf.ext"
    ext.write_text(
        "basicConstraints = critical, CA:false\nkeyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth, clientAuth\n"
        "subjectAltName = URI:spiffe://cluster.local/ns/default/sa/default\n"
    )
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", "/O=cluster.local", "-out", csr)
    pw = ("-passin", f"file:{passfile}") if passfile is not None else ()
    openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, *pw, "-days", "1", "-extfile", ext,
            "-set_serial", "7", "-out", cert)  # fmt: skip
    return cert


def openssl_verifies(root: Path, intermediate: Path, leaf: Path) -> bool:
    """``openssl verify`` of leaf → intermediate → root (the second oracle)."""
    r = openssl("verify", "-CAfile", root, "-untrusted", intermediate, leaf, check=False)
    return r.returncode == 0


@contextlib.contextmanager
def small_tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A real, small file system (tmpfs of ``size`` bytes) mounted at ``path``; skips the test
    (with the reason) where mounting is not permitted (not root, or a container without CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True, check=False)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"a full disk needs a small tmpfs, and mount is not permitted here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def fill(folder: Path, leave_pages: int) -> Path:
    """Fill ``folder``'s file system, then free ``leave_pages`` pages of 4 KiB: a nearly full disk."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - 4096 * leave_pages - (filler.stat().st_size % 4096)))
    return filler
