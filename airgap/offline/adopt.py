"""``ca init --adopt-cert --adopt-key``: record a root made elsewhere (Istio's Makefile, openssl).

A mesh set up by hand moves to airgap without a root rotation: the existing root certificate and
key become a new PKI folder's root. An act on :func:`airgap.offline.act.pki_act` (``create``).

Checks, in order (exit code in brackets), before anything is written:
1. the certificate parses [3] and the key opens (with its own passphrase, if any) [3];
2. the key is RSA ≥ 3072 or EC P-256 / P-384 [3] (the policy of ``ca sign``);
3. the key is the certificate's [1];
4. the certificate is a CA (basicConstraints CA:true) [4], not a SHA-1/MD5 signature [4], self-signed
   and its signature verifies [1];
5. it is valid now [4];
6. it can root the chains airgap issues, as a path validator sees it [4]: basicConstraints with a
   pathlen that allows one intermediate, keyUsage with keyCertSign and cRLSign, name constraints
   that admit ``istiod.istio-system.svc``, an EKU (if any) that allows serverAuth and clientAuth;
   proven by validating a probe intermediate it signs (:mod:`airgap.core.pathcheck`);
7. the folder has no root yet [4].
Then ``root-key.pem`` is written re-encrypted with the PKI passphrase (0600, PKCS#8), the
certificate as ``root-cert.pem``, the inventory, and an ``adopt`` entry in the log (when there is one).

Trust: the adopted files are the officer's own, but they are checked as if they were not.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from airgap.core import x509 as cx
from airgap.core.atomic import write_new
from airgap.core.csr import check_key_policy
from airgap.core.files import read_capped
from airgap.core.keys import PrivateKey, encode_private_key, key_type_of, keys_match, load_private_key, spki_sha256
from airgap.core.limits import MAX_KEY_FILE
from airgap.core.locking import Notify, stderr_note
from airgap.errors import Refused, VerificationError
from airgap.offline.act import pki_act
from airgap.offline.ceremony import Officer
from airgap.offline.inventory import RootRecord, cert_facts
from airgap.offline.issue import refuse_existing_root
from airgap.offline.layout import PkiLayout


def adopt_root(
    pki: Path,
    *,
    cert_path: Path,
    key_path: Path,
    key_passphrase: bytes | None,
    passphrase: bytes | None,
    officer: Officer | None = None,
    notify: Notify | None = stderr_note,
) -> RootRecord:
    """Make ``pki`` a PKI folder whose root is the adopted certificate and key (module docstring)."""
    layout = PkiLayout(pki)
    # 1. parse
    cert = cx.load_cert_pem(read_capped(cert_path, MAX_KEY_FILE, "root certificate"), source=str(cert_path))
    key = load_private_key(key_path, key_passphrase)
    # 2. key policy
    check_key_policy(key.public_key(), source=str(key_path))
    # 3. the key is the certificate's
    if not keys_match(key, cert.public_key()):  # type: ignore[arg-type]
        raise VerificationError(f"{key_path}: is not the key of {cert_path} ({spki_sha256(key)})")
    # 4. a self-signed CA
    if not cx.is_ca(cert):
        raise Refused(f"{cert_path}: not a CA certificate (basicConstraints CA:true is missing)")
    if cx.weak_signature(cert):  # before the signature check: SHA-1 signatures are not verified at all
        raise Refused(f"{cert_path}: the root uses a SHA-1/MD5 signature, which istiod rejects")
    if cert.issuer != cert.subject or not cx.signed_by(cert, cert):
        raise VerificationError(f"{cert_path}: not a self-signed root (its signature does not verify with its key)")
    # 5. usable now
    status = cx.status_of(cert)
    if status in ("expired", "not-yet-valid"):
        raise Refused(f"{cert_path}: the root is {status} (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                      f"{cert.not_valid_after_utc:%Y-%m-%d})")  # fmt: skip
    # 6. it can sign a chain a path validator accepts
    check_root_can_sign(cert, key, source=str(cert_path))
    # 7. a new PKI folder
    refuse_existing_root(layout)
    with pki_act(layout, "adopt", officer, create=True, notify=notify) as act:
        refuse_existing_root(layout)
        write_new(layout.root_key, encode_private_key(key, passphrase), mode=0o600)
        try:
            write_new(layout.root_cert, cx.cert_pem(cert))
        except BaseException:
            layout.root_key.unlink(missing_ok=True)
            raise
        record = RootRecord.of(cert)
        inv = act.inventory()
        inv.root = record
        inv.remember_cert(cert, "the root (")
        act.write_inventory(inv)
        act.record(
            "adopt",
            {
                **cert_facts(cert, role="root"),
                "source": "adopted (made outside airgap)",
                "storage": "file",
                "key_type": key_type_of(key),
            },
        )
    return record


def check_root_can_sign(cert: x509.Certificate, key: PrivateKey, *, source: str) -> None:
    """Refuse (exit 4) a root that cannot sign a chain a path validator accepts, with the reason.

    The probe is the intermediate ``ca issue`` would make (a throwaway key, the istiod SAN), signed
    by the root's key and never written."""
    from airgap.core.keys import generate_private_key, signature_hash_for
    from airgap.core.pathcheck import chain_problem, root_problems

    problems = root_problems(cert)
    if problems:
        raise Refused(f"{source}: the root cannot sign a chain that validates: {problems[0]}")
    probe = cx.intermediate_builder(
        generate_private_key("ecdsa-p256").public_key(),
        cluster="probe",
        root_cert=cert,
        org="Istio",
        cn="Intermediate CA",
        days=1,
        sans=[cx.ISTIOD_SAN],
        not_before=max(cx.now(), cert.not_valid_before_utc),
    ).sign(key, signature_hash_for(key))
    problem = chain_problem(probe, [cert])
    if problem is not None:
        raise Refused(f"{source}: the root cannot sign a chain that validates: {problem}")


__all__ = ["adopt_root", "check_root_can_sign"]
