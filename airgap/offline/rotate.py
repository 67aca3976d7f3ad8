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

Each step is one act on :mod:`airgap.offline.act`; the order of its writes, and what recovery
does after a crash between two of them, is in :mod:`airgap.offline.recovery`. In short: the
journal, the inventory and the log come first; ``PKI/<cluster>/`` is swapped with the new folder in
one ``renameat2(RENAME_EXCHANGE)``, so a cluster never vanishes; recovery finishes what was
recorded and removes what was not, and records itself.

Trust: the PKI folder is the officer's own. Each step checks its precondition before writing.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from airgap.core import x509 as cx
from airgap.core.atomic import ensure_dir, move, staged_dir, write_new
from airgap.core.csr import VerifiedCSR
from airgap.core.keys import (
    KeyType,
    PrivateKey,
    check_key_type,
    encode_private_key,
    key_type_of,
    load_public_key_pem,
    spki_sha256,
)
from airgap.errors import InvalidInput, Refused
from airgap.offline.act import Act, pki_act
from airgap.offline.ceremony import Officer
from airgap.offline.crl import CRLRecord, build_crl, crl_pem
from airgap.offline.inventory import IntermediateRecord, RootRecord, cert_facts, read_revocations, write_revocations
from airgap.offline.issue import make_key, write_cluster
from airgap.offline.keysource import SigningRoot, signing_root
from airgap.offline.layout import (
    CA_CERT,
    ROOT_CERT,
    ROOT_KEY,
    ROOT_KEY_REF,
    layout_of,
)
from airgap.offline.lint import sign_certificate
from airgap.offline.recovery import (
    clear_journal,
    exchange,
    finish_root_moves,
    recover,
    rewrite_trust,
    write_crl_files,
    write_journal,
)


def archive_dir(pki: Path) -> Path:
    return layout_of(pki).archive_dir


def archived_certs(pki: Path, cluster: str) -> list[x509.Certificate]:
    """Intermediates a cluster had before (``PKI/archive/<cluster>/<serial>/ca-cert.pem``)."""
    return layout_of(pki).archived_certs(cluster)


def finish_interrupted(pki: Path) -> None:
    """Complete or undo what a crash interrupted (see :func:`airgap.offline.recovery.recover`)."""
    recover(layout_of(pki))


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
    pki: Path,
    cluster: str,
    *,
    days: int,
    passphrase: bytes | None,
    key_passphrase: bytes | None,
    key_type: KeyType | None = None,
    sans: Sequence[str] | None = None,
    root_key: PrivateKey | None = None,
    officer: Officer | None = None,
    csr: VerifiedCSR | None = None,
    request_id: str | None = None,
) -> Rotation:
    """Issue ``cluster``'s next intermediate and make it current; archive the old one.

    Subject (O, CN, L) and SANs are copied from the old intermediate unless ``sans`` is given;
    the key type too unless ``key_type`` is. Every check runs before a key is made. With ``csr``
    (a verified request, :func:`airgap.core.csr.verify_csr`) no key is made: the new intermediate
    certifies the request's key, held elsewhere, as ``ca sign`` does; a cluster whose key is held
    elsewhere can only be rotated so (exit 4 otherwise). Both paths pass the lint gate.
    """
    if days <= 0:
        raise InvalidInput("--days must be positive")
    layout = layout_of(pki)
    current = layout.cluster_dir(cluster)
    if sans is not None:
        cx.validate_sans(list(sans))
    with pki_act(layout, "rotate", officer) as act:
        old, dest = _rotation_checks(act, cluster, csr, request_id)
        signer = signing_root(layout, passphrase, root_key)
        cx.check_within_root(signer.cert, days)
        new = _NextIntermediate(cluster, old, signer, days, sans)
        cert, key_pem = new.sign(key_type=key_type, key_passphrase=key_passphrase, csr=csr)
        staging = layout.rotation_staging(cluster)
        if staging.exists():
            shutil.rmtree(staging)
        write_cluster(layout, staging, key_pem, cert, signer.cert)
        rec = IntermediateRecord.of(cluster, cert, signer.cert)
        if csr is not None:
            rec = dataclasses.replace(
                rec, key_held="elsewhere", key_id=csr.key_id, csr_sha256=csr.sha256, request_id=request_id
            )
        journal = {
            "kind": "rotate",
            "cluster": cluster,
            "fingerprint": rec.fingerprint,
            "old_fingerprint": cx.fingerprint(old),
            "archive": str(dest.relative_to(layout.path)),
        }
        try:
            write_journal(layout, journal)
        except Exception:  # a handled error before the journal: the new folder is nobody's yet
            shutil.rmtree(staging, ignore_errors=True)
            raise
        with act.settle_on_error():  # a handled error: recorded → finished, not recorded → undone, at once
            inv = act.inventory()
            inv.intermediates.append(rec)
            inv.remember_cert(cert, f"cluster {cluster} (intermediate")
            act.write_inventory(inv)
            act.record("rotate", _rotate_params(cluster, cert, old, signer.is_next, csr, request_id))
            # The swap: PKI/<cluster> and the new folder trade places in one step, then the old one
            # (now under the staging name) moves to the archive.
            exchange(current, staging)
            ensure_dir(dest.parent, mode=0o700)
            move(staging, dest)
        clear_journal(layout)
    old_serial = format(old.serial_number, "x")
    return Rotation(cluster, old_serial, cx.fingerprint(old), rec, signer.is_next, dest)


