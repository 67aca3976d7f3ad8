"""PKCS#10 certificate signing requests: parse with limits, verify, and keep only the public key.

Trust: a CSR is untrusted bytes from the other side of the gap. :func:`verify_csr` checks, in
this order, and returns a :class:`VerifiedCSR` only when every step passed:

1. size cap (exit 3): at most :data:`MAX_CSR_BYTES`, not empty;
2. parse (exit 3): one PEM ``CERTIFICATE REQUEST`` block (``NEW CERTIFICATE REQUEST`` too, as
   older tools write it) or DER, nothing but whitespace around the PEM block;
3. the CSR's own signature (exit 1): proof that whoever made it holds the private key;
4. key policy (exit 3): RSA ≥ 3072 bits with exponent 65537, or EC P-256 / P-384.

A :class:`VerifiedCSR` carries the public key and what the ceremony log records (the SHA-256 of
the DER request and the SPKI fingerprint of its key). The requested subject, SANs and extensions
are deliberately not kept (Boulder's rule: only the public key is taken); ``requested_subject``
is for display only and must be escaped by whoever shows it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from airgap.core.keys import PublicKey, key_type_of, spki_sha256
from airgap.errors import InvalidInput, SignatureMismatch, TooLarge

MAX_CSR_BYTES = 64 * 1024
MIN_RSA_BITS = 3072
ALLOWED_CURVES = ("secp256r1", "secp384r1")
_PEM = re.compile(
    rb"\A\s*-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n"
    rb"[A-Za-z0-9+/=\r\n]+-----END (NEW )?CERTIFICATE REQUEST-----\s*\Z"
)


@dataclass(frozen=True)
class VerifiedCSR:
    """A CSR whose signature verified and whose key meets the policy. Only the key is used."""

    public_key: PublicKey
    der: bytes
    sha256: str  # SHA-256 of the DER request, lowercase hex (what the ceremony log records)
    key_id: str  # SHA-256 of the DER SubjectPublicKeyInfo (the contract's key fingerprint)
    key_type: str
    requested_subject: str  # untrusted; display only, escaped


def _parse(data: bytes, *, source: str) -> x509.CertificateSigningRequest:
    if data.lstrip()[:1] == b"-":
        if not _PEM.match(data):
            raise InvalidInput(f"{source}: not a PEM certificate request (one CERTIFICATE REQUEST block)")
        pem = data.replace(b"BEGIN NEW CERTIFICATE", b"BEGIN CERTIFICATE").replace(
            b"END NEW CERTIFICATE", b"END CERTIFICATE"
        )
        try:
            return x509.load_pem_x509_csr(pem.strip() + b"\n")
        except ValueError as exc:
            raise InvalidInput(f"{source}: not a valid PEM certificate request") from exc
    try:
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise InvalidInput(f"{source}: not a certificate request (PEM or DER PKCS#10)") from exc


def check_key_policy(key: object, *, source: str) -> PublicKey:
    """RSA ≥ 3072 (e = 65537) or EC P-256 / P-384; anything else is exit 3."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidInput(f"{source}: RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are required")
        if key.public_numbers().e != 65537:
            raise InvalidInput(f"{source}: RSA public exponent must be 65537")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            raise InvalidInput(f"{source}: EC curve {key.curve.name} is not allowed; use P-256 or P-384")
        return key
    raise InvalidInput(f"{source}: key algorithm {type(key).__name__} is not allowed; use RSA ≥ 3072, P-256 or P-384")


def verify_csr(data: bytes, *, source: str) -> VerifiedCSR:
    """Check an untrusted CSR (steps in the module docstring) and return only what may be used."""
    # 1. size cap
    if not data:
        raise InvalidInput(f"{source}: the certificate request is empty")
    if len(data) > MAX_CSR_BYTES:
        raise TooLarge(f"{source}: too large for a certificate request (over {MAX_CSR_BYTES} bytes)")
    # 2. parse
    csr = _parse(data, source=source)
    try:
        key = csr.public_key()
    except (ValueError, TypeError) as exc:  # an unsupported or malformed SubjectPublicKeyInfo
        raise InvalidInput(f"{source}: the request's public key cannot be read") from exc
    # 3. the request's own signature
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # unsupported signature algorithm
        raise SignatureMismatch(f"{source}: the request's signature cannot be checked") from exc
    if not valid:
        raise SignatureMismatch(f"{source}: the request's own signature does not verify")
    # 4. key policy
    pub = check_key_policy(key, source=source)
    der = csr.public_bytes(serialization.Encoding.DER)
    try:
        subject = csr.subject.rfc4514_string()
    except (ValueError, TypeError):
        subject = "(unreadable)"
    return VerifiedCSR(
        public_key=pub,
        der=der,
        sha256=hashlib.sha256(der).hexdigest(),
        key_id=spki_sha256(pub),
        key_type=key_type_of(pub),
        requested_subject=subject,
    )


def csr_pem(der: bytes) -> bytes:
    """PEM of a DER request (as it goes into a request file)."""
    return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)


__all__ = ["MAX_CSR_BYTES", "VerifiedCSR", "check_key_policy", "csr_pem", "verify_csr"]
