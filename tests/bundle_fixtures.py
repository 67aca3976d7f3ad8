"""Bundle fixtures and the mutate-and-resign helper, shared by every bundle test.

``make_bundle`` seals a real bundle from the session PKI; ``read_entries`` / ``write_entries``
take a bundle apart and put any (hostile) archive back together; ``resign`` does both around a
mutation and signs the new manifest, so each attack case is a few lines and fails only on the
check it targets.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.core import age
from airgap.core.bundle import (
    BLOCK,
    SIGNATURE_NAME,
    canonical_json,
    padding_for,
    scan_archive,
    sign_manifest,
    ustar_header,
)
from airgap.core.keys import (
    PrivateKey,
    load_private_key,
    load_public_key,
    public_pem,
    spki_sha256,
    write_private_key,
)
from airgap.core.limits import DEFAULT_LIMITS
from airgap.offline.bundle import SealedBundle, seal_bundle
from airgap.offline.ceremony import Officer
from tests.conftest import NOW, PASSPHRASE, made_at_now  # the session PKIs are made at NOW
from tests.helpers import make_pki


@dataclasses.dataclass(frozen=True)
class Keys:
    """Test keys: the officer's signing key (trusted), a stranger's, and two age identities."""

    signer: Path
    signer_pub: Path
    other_signer: Path
    other_signer_pub: Path
    identity: Path
    recipient: str
    recipient_pub: Path
    other_identity: Path
    other_recipient: str


@dataclasses.dataclass(frozen=True)
class RawEntry:
    """One archive entry as written: name, data, and (for hostile archives) type and link."""

    name: str
    data: bytes
    typeflag: bytes = b"0"
    linkname: str = ""


def new_keys(folder: Path) -> Keys:
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in ("signer", "other_signer"):
        key = ec.generate_private_key(ec.SECP256R1())
        paths[name] = folder / f"{name}.key"
        write_private_key(paths[name], key, None)
        paths[name + "_pub"] = folder / f"{name}.pub"
        paths[name + "_pub"].write_bytes(public_pem(key))
    me = age.new_recipient_key("operator", folder, None)
    other = age.new_recipient_key("stranger", folder, None)
    return Keys(
        signer=paths["signer"],
        signer_pub=paths["signer_pub"],
        other_signer=paths["other_signer"],
        other_signer_pub=paths["other_signer_pub"],
        identity=me.private,
        recipient=me.recipient,
        recipient_pub=me.public,
        other_identity=other.private,
        other_recipient=other.recipient,
    )


@pytest.fixture(scope="session")
def bkeys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Session-wide unencrypted test keys (fast); encrypted ones are tested on their own."""
    return new_keys(tmp_path_factory.mktemp("bundle-keys"))


@pytest.fixture(scope="session")
def _logged_pki_template(tmp_path_factory: pytest.TempPathFactory, bkeys: Keys) -> Path:
    """A P-256 PKI that keeps a ceremony log (root + c1), officer log key = ``bkeys.signer``.

    Entries: 1 log-start, 2 key-create, 3 init, 4 issue c1. Keys encrypted with PASSPHRASE.
    """
    d = tmp_path_factory.mktemp("logged-pki") / "pki"
    officer = Officer.from_key(load_private_key(bkeys.signer, None))
    with made_at_now():
        make_pki(d, ["c1"], passphrase=PASSPHRASE, key_passphrase=PASSPHRASE, officer=officer)
    return d