def _rotation_checks(
    act: Act, cluster: str, csr: VerifiedCSR | None, request_id: str | None
) -> tuple[x509.Certificate, Path]:
    """The rotation's preconditions (exit 4), before any key is made: (the current intermediate, its
    archive folder). A key held elsewhere rotates only with a request; a request's key must be one
    airgap never certified or held, its request id never signed."""
    layout = act.layout
    current = layout.cluster_dir(cluster)
    if not (current / CA_CERT).exists():
        raise Refused(f"{current}: no intermediate to rotate; use 'airgap ca issue {cluster}'")
    old = layout.load_cluster_cert(cluster)
    dest = layout.archived_cluster_dir(cluster) / format(old.serial_number, "x")
    if dest.exists():
        raise Refused(f"{dest}: already exists; refusing to overwrite an archived intermediate")
    inv = act.inventory()
    current_rec = inv.current(cluster)
    if csr is None and current_rec is not None and current_rec.held_elsewhere:
        raise Refused(
            f"cluster {cluster}'s CA key is held elsewhere: rotate it with a new request "
            f"('ca rotate {cluster} --csr FILE', or a request file with --trust PUB)"
        )
    if csr is not None:
        from airgap.offline.sign import refuse_known_key

        refuse_known_key(inv.key_ids or {}, csr.key_id)
        if request_id is not None and any(r.request_id == request_id for r in inv.intermediates):
            raise Refused(f"request {request_id} was already signed; make a new request ('airgap ca request')")
    return old, dest


@dataclass(frozen=True)
class _NextIntermediate:
    """The next intermediate of ``cluster``: the old one's subject and SANs (unless ``sans``)."""

    cluster: str
    old: x509.Certificate
    signer: SigningRoot
    days: int
    sans: Sequence[str] | None

    def sign(
        self, *, key_type: KeyType | None, key_passphrase: bytes | None, csr: VerifiedCSR | None
    ) -> tuple[x509.Certificate, bytes | None]:
        """(the certificate through the lint gate, the new key's PEM or None for a request's key)."""
        key_pem: bytes | None = None
        if csr is None:
            kt = key_type or check_key_type(key_type_of(self.old.public_key()))  # type: ignore[arg-type]
            key_pem, pub_pem = make_key(kt, key_passphrase)
            public = load_public_key_pem(pub_pem, source=self.cluster)
        else:
            public = csr.public_key
        builder = cx.intermediate_builder(
            public,
            cluster=self.cluster,
            root_cert=self.signer.cert,
            org=_attr(self.old.subject, x509.NameOID.ORGANIZATION_NAME, "Istio"),
            cn=_attr(self.old.subject, x509.NameOID.COMMON_NAME, "Intermediate CA"),
            days=self.days,
            sans=list(self.sans) if self.sans is not None else (_san_strings(self.old) or [cx.ISTIOD_SAN]),
        )
        what = f"cluster {self.cluster}"
        return sign_certificate(builder, issuer_cert=self.signer.cert, issuer_key=self.signer.key, what=what), key_pem


