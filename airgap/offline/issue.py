"""Making CA certificates: the root (``ca init``) and per-cluster intermediates (``ca issue``).

Each is one act on :mod:`airgap.offline.act`. Every check (names, days, the root, existing
folders) runs before a key is made; keys are generated in a pool of spawned processes
(:func:`airgap.core.workers.worker_pool`: they never hold the PKI lock and die with this process).

Every certificate is signed and verified first (:func:`airgap.core.x509.check_issued`); then, for
the batch (:func:`publish_intermediates`): one journal → inventory (one write) → a log entry per
cluster → each cluster folder built beside its final name and renamed into place → journal removed.
So a published certificate is always in the inventory and the log; a crash before a rename is
undone (and recorded) by the next act (:mod:`airgap.offline.recovery`).

During a root rotation new intermediates are signed by the *next* root (as ``ca rotate`` does), so
``ca rotate-root --finish`` never finds a newly issued cluster under the old root.

Trust: the PKI folder is the officer's own; the passphrase protects the keys at rest.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from airgap.core import x509 as cx
from airgap.core.atomic import staged_dir, write_new, write_staged
from airgap.core.keys import KeyType, PrivateKey, encode_private_key, load_public_key_pem, spki_sha256
from airgap.core.locking import Notify, stderr_note
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.core.workers import worker_pool
from airgap.errors import InvalidInput, WouldOverwrite
from airgap.offline import custody
from airgap.offline.act import Act, pki_act
from airgap.offline.ceremony import Officer
from airgap.offline.custody import NewSet
from airgap.offline.inventory import IntermediateRecord, RootRecord, cert_facts
from airgap.offline.keysource import signing_root
from airgap.offline.layout import CA_CERT, CA_KEY, CERT_CHAIN, CRL, ROOT_CERT, ROOT_KEY, PkiLayout, check_cluster_name
from airgap.offline.lint import sign_certificate
from airgap.offline.recovery import clear_journal, issue_journal, write_journal


def make_key(key_type: KeyType, passphrase: bytes | None) -> tuple[bytes, bytes]:
    """Worker: generate and encrypt one key; returns (encrypted PKCS#8 PEM, SPKI PEM).

    Runs in a pool process: RSA generation and the PBKDF2 work dominate, so they use every core.
    """
    from airgap.core.keys import generate_private_key

    key = generate_private_key(key_type)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return encode_private_key(key, passphrase), pub


def make_keys(
    key_type: KeyType, passphrase: bytes | None, n: int, workers: int | None, progress: Progress
) -> list[tuple[bytes, bytes]]:
    """``n`` keys from :func:`make_key`, in spawned worker processes when more than one is useful."""
    n_workers = max(1, min(n, workers or os.cpu_count() or 1))
    made: list[tuple[bytes, bytes]] = []
    progress.start(f"generating {n} {key_type} keys", n)
    try:
        if n_workers == 1:
            for _ in range(n):
                made.append(make_key(key_type, passphrase))
                progress.advance(1)
        else:
            with worker_pool(n_workers) as pool:
                for m in pool.map(make_key, [key_type] * n, [passphrase] * n):
                    made.append(m)
                    progress.advance(1)
    finally:
        progress.finish()
    return made


def write_cluster(
    layout: PkiLayout, final: Path, key_pem: bytes | None, cert: x509.Certificate, issuer: x509.Certificate
) -> None:
    """Build a cluster folder beside ``final`` and rename it into place when complete.

    ``cert-chain.pem`` is the intermediate then its issuing root; ``root-cert.pem`` is
    :meth:`PkiLayout.trust_pem` (both roots during a root rotation); ``ca-crl.pem`` the current CRL.
    ``key_pem`` None: the key is held elsewhere (``ca sign``) and no ``ca-key.pem`` is written.
    """
    with staged_dir(final, mode=0o700) as tmp:
        if key_pem is not None:
            write_staged(tmp / CA_KEY, key_pem, mode=0o600)
        write_public_files(layout, tmp, cert, issuer)


def write_public_files(layout: PkiLayout, folder: Path, cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """``ca-cert.pem``, ``cert-chain.pem``, ``root-cert.pem`` (and ``ca-crl.pem``) of ``cert`` into ``folder``,
    a folder :func:`~airgap.core.atomic.staged_dir` is building (it fsyncs and publishes them)."""
    ca_pem = cx.cert_pem(cert)
    write_staged(folder / CA_CERT, ca_pem)
    write_staged(folder / CERT_CHAIN, ca_pem + cx.cert_pem(issuer))
    write_staged(folder / ROOT_CERT, layout.trust_pem())
    if layout.crl.exists():
        write_staged(folder / CRL, layout.crl.read_bytes())


def init_root(
    pki: Path,
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
    notify: Notify | None = stderr_note,
    custody_set: NewSet | None = None,
) -> RootRecord:
    """Create the root key and self-signed root certificate; refuse if either exists (exit 4).

    With ``custody_set`` (split custody, :mod:`airgap.offline.custody`) the root key is encrypted
    under the set's secret instead of ``passphrase`` (which must be None) and ``PKI/custody/`` is
    written first; if the root cannot be written the shares are removed again. For a token key
    (``root_key``) the caller sets the token's user PIN to the set's secret.

    With ``root_key`` (a key already in a PKCS#11 token) no key file is written: ``key_record``
    (the token reference, no secret) is written as ``root-key.pkcs11.json`` instead, and
    ``key_params`` describe the key in the log. With ``officer`` the acts are logged. A refused
    or failed init leaves no folder or ``.lock`` it created.
    """
    layout = PkiLayout(pki)
    if days <= 0:
        raise InvalidInput("--days must be positive")
    refuse_existing_root(layout)
    if custody_set is not None and passphrase is not None:
        raise InvalidInput("a root under split custody takes no PKI passphrase")
    with pki_act(layout, "init", officer, create=True, notify=notify) as act:
        refuse_existing_root(layout)
        from airgap.core.keys import generate_private_key

        key = root_key if root_key is not None else generate_private_key(key_type)
        cert = sign_certificate(
            cx.root_builder(key, org=org, cn=cn, days=days), issuer_cert=None, issuer_key=key, what="root"
        )
        if custody_set is not None:
            custody.check_no_leftover(layout.path)
            custody.write_set(layout.path, custody_set)
            passphrase = custody_set.passphrase
        try:
            if root_key is None:
                write_new(layout.root_key, encode_private_key(key, passphrase), mode=0o600)
                key_file = layout.root_key
            else:
                write_new(layout.root_key_ref, key_record or b"{}\n")
                key_file = layout.root_key_ref
            try:
                write_new(layout.root_cert, cx.cert_pem(cert))
            except BaseException:
                key_file.unlink(missing_ok=True)
                raise
        except BaseException:
            if custody_set is not None:
                custody.remove_set(layout.path)
            raise
        record = RootRecord.of(cert)
        with _unmade_on_error(layout, custody_set is not None):  # a full disk: no half-made root stays
            inv = act.inventory()
            inv.root = record
            inv.remember_cert(cert, "the root (")
            inv.custody = custody_set.record if custody_set is not None else None
            act.write_inventory(inv)
            storage: dict[str, object] = dict(key_params or {"storage": "file", "file": ROOT_KEY})
            if custody_set is not None:
                storage["custody_set"] = custody.created_params(custody_set.record)
            act.record(
                "key-create", {"purpose": "root", "key_type": record.key_type, "key_id": spki_sha256(key), **storage}
            )
            act.record("init", cert_facts(cert, role="root"))
    return record


@contextlib.contextmanager
def _unmade_on_error(layout: PkiLayout, with_custody: bool) -> Iterator[None]:
    """``ca init`` once its root files are written: a handled error (a full disk) while recording it
    removes what this act made -- the root files, the custody set, and the inventory and log it
    started -- so nothing half-made stays and ``ca init`` can simply run again."""
    started = [p for p in (layout.inventory, layout.log, layout.head) if not p.exists()]
    try:
        yield
    except Exception:
        for p in (layout.root_cert, layout.root_key, layout.root_key_ref, *started):
            p.unlink(missing_ok=True)
        if with_custody:
            custody.remove_set(layout.path)
        raise


def refuse_existing_root(layout: PkiLayout) -> None:
    for p in (layout.root_key, layout.root_cert, layout.root_key_ref):
        if p.exists():
            raise WouldOverwrite(f"{p}: already exists; refusing to overwrite the root")


@dataclass(frozen=True)
class Issued:
    """What ``ca issue`` did: the intermediates it made and (``--skip-existing``) the clusters it left."""

    records: list[IntermediateRecord]
    skipped: list[str] = field(default_factory=list)
    under_next_root: bool = False


def check_names(clusters: Sequence[str]) -> list[str]:
    if not clusters:
        raise InvalidInput("name at least one cluster")
    names = [check_cluster_name(c) for c in clusters]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"cluster named twice: {', '.join(dupes)}")
    return names


def issue_intermediates(
    pki: Path,
    clusters: Sequence[str],
    *,
    key_type: KeyType,
    days: int,
    org: str,
    cn: str,
    sans: Sequence[str],
    passphrase: bytes | None,
    key_passphrase: bytes | None,
    workers: int | None = None,
    officer: Officer | None = None,
    root_key: PrivateKey | None = None,
    progress: Progress = NO_PROGRESS,
    skip_existing: bool = False,
    notify: Notify | None = stderr_note,
) -> Issued:
    """Issue one intermediate per cluster, every check done before any key is made.

    ``passphrase`` opens the signing root's key (or ``root_key``, a token key, signs);
    ``key_passphrase`` encrypts the new keys (None: plain). With ``skip_existing`` clusters that
    already have a folder are left as they are and listed in :attr:`Issued.skipped` (to finish an
    interrupted fleet); without it any existing one refuses the whole act (exit 4).
    """
    layout = PkiLayout(pki)
    names = check_names(clusters)
    if days <= 0:
        raise InvalidInput("--days must be positive")
    cx.validate_sans(list(sans))
    with pki_act(layout, "issue", officer, notify=notify) as act:
        signer = signing_root(layout, passphrase, root_key)
        cx.check_within_root(signer.cert, days)
        existing = [n for n in names if (layout.path / n).exists()]
        if existing and not skip_existing:
            raise WouldOverwrite(
                f"{layout.path / existing[0]}: already exists; refusing to overwrite (rotation: see 'ca rotate'; "
                "to finish an interrupted run: --skip-existing)"
            )
        todo = [n for n in names if n not in existing]
        made = make_keys(key_type, key_passphrase, len(todo), workers, progress) if todo else []
        batch = [
            _issue_one(name, key_pem, pub_pem, signer.cert, signer.key, signer.is_next, org, cn, days, sans)
            for name, (key_pem, pub_pem) in zip(todo, made, strict=True)
        ]
        if batch:
            publish_intermediates(act, batch)
    return Issued([s.record for s in batch], existing, signer.is_next)


def _issue_one(
    name: str,
    key_pem: bytes,
    pub_pem: bytes,
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    is_next: bool,
    org: str,
    cn: str,
    days: int,
    sans: Sequence[str],
) -> Signed:
    builder = cx.intermediate_builder(
        load_public_key_pem(pub_pem, source=name),
        cluster=name,
        root_cert=root_cert,
        org=org,
        cn=cn,
        days=days,
        sans=list(sans),
    )
    cert = sign_certificate(builder, issuer_cert=root_cert, issuer_key=root_key, what=f"cluster {name}")
    params = cert_facts(cert, cluster=name)
    if is_next:
        params["under_next_root"] = True
    return Signed(IntermediateRecord.of(name, cert, root_cert), "issue", params, key_pem, cert, root_cert)


@dataclass(frozen=True)
class Signed:
    """One intermediate signed and verified, not yet published: what :func:`publish_intermediates` writes."""

    record: IntermediateRecord
    log_act: str
    params: dict[str, Any]
    key_pem: bytes | None  # None: the key is held elsewhere (``ca sign``)
    cert: x509.Certificate
    issuer: x509.Certificate


def publish_intermediates(act: Act, batch: Sequence[Signed], published: Callable[[Signed], None] | None = None) -> None:
    """journal naming every cluster → inventory (one write) → one log entry each → each folder → journal removed.

    The order keeps a published certificate always in the inventory and the log; a crash anywhere
    is finished or undone by the next act, cluster by cluster (:mod:`airgap.offline.recovery`).
    One journal and one inventory write for the batch: ``ca sign`` of 200 requests writes the
    inventory once, not 200 times. ``published`` is called after each folder is in place.
    """
    write_journal(act.layout, issue_journal([(s.record.cluster, s.record.fingerprint) for s in batch]))
    with act.settle_on_error():  # a handled error: what was not published leaves the inventory at once
        inv = act.inventory()
        inv.intermediates.extend(s.record for s in batch)
        for s in batch:
            inv.remember_cert(s.cert, f"cluster {s.record.cluster} (intermediate")
        act.write_inventory(inv)  # before any folder is published: the record never lags the disk
        act.record_all([(s.log_act, s.params) for s in batch])  # one write of the log for the batch
        for s in batch:
            write_cluster(act.layout, act.path / s.record.cluster, s.key_pem, s.cert, s.issuer)
            if published is not None:
                published(s)
    clear_journal(act.layout)


__all__ = [
    "Issued",
    "Signed",
    "check_names",
    "init_root",
    "issue_intermediates",
    "make_key",
    "make_keys",
    "publish_intermediates",
    "write_cluster",
    "write_public_files",
]