@pytest.fixture
def logged_pki(_logged_pki_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the logged PKI (officer = ``bkeys.signer``, its public key ``bkeys.signer_pub``)."""
    import shutil

    d = tmp_path / "logged-pki"
    shutil.copytree(_logged_pki_template, d)
    return d


def seal(
    pki: Path,
    out: Path,
    keys: Keys,
    *,
    sign_key: Path | None = None,
    officer: Officer | None = None,
    now: dt.datetime = NOW,
) -> SealedBundle:
    """``seal_bundle`` for c1 with the test defaults (encrypted to ``keys.recipient``)."""
    return seal_bundle(
        "c1",
        pki_dir=pki,
        sign_key_path=sign_key or keys.signer,
        sign_passphrase=None,
        pki_passphrase=PASSPHRASE,
        recipients=[keys.recipient],
        out=out,
        officer=officer,
        now=now,
    )


def make_bundle(
    pki: Path,
    tmp: Path,
    cluster: str = "c1",
    *,
    keys: Keys,
    includes: tuple[Path, ...] = (),
    name: str | None = None,
    now: dt.datetime = NOW,
    expires_days: int = 30,
    no_encrypt: bool = False,
) -> tuple[Path, Path, Path, bytes | None]:
    """Seal a real bundle; returns (bundle, signer_pub, identity_key, identity_passphrase)."""
    out = tmp / (name or f"{cluster}.bundle")
    seal_bundle(
        cluster,
        pki_dir=pki,
        sign_key_path=keys.signer,
        sign_passphrase=None,
        pki_passphrase=PASSPHRASE,
        recipients=[] if no_encrypt else [keys.recipient],
        includes=includes,
        expires_days=expires_days,
        no_encrypt=no_encrypt,
        out=out,
        now=now,
    )
    return out, keys.signer_pub, keys.identity, None


def read_entries(bundle: Path) -> list[RawEntry]:
    """Every entry of a well-formed bundle, in order (manifest and signature included)."""
    with open(bundle, "rb") as fh:
        entries = scan_archive(fh, bundle.stat().st_size, limits=DEFAULT_LIMITS, source=str(bundle))
        out = []
        for e in entries:
            fh.seek(e.offset)
            out.append(RawEntry(e.name, fh.read(e.size)))
    return out


def raw_header(entry: RawEntry) -> bytes:
    """A ustar header for any entry, bypassing the writer's name checks (for hostile names)."""
    try:
        return ustar_header(entry.name, len(entry.data), typeflag=entry.typeflag, linkname=entry.linkname)
    except Exception:
        pass
    h = bytearray(ustar_header("x", len(entry.data), typeflag=entry.typeflag))
    raw = entry.name.encode("utf-8")[:100]
    h[0:100] = raw.ljust(100, b"\0")
    h[148:156] = b" " * 8
    h[148:156] = format(sum(h), "o").zfill(6).encode() + b"\0 "
    return bytes(h)


def write_entries(path: Path, entries: list[RawEntry]) -> Path:
    """Write ``entries`` as a ustar archive ending in two zero blocks (no checks at all)."""
    with open(path, "wb") as fh:
        for e in entries:
            fh.write(raw_header(e))
            fh.write(e.data + padding_for(len(e.data)))
        fh.write(b"\0" * (2 * BLOCK))
    return path


def manifest_doc(bundle: Path) -> dict[str, Any]:
    entries = read_entries(bundle)
    doc: dict[str, Any] = json.loads(entries[-2].data)
    return doc


def resign(
    src: Path,
    dst: Path,
    key_path: Path,
    *,
    manifest: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    members: Callable[[list[RawEntry]], list[RawEntry]] | None = None,
    rehash: bool = False,
    signature: Callable[[bytes], bytes] | None = None,
) -> Path:
    """Mutate a bundle and sign its (possibly changed) manifest again with ``key_path``.

    ``members`` edits the payload entries; ``rehash`` makes the manifest describe the new payload
    (sizes and hashes), so only the check under test can catch the change; ``manifest`` edits the
    manifest document last. Without ``rehash`` the manifest still describes the original members.
    """
    import hashlib

    entries = read_entries(src)
    payload, man = entries[:-2], entries[-2]
    if members is not None:
        payload = members(list(payload))
    doc: dict[str, Any] = json.loads(man.data)
    if rehash:
        by_path = {m["path"]: m for m in doc["members"]}
        doc["members"] = [
            {
                "path": e.name,
                "size": len(e.data),
                "sha256": hashlib.sha256(e.data).hexdigest(),
                "encrypted": by_path.get(e.name, {}).get("encrypted", e.name.endswith(".age")),
            }
            for e in payload
            if e.typeflag == b"0"
        ]
    key: PrivateKey = load_private_key(key_path, None)
    doc["signer"] = spki_sha256(key)  # as the real signer would write it; ``manifest`` may lie
    if manifest is not None:
        doc = manifest(doc)
    data = canonical_json(doc)
    sig = sign_manifest(key, data)
    if signature is not None:
        sig = signature(sig)
    return write_entries(dst, [*payload, RawEntry(man.name, data), RawEntry(SIGNATURE_NAME, sig)])


def trust_of(keys: Keys) -> list[Any]:
    return [load_public_key(keys.signer_pub)]


def crl_for(pki: Path, cluster: str) -> bytes:
    """A CRL signed by ``cluster``'s intermediate (an issuer a bundle must not carry a CRL of)."""

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from airgap.core.keys import load_private_key_pem

    cert = x509.load_pem_x509_certificate((pki / cluster / "ca-cert.pem").read_bytes())
    key = load_private_key_pem((pki / cluster / "ca-key.pem").read_bytes(), PASSPHRASE, source="k")
    now = dt.datetime.now(dt.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM)
