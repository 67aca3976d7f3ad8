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
from collections.abc import Sequence
from pathlib import Path

from airgap.core import x509 as cx
from airgap.core.atomic import staged_dir
from airgap.core.csr import VerifiedCSR
from airgap.core.keys import PrivateKey, spki_sha256
from airgap.errors import InvalidInput, Refused
from airgap.offline import ceremony
from airgap.offline.ca import CAStore, IntermediateRecord, _cert_params, check_cluster_name
from airgap.offline.ceremony import Officer
from airgap.offline.lint import Linter, lint_certificate, sign_certificate

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


def sign_csr(
    store: CAStore,
    csr: VerifiedCSR,
    cluster: str,
    *,
    out: Path,
    days: int,
    org: str = "Istio",
    cn: str = "Intermediate CA",
    sans: Sequence[str] = (cx.ISTIOD_SAN,),
    passphrase: bytes | None,
    root_key: PrivateKey | None = None,
    officer: Officer | None = None,
    request_id: str | None = None,
    linter: Linter = lint_certificate,
) -> IntermediateRecord:
    """Certify ``csr``'s public key as ``cluster``'s intermediate; write ``out`` and ``PKI/<cluster>/``.

    ``passphrase`` opens the root key (or ``root_key``, a token key, signs). ``request_id`` is the
    verified request file's id when the CSR came in one. ``linter`` is for tests.
    """
    # 1. what the officer asked for
    name = check_cluster_name(cluster)
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
        final = store.path / name
        if final.exists():
            raise Refused(
                f"{final}: already exists; cluster {name} already has an intermediate (rotation: see 'ca rotate')"
            )
        holder = certified_key_ids(store).get(csr.key_id)
        if holder is not None:
            raise Refused(f"the request's key {csr.key_id} is already certified for cluster {holder}")
        inv = store.read_inventory()
        if request_id is not None and any(r.request_id == request_id for r in inv.intermediates):
            raise Refused(f"request {request_id} was already signed; make a new request ('airgap ca request')")
        # 5. the root
        root_cert, signing_key = store.load_root(passphrase, root_key)
        cx.check_within_root(root_cert, days)
        # 6. the profile from the public key only, the lint gate, the signature
        builder = cx.intermediate_builder(
            csr.public_key, cluster=name, root_cert=root_cert, org=org, cn=cn, days=days, sans=list(sans)
        )
        cert = sign_certificate(
            builder, issuer_cert=root_cert, issuer_key=signing_key, what=f"cluster {name}", linter=linter
        )
        # The writes: DIR is published last, so it only ever holds a recorded certificate.
        with staged_dir(out) as tmp_out:
            store.write_public_files(tmp_out, cert, root_cert)
            store.write_cluster(final, None, cert, root_cert)
            record = dataclasses.replace(
                store._record_of(name, cert, root_cert),
                key_held=KEY_HELD_ELSEWHERE,
                key_id=csr.key_id,
                csr_sha256=csr.sha256,
                request_id=request_id,
            )
            inv.intermediates.append(record)
            store._write_inventory(inv)
            if officer is not None:
                params: dict[str, object] = {
                    **_cert_params(cert, cluster=name),
                    "key_held": KEY_HELD_ELSEWHERE,
                    "csr_sha256": csr.sha256,
                }
                if request_id is not None:
                    params["request_id"] = request_id
                ceremony.record(store.path, "sign", params, officer, prepared=prep)
    return record


__all__ = ["KEY_HELD_ELSEWHERE", "certified_key_ids", "sign_csr"]
