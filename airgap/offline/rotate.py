"""Rotation: a cluster's next intermediate, and a root rotation through istiod's multi-root trust.

Intermediate rotation (``ca rotate CLUSTER``): a new key and intermediate are made while the old
one is still valid; the old folder moves to ``PKI/archive/<cluster>/<old serial>/`` and the new one
takes ``PKI/<cluster>/``, so the next bundle carries it and ``bundle import --rotate`` swaps it in.
Workload certificates from the old intermediate keep verifying: they chain to the same root.

Root rotation, in three steps (see docs/ceremony.md for the walk-through):

1. ``ca rotate-root`` makes the next root in ``PKI/next-root/`` and rewrites every cluster's
   ``root-cert.pem`` to carry **both** roots (old first). Bundles now carry the dual-root trust;
   import them everywhere and let every proxy pick up the new trust bundle.
2. ``ca rotate CLUSTER`` for each cluster: the new intermediate is signed by the *next* root,
   ``cert-chain.pem`` ends at the next root, ``root-cert.pem`` still carries both roots, so old and
   new workload certificates verify against each other during the transition.
3. ``ca rotate-root --finish``: refused until every cluster's intermediate is under the next root;
   then the old root moves to ``PKI/archive/root/<serial>/``, the next root becomes the root, each
   ``root-cert.pem`` carries the new root only, and a fresh CRL is signed by it if one existed.

Trust: the PKI folder is the officer's own. Each step checks its precondition before writing.
Renames run in a fixed order so every file exists in exactly one place at any moment; an
interrupted intermediate rotation is finished by the next command that locks the folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from airgap.core import x509 as cx
from airgap.core.atomic import ensure_dir, fsync_dir, staged_dir, write_new, write_replace
from airgap.core.keys import (
    KeyType,
    PrivateKey,
    check_key_type,
    encode_private_key,
    generate_private_key,
    key_type_of,
    keys_match,
    load_private_key,
    load_public_key_pem,
    spki_sha256,
)
from airgap.errors import InvalidInput, Refused
from airgap.offline import ceremony
from airgap.offline.ca import (
    ROOT_CERT,
    ROOT_KEY,
    CAStore,
    IntermediateRecord,
    RootRecord,
    _cert_params,
    _make_key,
)
from airgap.offline.ceremony import Officer

ROTATE_PREFIX = ".rotate-"
ARCHIVE = "archive"


def archive_dir(store: CAStore) -> Path:
    return store.path / ARCHIVE


def archived_certs(store: CAStore, cluster: str) -> list[x509.Certificate]:
    """Intermediates a cluster had before (``PKI/archive/<cluster>/<serial>/ca-cert.pem``)."""
    d = archive_dir(store) / cluster
    if not d.is_dir():
        return []
    out = []
    for sub in sorted(d.iterdir()):
        p = sub / "ca-cert.pem"
        if p.is_file():
            out.append(cx.load_cert_pem(p.read_bytes(), source=str(p)))
    return out


def finish_interrupted(store: CAStore) -> None:
    """Complete a rotation a crash interrupted (called with the lock held by :meth:`CAStore.locked`).

    ``PKI/.rotate-X`` complete and ``PKI/X`` gone: the old folder was archived, finish the rename.
    Both present: the crash came before the archive step; the new folder is discarded (the act
    was not recorded, so the log and the folder agree).
    """
    if not store.path.is_dir():
        return
    for d in store.path.iterdir():
        if d.is_dir() and d.name.startswith(ROTATE_PREFIX):
            final = store.path / d.name[len(ROTATE_PREFIX) :]
            if final.exists():
                shutil.rmtree(d, ignore_errors=True)
            else:
                os.rename(d, final)
                fsync_dir(store.path)


@dataclass(frozen=True)
class SigningRoot:
    cert: x509.Certificate
    key: PrivateKey
    is_next: bool


def _signing_root(store: CAStore, passphrase: bytes | None, root_key: PrivateKey | None) -> SigningRoot:
    """The root that signs new intermediates: the next root during a root rotation, else the root."""
    nd = store.next_root_dir
    if not (nd / ROOT_CERT).exists():
        cert, key = store.load_root(passphrase, root_key)
        return SigningRoot(cert, key, False)
    cert = cx.load_cert_pem((nd / ROOT_CERT).read_bytes(), source=str(nd / ROOT_CERT))
    if root_key is None:
        if not (nd / ROOT_KEY).exists():
            raise InvalidInput(f"{nd}: the next root key is in a PKCS#11 token; give the token PIN")
        root_key = load_private_key(nd / ROOT_KEY, passphrase)
    if not keys_match(root_key, cert.public_key()):  # type: ignore[arg-type]
        raise InvalidInput(f"the signing key {spki_sha256(root_key)} does not match {nd / ROOT_CERT}")
    return SigningRoot(cert, root_key, True)


def _san_strings(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = [f"DNS:{v}" for v in san.get_values_for_type(x509.DNSName)]
    out += [f"URI:{v}" for v in san.get_values_for_type(x509.UniformResourceIdentifier)]
    out += [f"IP:{v}" for v in san.get_values_for_type(x509.IPAddress)]
    return out


def _attr(name: x509.Name, oid: x509.ObjectIdentifier, default: str) -> str:
    vals = name.get_attributes_for_oid(oid)
    return str(vals[0].value) if vals else default


@dataclass(frozen=True)
class Rotation:
    cluster: str
    old_serial: str
    old_fingerprint: str
    new: IntermediateRecord
    under_next_root: bool
    archived_to: Path


def rotate_intermediate(
    store: CAStore,
    cluster: str,
    *,
    days: int,
    passphrase: bytes | None,
    key_passphrase: bytes | None,
    key_type: KeyType | None = None,
    sans: Sequence[str] | None = None,
    root_key: PrivateKey | None = None,
    officer: Officer | None = None,
) -> Rotation:
    """Issue ``cluster``'s next intermediate and make it current; archive the old one.

    Subject (O, CN, L) and SANs are copied from the old intermediate unless ``sans`` is given;
    the key type too unless ``key_type`` is. Every check runs before a key is made.
    """
    if days <= 0:
        raise InvalidInput("--days must be positive")
    current = store.cluster_dir(cluster)
    if sans is not None:
        cx.validate_sans(list(sans))
    with store.locked():
        prep = ceremony.prepare(store.path, officer)
        if not (current / "ca-cert.pem").exists():
            raise Refused(f"{current}: no intermediate to rotate; use 'airgap ca issue {cluster}'")
        old = cx.load_cert_pem((current / "ca-cert.pem").read_bytes(), source=str(current / "ca-cert.pem"))
        old_serial = format(old.serial_number, "x")
        dest = archive_dir(store) / cluster / old_serial
        if dest.exists():
            raise Refused(f"{dest}: already exists; refusing to overwrite an archived intermediate")
        signer = _signing_root(store, passphrase, root_key)
        cx.check_within_root(signer.cert, days)
        kt = key_type or check_key_type(key_type_of(old.public_key()))  # type: ignore[arg-type]
        key_pem, pub_pem = _make_key(kt, key_passphrase)
        org = _attr(old.subject, x509.NameOID.ORGANIZATION_NAME, "Istio")
        cn = _attr(old.subject, x509.NameOID.COMMON_NAME, "Intermediate CA")
        cert = cx.build_intermediate(
            load_public_key_pem(pub_pem, source=cluster),
            cluster=cluster,
            root_cert=signer.cert,
            root_key=signer.key,
            org=org,
            cn=cn,
            days=days,
            sans=list(sans) if sans is not None else (_san_strings(old) or [cx.ISTIOD_SAN]),
        )
        staging = store.path / f"{ROTATE_PREFIX}{cluster}"
        if staging.exists():
            shutil.rmtree(staging)
        store.write_cluster(staging, key_pem, cert, signer.cert)
        # The swap: old folder to the archive, then the new one into place (finish_interrupted
        # completes the second rename if a crash falls between them).
        ensure_dir(dest.parent, mode=0o700)
        os.rename(current, dest)
        fsync_dir(dest.parent)
        os.rename(staging, current)
        fsync_dir(store.path)
        inv = store.read_inventory()
        rec = store._record_of(cluster, cert, signer.cert)
        inv.intermediates.append(rec)
        store._write_inventory(inv)
        if officer is not None:
            ceremony.record(
                store.path,
                "rotate",
                {
                    **_cert_params(cert, cluster=cluster),
                    "old_serial": old_serial,
                    "old_fingerprint": cx.fingerprint(old),
                    "under_next_root": signer.is_next,
                },
                officer,
                prepared=prep,
            )
    return Rotation(cluster, old_serial, cx.fingerprint(old), rec, signer.is_next, dest)


def _rewrite_trust(store: CAStore) -> list[str]:
    """Give every cluster the current trust (:meth:`CAStore.trust_pem`) as its ``root-cert.pem``."""
    pem = store.trust_pem()
    names = store.clusters()
    for name in names:
        write_replace(store.path / name / "root-cert.pem", pem)
    return names


def begin_root_rotation(
    store: CAStore,
    *,
    key_type: KeyType,
    days: int,
    org: str,
    cn: str,
    passphrase: bytes | None,
    officer: Officer | None = None,
    root_key: PrivateKey | None = None,
    key_record: bytes | None = None,
    key_params: dict[str, str] | None = None,
) -> RootRecord:
    """Step 1: make the next root (file key encrypted with ``passphrase``, or ``root_key`` in a
    token) and give every cluster a ``root-cert.pem`` carrying both roots."""
    from airgap.offline.pkcs11 import REF_NAME

    if days <= 0:
        raise InvalidInput("--days must be positive")
    nd = store.next_root_dir
    with store.locked():
        prep = ceremony.prepare(store.path, officer)
        old = store.load_root_cert()
        if nd.exists():
            raise Refused(f"{nd}: a root rotation is already in progress; finish it with 'ca rotate-root --finish'")
        key = root_key if root_key is not None else generate_private_key(key_type)
        cert = cx.build_root(key, org=org, cn=cn, days=days)
        if cx.fingerprint(cert) == cx.fingerprint(old):  # pragma: no cover - random serials
            raise Refused("the next root equals the root")
        with staged_dir(nd, mode=0o700) as tmp:
            if root_key is None:
                write_new(tmp / ROOT_KEY, encode_private_key(key, passphrase), mode=0o600)
            else:
                write_new(tmp / REF_NAME, key_record or b"{}\n")
            write_new(tmp / ROOT_CERT, cx.cert_pem(cert))
        _rewrite_trust(store)
        if officer is not None:
            storage = key_params or {"storage": "file", "file": f"next-root/{ROOT_KEY}"}
            ceremony.record(
                store.path,
                "key-create",
                {"purpose": "next-root", "key_type": key_type_of(key), "key_id": spki_sha256(key), **storage},
                officer,
                prepared=prep,
            )
            ceremony.record(
                store.path,
                "root-rotation-begin",
                {**_cert_params(cert, role="next-root"), "current_root_fingerprint": cx.fingerprint(old)},
                officer,
                prepared=prep,
            )
    return RootRecord.of(cert)


def finish_root_rotation(
    store: CAStore,
    *,
    passphrase: bytes | None,
    root_key: PrivateKey | None = None,
    officer: Officer | None = None,
    next_update_days: int = 30,
) -> RootRecord:
    """Step 3: retire the old root once every cluster's intermediate is under the next root.

    ``passphrase``/``root_key`` open the *next* root's key (it signs the fresh CRL, when the PKI
    has one). Refused (exit 4) while any cluster still has an intermediate under the old root.
    """
    from airgap.offline import crl as crl_mod
    from airgap.offline.pkcs11 import REF_NAME

    nd = store.next_root_dir
    with store.locked():
        prep = ceremony.prepare(store.path, officer)
        if not (nd / ROOT_CERT).exists():
            raise Refused(f"{nd}: no root rotation in progress; start one with 'airgap ca rotate-root'")
        signer = _signing_root(store, passphrase, root_key)
        lagging = [
            name
            for name in store.clusters()
            if not cx.signed_by(
                cx.load_cert_pem((store.path / name / "ca-cert.pem").read_bytes(), source=name), signer.cert
            )
        ]
        if lagging:
            raise Refused(
                f"cluster(s) {', '.join(lagging)} still have an intermediate under the old root; "
                f"run 'airgap ca rotate {lagging[0]}' first"
            )
        old = store.load_root_cert()
        dest = archive_dir(store) / "root" / format(old.serial_number, "x")
        if dest.exists():
            raise Refused(f"{dest}: already exists; refusing to overwrite an archived root")
        ensure_dir(dest, mode=0o700)
        # Each file moves once; at any moment it exists in exactly one place.
        for name in (ROOT_KEY, REF_NAME, ROOT_CERT):
            if (store.path / name).exists():
                os.rename(store.path / name, dest / name)
        fsync_dir(dest)
        for name in (ROOT_KEY, REF_NAME, ROOT_CERT):
            if (nd / name).exists():
                os.rename(nd / name, store.path / name)
        fsync_dir(store.path)
        nd.rmdir()
        _rewrite_trust(store)
        new = store.load_root_cert()
        rec = RootRecord.of(new)
        inv = store.read_inventory()
        inv.root = rec
        store._write_inventory(inv)
        crl_rec = None
        if (store.path / crl_mod.CRL_NAME).exists():
            state = crl_mod.read_state(store.path)
            crl_rec = crl_mod.publish_crl(
                store.path, new, signer.key, state, store.clusters(), next_update_days=next_update_days
            )
        if officer is not None:
            ceremony.record(
                store.path,
                "root-rotation-finish",
                {**_cert_params(new, role="root"), "retired_root_fingerprint": cx.fingerprint(old)},
                officer,
                prepared=prep,
            )
            if crl_rec is not None:
                ceremony.record(store.path, "crl", crl_mod._crl_params(crl_rec), officer, prepared=prep)
    return rec


__all__ = [
    "Rotation",
    "archived_certs",
    "begin_root_rotation",
    "finish_interrupted",
    "finish_root_rotation",
    "rotate_intermediate",
]