def _rotate_params(
    cluster: str,
    cert: x509.Certificate,
    old: x509.Certificate,
    under_next: bool,
    csr: VerifiedCSR | None,
    request_id: str | None,
) -> dict[str, object]:
    """The ``rotate`` log entry's parameters."""
    params: dict[str, object] = {
        **cert_facts(cert, cluster=cluster),
        "old_serial": format(old.serial_number, "x"),
        "old_fingerprint": cx.fingerprint(old),
        "under_next_root": under_next,
    }
    if csr is not None:
        params.update({"key_held": "elsewhere", "csr_sha256": csr.sha256})
        if request_id:
            params["request_id"] = request_id
    return params


def next_root_cn(current: x509.Certificate) -> str:
    """The default CN of the next root: the current root's, numbered ("Root CA" → "Root CA 2").

    Two roots with one subject would make chain building ambiguous during the rotation.
    """
    cn = _attr(current.subject, x509.NameOID.COMMON_NAME, "Root CA")
    m = re.fullmatch(r"(.*\S) (\d+)", cn)
    return f"{m.group(1)} {int(m.group(2)) + 1}" if m else f"{cn} 2"


def begin_root_rotation(
    pki: Path,
    *,
    key_type: KeyType,
    days: int,
    org: str,
    cn: str | None,
    passphrase: bytes | None,
    officer: Officer | None = None,
    root_key: PrivateKey | None = None,
    key_record: bytes | None = None,
    key_params: dict[str, str] | None = None,
) -> RootRecord:
    """Step 1: make the next root (file key encrypted with ``passphrase``, or ``root_key`` in a
    token) and give every cluster a ``root-cert.pem`` carrying both roots.

    ``cn`` None: :func:`next_root_cn` (never the current root's subject by default)."""
    if days <= 0:
        raise InvalidInput("--days must be positive")
    layout = layout_of(pki)
    nd = layout.next_root_dir
    with pki_act(layout, "rotate-root", officer) as act:
        old = layout.load_root_cert()
        if nd.exists():
            raise Refused(f"{nd}: a root rotation is already in progress; finish it with 'ca rotate-root --finish'")
        from airgap.core.keys import generate_private_key

        key = root_key if root_key is not None else generate_private_key(key_type)
        cert = sign_certificate(
            cx.root_builder(key, org=org, cn=cn if cn is not None else next_root_cn(old), days=days),
            issuer_cert=None,
            issuer_key=key,
            what="next root",
        )
        if cx.fingerprint(cert) == cx.fingerprint(old):  # pragma: no cover - random serials
            raise Refused("the next root equals the root")
        inv = act.inventory()  # the next root's key is held from now on: never certified as a cluster's
        inv.remember_cert(cert, "the next root (")
        act.write_inventory(inv)
        write_journal(layout, {"kind": "root-begin", "fingerprint": cx.fingerprint(cert)})
        with act.settle_on_error():  # a handled error: the next root is finished or never was, at once
            storage = key_params or {"storage": "file", "file": f"next-root/{ROOT_KEY}"}
            act.record(
                "key-create",
                {"purpose": "next-root", "key_type": key_type_of(key), "key_id": spki_sha256(key), **storage},
            )
            act.record(
                "root-rotation-begin",
                {**cert_facts(cert, role="next-root"), "current_root_fingerprint": cx.fingerprint(old)},
            )
            with staged_dir(nd, mode=0o700) as tmp:
                if root_key is None:
                    write_new(tmp / ROOT_KEY, encode_private_key(key, passphrase), mode=0o600)
                else:
                    write_new(tmp / ROOT_KEY_REF, key_record or b"{}\n")
                write_new(tmp / ROOT_CERT, cx.cert_pem(cert))
            rewrite_trust(layout)
        clear_journal(layout)
    return RootRecord.of(cert)


