"""``ca sign``: the root certifies a cluster key it never holds (a verified PKCS#10 request).

An act like ``ca issue`` on the one act lifecycle (:func:`airgap.offline.act.pki_act`: lock →
recovery → log check → change → record), except that the key is made and kept on the other side
of the gap: ``PKI/<cluster>/`` gets no ``ca-key.pem`` and the inventory
records the key as held elsewhere, with its SPKI fingerprint and the request's SHA-256.

Trust: the request is untrusted until :func:`airgap.core.csr.verify_csr` returned (and, for a
signed request file, :func:`airgap.core.request_file.open_request`). Only its public key is used: the
certificate is the intermediate profile (:func:`airgap.core.x509.intermediate_builder`) whatever
the request asks for. The lint gate (:mod:`airgap.offline.lint`) runs before the root key signs.

Checks, in order (exit code in brackets): 1. cluster name, days, SANs [3]; 2. ``--out`` is new [4];
under the PKI lock: 3. the ceremony log is intact and the officer may extend it [4/1];
4. not already issued: no ``PKI/<cluster>/`` [4], the key is not already certified for another
cluster [4], the request id was not signed before [4]; 5. the signing root's key opens (the next
root during a root rotation, as for ``ca issue``) and the validity ends inside it [3/4]; 6. the lint
gate over the whole batch [4]; 7. each request signed, re-parsed, verified [1]; then the batch is
published as ``ca issue`` publishes (:func:`airgap.offline.issue.publish_intermediates`: one journal
→ inventory → log → each ``PKI/<cluster>/``, so :mod:`airgap.offline.recovery` undoes a crash the
same way); ``--out`` is published last.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from airgap.core import x509 as cx
from airgap.core.atomic import staged_dir, write_staged
from airgap.core.csr import VerifiedCSR
from airgap.core.keys import PrivateKey, spki_sha256
from airgap.core.locking import Notify, stderr_note
from airgap.errors import InvalidInput, Refused
from airgap.offline.act import pki_act
from airgap.offline.ceremony import Officer
from airgap.offline.inventory import IntermediateRecord, Inventory, cert_facts, read_inventory
from airgap.offline.issue import Signed, check_names, publish_intermediates, write_public_files
from airgap.offline.keysource import SigningRoot, signing_root
from airgap.offline.layout import CA_CERT, CERT_CHAIN, CRL, ROOT_CERT, PkiLayout
from airgap.offline.lint import Linter, lint_certificate, lint_gate, sign_linted

KEY_HELD_ELSEWHERE = "elsewhere"


def certified_key_ids(layout: PkiLayout) -> dict[str, str]:
    """Key id → where it was seen, for every key airgap has certified or holds (the inventory's
    ``key_ids``: current, archived and revoked intermediates, the root, the next root)."""
    from airgap.offline.act import disk_key_ids

    inv = read_inventory(layout.inventory)
    return inv.key_ids if inv.key_ids is not None else disk_key_ids(layout, inv)


def refuse_known_key(known: dict[str, str], key_id: str, source: str = "the request's key") -> None:
    """Exit 4 when airgap has already certified or holds ``key_id`` (``known``: :func:`certified_key_ids`,
    read once per act), naming where it was seen."""
    where = known.get(key_id)
    if where is not None:
        raise Refused(
            f"{source} {key_id} is already certified for {where}; "
            "airgap never certifies a key twice: make a new key and request"
        )


@dataclass(frozen=True)
class SignItem:
    """One verified request to certify: its CSR, the cluster it is for, and its request id (if any)."""

    csr: VerifiedCSR
    cluster: str
    request_id: str | None = None


def read_signing_request(path: Path, trust: Sequence[Path] | None, cluster: str | None) -> SignItem:
    """A CSR file (``trust`` empty: ``cluster`` required) or a signed request file (``trust``:
    verified against those keys; ``cluster``, when given, must be the request's: exit 4)."""
    from airgap.core.csr import MAX_CSR_BYTES, verify_csr
    from airgap.core.files import read_capped
    from airgap.core.request_file import MAX_REQUEST_BYTES, looks_like_request, open_request

    if trust:
        data = read_capped(path, MAX_REQUEST_BYTES, "request file")
        if not looks_like_request(data):
            raise InvalidInput(f"{path}: not a signed request file (a bare CSR is signed without --trust)")
        verified = open_request(data, list(trust), source=str(path))
        if cluster is not None and cluster != verified.cluster:
            raise Refused(f"{path}: the request is for cluster {verified.cluster}, not {cluster}")
        return SignItem(verified.csr, verified.cluster, verified.request_id)
    data = read_capped(path, MAX_CSR_BYTES, "certificate request")
    if looks_like_request(data):
        raise InvalidInput(f"{path}: is a signed request file; give the operator's key with --trust PUB")
    if cluster is None:
        raise InvalidInput("--cluster NAME is required when signing a CSR")
    return SignItem(verify_csr(data, source=str(path)), cluster)


def sign_csr(
    pki: Path,
    csr: VerifiedCSR,
    cluster: str,
    *,
    out: Path,
    days: int,
    passphrase: bytes | None,
    request_id: str | None = None,
    **kwargs: Any,
) -> IntermediateRecord:
    """One CSR: :func:`sign_csrs` writing the three files straight into ``out``."""
    (rec,) = sign_csrs(
        pki, [SignItem(csr, cluster, request_id)], out=out, days=days, passphrase=passphrase, **kwargs
    ).records
    return rec


@dataclass(frozen=True)
class SignedBatch:
    """What ``ca sign`` did: the intermediates it signed, and (``--skip-existing``) the clusters it
    found already signed for the same key, whose files it copied to ``--out`` as they are."""

    records: list[IntermediateRecord]
    skipped: list[IntermediateRecord]


def sign_csrs(
    pki: Path,
    items: Sequence[SignItem],
    *,
    out: Path,
    days: int,
    org: str = "Istio",
    cn: str = "Intermediate CA",
    sans: Sequence[str] = (cx.ISTIOD_SAN,),
    passphrase: bytes | None,
    root_key: PrivateKey | None = None,
    officer: Officer | None = None,
    linter: Linter = lint_certificate,
    workers: int | None = None,
    notify: Notify | None = stderr_note,
    skip_existing: bool = False,
) -> SignedBatch:
    """Certify each item's public key as its cluster's intermediate; write ``out`` and ``PKI/<cluster>/``.

    Every check (module docstring) runs for every item before the root key signs anything, so a
    batch is refused whole. One item: its files go straight into ``out``; several: into
    ``out/<cluster>/``. ``passphrase`` opens the root key (or ``root_key``, a token key, signs).
    ``linter`` is for tests; ``workers`` lint processes (default: every core, for large batches).
    ``skip_existing`` finishes an interrupted batch: a cluster whose current certificate is for the
    very key of its request is not signed again (its files go to ``out`` as they are); a cluster
    that exists with another key is still refused.
    """
    layout = PkiLayout(Path(pki))
    # 1. what the officer asked for
    if not items:
        raise InvalidInput("give at least one certificate request")
    names = check_names([i.cluster for i in items])
    key_ids = [i.csr.key_id for i in items]
    if len(set(key_ids)) != len(key_ids):
        raise InvalidInput("the same key is in two of the requests")
    if days <= 0:
        raise InvalidInput("--days must be positive")
    cx.validate_sans(list(sans))
    # 2. the output folder is new
    if out.exists() or out.is_symlink():
        raise Refused(f"{out}: already exists; refusing to overwrite")
    # 3. the act: lock, recovery, the ceremony log
    with pki_act(layout, "sign", officer, notify=notify) as act:
        # 4. not already issued
        skipped, todo = _not_yet_signed(layout, act.inventory(), items, names, skip_existing)
        # 5. the signing root
        signer = signing_root(layout, passphrase, root_key)
        cx.check_within_root(signer.cert, days)
        # 6-7. the profile from the public key only; the lint gate over the whole batch; signed and verified
        profile = {"org": org, "cn": cn, "days": days, "sans": list(sans)}
        batch = _sign_batch(todo, signer, profile, linter=linter, workers=workers)
        with staged_dir(out) as tmp_out:

            def folder_for(cluster: str) -> Path:
                folder = tmp_out if len(items) == 1 else tmp_out / cluster
                folder.mkdir(exist_ok=True)
                return folder

            for rec in skipped:
                copy_public_files(layout, rec.cluster, folder_for(rec.cluster))
            if batch:
                publish_intermediates(
                    act, batch, lambda s: write_public_files(layout, folder_for(s.record.cluster), s.cert, s.issuer)
                )
    return SignedBatch([s.record for s in batch], skipped)


def _not_yet_signed(
    layout: PkiLayout, inv: Inventory, items: Sequence[SignItem], names: list[str], skip_existing: bool
) -> tuple[list[IntermediateRecord], list[tuple[SignItem, str]]]:
    """Step 4 for every item: (the clusters ``--skip-existing`` leaves as they are, the items to sign).
    Refused (exit 4): a cluster that exists, a key airgap has certified or holds (one lookup in the
    inventory's ``key_ids``), a request id signed before."""
    known = inv.key_ids or {}  # act.inventory() has them (migrated from disk for an older inventory)
    signed_ids = {r.request_id for r in inv.intermediates if r.request_id}
    skipped: list[IntermediateRecord] = []
    todo: list[tuple[SignItem, str]] = []
    for item, name in zip(items, names, strict=True):
        if (layout.path / name).exists():
            current = inv.current(name)
            if skip_existing and current is not None and _current_key_id(layout, name) == item.csr.key_id:
                skipped.append(current)  # signed by the interrupted run: the same key, nothing to do
                continue
            raise Refused(
                f"{layout.path / name}: already exists; cluster {name} already has an intermediate "
                "(rotation: see 'ca rotate'; to finish an interrupted run of the same requests: --skip-existing)"
            )
        refuse_known_key(known, item.csr.key_id)
        if item.request_id is not None and item.request_id in signed_ids:
            raise Refused(f"request {item.request_id} was already signed; make a new request ('airgap ca request')")
        todo.append((item, name))
    return skipped, todo


def _sign_batch(
    todo: list[tuple[SignItem, str]],
    signer: SigningRoot,
    profile: dict[str, Any],
    *,
    linter: Linter,
    workers: int | None,
) -> list[Signed]:
    """Steps 6-7: each item's intermediate (``profile``: org, cn, days, sans) through the lint gate as
    one batch, then signed, re-parsed and verified; nothing is written here."""
    builders = [
        (
            f"cluster {name}",
            cx.intermediate_builder(item.csr.public_key, cluster=name, root_cert=signer.cert, **profile),
        )
        for item, name in todo
    ]
    n_workers = workers or (min(os.cpu_count() or 1, len(todo) // 16) if len(todo) >= 32 else 1)
    linted = lint_gate(builders, issuer_key=signer.key, linter=linter, workers=max(1, n_workers)) if todo else []
    return [
        _signed(item, name, sign_linted(lt, issuer_cert=signer.cert, issuer_key=signer.key), signer)
        for (item, name), lt in zip(todo, linted, strict=True)
    ]


def _current_key_id(layout: PkiLayout, cluster: str) -> str:
    """The SPKI fingerprint of the key in ``PKI/<cluster>/ca-cert.pem`` (the cluster's current intermediate)."""
    return spki_sha256(layout.load_cluster_cert(cluster).public_key())  # type: ignore[arg-type]


def copy_public_files(layout: PkiLayout, cluster: str, folder: Path) -> None:
    """The public files of ``PKI/<cluster>/`` as they are, into ``folder`` (one :func:`staged_dir` builds)."""
    src = layout.path / cluster
    for name in (CA_CERT, CERT_CHAIN, ROOT_CERT, CRL):
        if (src / name).is_file():
            write_staged(folder / name, (src / name).read_bytes())


def _signed(item: SignItem, name: str, cert: x509.Certificate, signer: SigningRoot) -> Signed:
    """The record (key held elsewhere, with its SPKI and the CSR's SHA-256) and log entry of one request."""
    record = dataclasses.replace(
        IntermediateRecord.of(name, cert, signer.cert),
        key_held=KEY_HELD_ELSEWHERE,
        key_id=item.csr.key_id,
        csr_sha256=item.csr.sha256,
        request_id=item.request_id,
    )
    params: dict[str, Any] = {
        **cert_facts(cert, cluster=name),
        "key_held": KEY_HELD_ELSEWHERE,
        "csr_sha256": item.csr.sha256,
    }
    if item.request_id is not None:
        params["request_id"] = item.request_id
    if signer.is_next:
        params["under_next_root"] = True
    return Signed(record, "sign", params, None, cert, signer.cert)


__all__ = [
    "KEY_HELD_ELSEWHERE",
    "SignItem",
    "SignedBatch",
    "certified_key_ids",
    "copy_public_files",
    "read_signing_request",
    "refuse_known_key",
    "sign_csr",
    "sign_csrs",
]
