"""``ca request`` on the jump host: make a cluster's CA key here and a signed request for the root.

The key never crosses the gap: ``JUMPDIR/CLUSTER/ca-key.pem`` (0600, PKCS#8, encrypted unless the
operator asks otherwise) stays on this side; only the request file (a CSR signed into the bundle
family, :mod:`airgap.core.request_file`) is carried to the root host. The CSR's subject is
informational (``O=Istio, L=CLUSTER, CN=Intermediate CA``): the root ignores it.

Trust: the jump folder and the operator's signing key are the operator's own. Writes are atomic;
the key is never replaced (exit 4 when it exists) and removed again if the request cannot be written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from airgap.core.atomic import ensure_dir, write_new
from airgap.core.keys import (
    KeyType,
    PrivateKey,
    encode_private_key,
    generate_private_key,
    signature_hash_for,
    spki_sha256,
)
from airgap.core.names import CA_KEY
from airgap.core.request_file import DEFAULT_REQUEST_DAYS, check_cluster, open_request, write_request
from airgap.errors import WouldOverwrite

KEY_NAME = CA_KEY


@dataclass(frozen=True)
class MadeRequest:
    cluster: str
    request_id: str
    key_path: Path
    key_id: str
    out: Path
    expires: str


def build_csr(key: PrivateKey, cluster: str) -> bytes:
    """A PEM PKCS#10 request for ``key`` (subject informational; the root takes only the key)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, cluster),
            x509.NameAttribute(NameOID.COMMON_NAME, "Intermediate CA"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, signature_hash_for(key))
    return csr.public_bytes(serialization.Encoding.PEM)


def make_request(
    cluster: str,
    *,
    jump_dir: Path,
    sign_key: PrivateKey,
    out: Path,
    key_type: KeyType,
    passphrase: bytes | None,
    days: int = DEFAULT_REQUEST_DAYS,
) -> MadeRequest:
    """Generate the cluster key under ``jump_dir/cluster/`` and write the signed request ``out``."""
    name = check_cluster(cluster)
    key_path = jump_dir / name / KEY_NAME
    for p in (key_path, out):
        if p.exists() or p.is_symlink():
            raise WouldOverwrite(f"{p}: already exists; refusing to overwrite")
    key = generate_private_key(key_type)
    request = write_request(
        build_csr(key, name), cluster=name, sign_key=sign_key, created=dt.datetime.now(dt.UTC), days=days
    )
    verified = open_request(request, [sign_key.public_key()], source=str(out))  # what the root will check
    ensure_dir(jump_dir / name, mode=0o700)
    write_new(key_path, encode_private_key(key, passphrase), mode=0o600)
    try:
        write_new(out, request)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    return MadeRequest(name, verified.request_id, key_path, spki_sha256(key), out, verified.manifest.expires)


__all__ = ["KEY_NAME", "MadeRequest", "build_csr", "make_request"]