def finish_root_rotation(
    pki: Path,
    *,
    passphrase: bytes | None,
    root_key: PrivateKey | None = None,
    officer: Officer | None = None,
    next_update_days: int = 30,
) -> RootRecord:
    """Step 3: retire the old root once every cluster's intermediate is under the next root.

    ``passphrase``/``root_key`` open the *next* root's key (it signs the fresh CRL, when the PKI
    has one). Refused (exit 4) while any cluster still has an intermediate under the old root.
    The CRL is signed before anything moves and kept in the journal, so recovery can finish
    every step without a key.
    """
    layout = layout_of(pki)
    nd = layout.next_root_dir
    with pki_act(layout, "rotate-root --finish", officer) as act:
        if not layout.next_root_cert.exists():
            raise Refused(f"{nd}: no root rotation in progress; start one with 'airgap ca rotate-root'")
        signer = signing_root(layout, passphrase, root_key)
        lagging = [name for name in layout.clusters() if not cx.signed_by(layout.load_cluster_cert(name), signer.cert)]
        if lagging:
            raise Refused(
                f"cluster(s) {', '.join(lagging)} still have an intermediate under the old root; "
                f"run 'airgap ca rotate {lagging[0]}' first"
            )
        old = layout.load_root_cert()
        dest = layout.archived_root_dir(format(old.serial_number, "x"))
        if dest.exists():
            raise Refused(f"{dest}: already exists; refusing to overwrite an archived root")
        crl_rec: CRLRecord | None = None
        crl_doc: dict[str, object] | None = None
        state = read_revocations(layout.revocations)
        if layout.crl.exists():
            number = state.crl_number + 1
            crl = build_crl(signer.cert, signer.key, state, crl_number=number, next_update_days=next_update_days)
            crl_rec = CRLRecord.of(crl, signer.cert, number)
            crl_doc = {"pem": crl_pem(crl).decode(), "number": number}
        journal: dict[str, object] = {
            "kind": "root-finish",
            "fingerprint": cx.fingerprint(signer.cert),
            "old_fingerprint": cx.fingerprint(old),
            "archive": str(dest.relative_to(layout.path)),
        }
        if crl_doc is not None:
            journal["crl"] = crl_doc
        write_journal(layout, journal)
        with act.settle_on_error():  # a handled error: the journal finishes the rotation at once
            rec = RootRecord.of(signer.cert)
            inv = act.inventory()
            inv.root = rec
            act.write_inventory(inv)
            act.record(
                "root-rotation-finish",
                {**cert_facts(signer.cert, role="root"), "retired_root_fingerprint": cx.fingerprint(old)},
            )
            if crl_rec is not None:
                act.record("crl", crl_rec.log_params())
            # Each file moves once; at any moment it exists in exactly one place.
            finish_root_moves(layout, dest)
            if crl_doc is not None:
                write_crl_files(layout, str(crl_doc["pem"]).encode())
                state.crl_number = int(str(crl_doc["number"]))
                write_revocations(layout.revocations, state)
            rewrite_trust(layout)
        clear_journal(layout)
    return rec


__all__ = [
    "Rotation",
    "archived_certs",
    "begin_root_rotation",
    "finish_interrupted",
    "finish_root_rotation",
    "next_root_cn",
    "rotate_intermediate",
]
