"""``ca sign``: the root certifies a cluster key it never holds (a verified PKCS#10 request).

An act like ``ca issue`` (lock → recovery → log check → change → record; see
:meth:`CAStore.locked` and :func:`airgap.offline.ceremony.prepare`), except that the key is made
and kept on the other side of the gap: ``PKI/<cluster>/`` gets no ``ca-key.pem`` and the inventory
records the key as held elsewhere, with its SPKI fingerprint and the request's SHA-256.

Trust: the request is untrusted until :func:`airgap.core.csr.verify_csr` returned (and, for a
signed request file, :func:`airgap.core.request.open_request`). Only its public key is used: the
certificate is the intermediate profile (:func:`airgap.core.x509.intermediate_builder`) whatever
the request asks for. The lint gate (:mod:`airgap.offline.lint`) runs before the root key signs.

Checks, in order (exit code in brackets): 1. cluster name, days, SANs [3]; 2. ``--out`` is new [4];
under the PKI lock: 3. the ceremony log is intact and the officer may extend it [4/1];
4. not already issued: no ``PKI/<cluster>/`` [4], the key is not already certified for another
cluster [4], the request id was not signed before [4]; 5. the root key opens and the validity
ends inside the root's [3/4]; 6. lint gate [4], sign, re-parse, verify [1]; then the writes.
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
from airgap.core.atomic import staged_dir
from airgap.core.csr import VerifiedCSR
from airgap.core.keys import PrivateKey, spki_sha256
from airgap.errors import InvalidInput, Refused
from airgap.offline import ceremony
from airgap.offline.ca import CAStore, IntermediateRecord, _cert_params, check_cluster_name
from airgap.offline.ceremony import Officer
from airgap.offline.lint import Linter, lint_certificate, lint_gate, sign_linted

KEY_HELD_ELSEWHERE = "elsewhere"


def certified_key_ids(store: CAStore) -> dict[str, str]:
    """SPKI fingerprint → cluster, for every current intermediate and every inventory record."""
    out: dict[str, str] = {}
    for rec in store.read_inventory().intermediates:
        if rec.key_id:
            out[rec.key_id] = rec.cluster
    for name in store.clusters():
        p = store.path / name / "ca-cert.pem"
        cert = cx.load_cert_pem(p.read_bytes(), source=str(p))
        out[spki_sha256(cert.public_key())] = name  # type: ignore[arg-type]
    return out


@dataclass(frozen=True)
class SignItem:
    """One verified request to certify: its CSR, the cluster it is for, and its request id (if any)."""

    csr: VerifiedCSR
    cluster: str
    request_id: str | None = None


def sign_csr(
    store: CAStore,
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
    (rec,) = sign_csrs(store, [SignItem(csr, cluster, request_id)], out=out, days=days, passphrase=passphrase, **kwargs)
    return rec


def sign_csrs(
    store: CAStore,
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
) -> list[IntermediateRecord]:
    """Certify each item's public key as its cluster's intermediate; write ``out`` and ``PKI/<cluster>/``.

    Every check (module docstring) runs for every item before the root key signs anything, so a
    batch is signed whole or not at all. One item: its files go straight into ``out``; several:
    into ``out/<cluster>/``. ``passphrase`` opens the root key (or ``root_key``, a token key, signs).
    ``linter`` is for tests; ``workers`` lint processes (default: every core, for large batches).
    """
    # 1. what the officer asked for
    if not items:
        raise InvalidInput("give at least one certificate request")
    names = [check_cluster_name(i.cluster) for i in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"cluster named twice: {', '.join(dupes)}")
    key_ids = [i.csr.key_id for i in items]
    if len(set(key_ids)) != len(key_ids):
        raise InvalidInput("the same key is in two of the requests")
    if days <= 0:
        raise InvalidInput("--days must be positive")
    cx.validate_sans(list(sans))
    # 2. the output folder is new
    if out.exists() or out.is_symlink():
        raise Refused(f"{out}: already exists; refusing to overwrite")
    with store.locked():
        # 3. the ceremony log
        prep = ceremony.prepare(store.path, officer)
        # 4. not already issued
        certified = certified_key_ids(store)
        inv = store.read_inventory()
        signed_ids = {r.request_id for r in inv.intermediates if r.request_id}
        for item, name in zip(items, names, strict=True):
            if (store.path / name).exists():
                raise Refused(
                    f"{store.path / name}: already exists; cluster {name} already has an intermediate "
                    "(rotation: see 'ca rotate')"
                )
            holder = certified.get(item.csr.key_id)
            if holder is not None:
                raise Refused(f"the request's key {item.csr.key_id} is already certified for cluster {holder}")
            if item.request_id is not None and item.request_id in signed_ids:
                raise Refused(f"request {item.request_id} was already signed; make a new request ('airgap ca request')")
        # 5. the root
        root_cert, signing_key = store.load_root(passphrase, root_key)
        cx.check_within_root(root_cert, days)
        # 6. the profile from the public key only; the lint gate over the whole batch, then the signatures
        builders = [
            (
                f"cluster {name}",
                cx.intermediate_builder(
                    item.csr.public_key, cluster=name, root_cert=root_cert, org=org, cn=cn, days=days, sans=list(sans)
                ),
            )
            for item, name in zip(items, names, strict=True)
        ]
        n_workers = workers or (min(os.cpu_count() or 1, len(items) // 16) if len(items) >= 32 else 1)
        linted = lint_gate(builders, issuer_key=signing_key, linter=linter, workers=max(1, n_workers))
        records: list[IntermediateRecord] = []
        made: list[tuple[SignItem, x509.Certificate]] = []
        # The writes: PKI/<cluster>/ folders, the inventory (once per batch: each fsync of it costs
        # as much as a signature), the log entries; DIR is published last, so it only ever holds
        # recorded certificates. A crash part-way leaves certificates on disk that 'ca list' shows and
        # 'audit verify' reports as not recorded, never a record of a certificate that is not there.
        with staged_dir(out) as tmp_out:
            for item, name, lt in zip(items, names, linted, strict=True):
                cert = sign_linted(lt, issuer_cert=root_cert, issuer_key=signing_key)
                folder = tmp_out if len(items) == 1 else tmp_out / name
                folder.mkdir(exist_ok=True)
                store.write_public_files(folder, cert, root_cert)
                store.write_cluster(store.path / name, None, cert, root_cert)
                record = dataclasses.replace(
                    store._record_of(name, cert, root_cert),
                    key_held=KEY_HELD_ELSEWHERE,
                    key_id=item.csr.key_id,
                    csr_sha256=item.csr.sha256,
                    request_id=item.request_id,
                )
                inv.intermediates.append(record)
                records.append(record)
                made.append((item, cert))
            store._write_inventory(inv)
            if officer is not None:
                for item, cert in made:
                    params: dict[str, object] = {
                        **_cert_params(cert, cluster=item.cluster),
                        "key_held": KEY_HELD_ELSEWHERE,
                        "csr_sha256": item.csr.sha256,
                    }
                    if item.request_id is not None:
                        params["request_id"] = item.request_id
                    ceremony.record(store.path, "sign", params, officer, prepared=prep)
    return records


__all__ = ["KEY_HELD_ELSEWHERE", "SignItem", "certified_key_ids", "sign_csr", "sign_csrs"]
