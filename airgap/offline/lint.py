"""The lint gate: nothing the root signs is published unless it lints clean and verifies.

For a certificate (Boulder's ``signAndWriteCert`` with zlint, here with pkilint's PKIX linters):

1. a **pre-certificate** with the same TBS (same serial, names, validity, extensions, signature
   algorithm) is signed by a throwaway key of the issuer's algorithm and linted, before the real
   key (maybe a PKCS#11 token) is touched;
2. any finding of ERROR or FATAL severity refuses the act (exit 4), naming the finding;
3. the real key signs;
4. the result is re-parsed from its DER, its TBS must be the pre-certificate's byte for byte, and
   its signature must verify with the issuer certificate's key (exit 1 otherwise);
5. an intermediate's chain to its root must pass a real path validator
   (:func:`airgap.core.pathcheck.validate_intermediate`: constraints, key usage, name constraints,
   nested EKUs), else exit 4.

Only then may the caller write it. pkilint is imported when a gate runs, never at CLI start-up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from airgap.core.keys import PrivateKey, signature_hash_for
from airgap.errors import Refused, VerificationError


@dataclass(frozen=True)
class Finding:
    """One pkilint finding: its code (e.g. ``pkix.ca_certificate_keyusage_...``), severity, message."""

    code: str
    severity: str
    message: str | None


@functools.cache
def _throwaway(kind: str) -> PrivateKey:
    """A per-process key only ever used to sign pre-certificates (never written, never trusted)."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def _cert_validator() -> object:
    from pkilint.pkix import certificate, extension, name

    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


def lint_certificate(der: bytes) -> list[Finding]:
    """pkilint's RFC 5280 certificate linters over ``der``: every finding of WARNING or worse."""
    from pkilint import loader
    from pkilint.validation import ValidationFindingSeverity

    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "certificate")
    results = _cert_validator().validate(doc.root)  # type: ignore[attr-defined]
    out: list[Finding] = []
    for r in results:
        for fd in r.finding_descriptions:
            if fd.finding.severity <= ValidationFindingSeverity.WARNING and not _spiffe_uri_finding(
                fd.finding.code, fd.message
            ):
                out.append(Finding(fd.finding.code, fd.finding.severity.name, fd.message))
    return out


def _spiffe_uri_finding(code: str, message: str | None) -> bool:
    """pkilint's URI check (``validators.url``) knows only a fixed list of schemes, so it reports
    every SPIFFE ID (Istio's identities) as "Invalid URI syntax". Only that finding, and only for a
    URI that is a valid SPIFFE ID (:func:`airgap.core.x509.is_spiffe_id`), is dropped."""
    from airgap.core.x509 import is_spiffe_id

    prefix = 'Invalid URI syntax: "'
    if code != "pkix.invalid_uri_syntax" or not message or not message.startswith(prefix) or not message.endswith('"'):
        return False
    return is_spiffe_id(message[len(prefix) : -1])


def errors_of(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity in ("FATAL", "ERROR")]


Linter = Callable[[bytes], list[Finding]]


@dataclass(frozen=True)
class Linted:
    """A to-be-signed certificate whose pre-certificate passed the gate (made only by :func:`lint_gate`)."""

    what: str
    builder: x509.CertificateBuilder
    pre: x509.Certificate


def lint_gate(
    items: Sequence[tuple[str, x509.CertificateBuilder]],
    *,
    issuer_key: PrivateKey,
    linter: Linter = lint_certificate,
    workers: int = 1,
) -> list[Linted]:
    """Steps 1-2 for every item, before the real key signs any of them (a batch is all or nothing).

    ``items`` are (what, builder) pairs; ``what`` names the certificate in a refusal. With
    ``workers`` > 1 (and pkilint's linter) the pre-certificates are linted in a process pool.
    """
    digest = signature_hash_for(issuer_key)
    kind = "rsa" if isinstance(issuer_key, rsa.RSAPrivateKey) else "ec"
    # 1. the pre-certificates: same TBS, throwaway key of the issuer's algorithm
    pres = [builder.sign(_throwaway(kind), digest) for _, builder in items]
    ders = [p.public_bytes(serialization.Encoding.DER) for p in pres]
    # 2. lint; any error refuses before the real key is used
    if workers > 1 and linter is lint_certificate and len(ders) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            found = list(pool.map(lint_certificate, ders, chunksize=max(1, len(ders) // (4 * workers))))
    else:
        found = [linter(d) for d in ders]
    for (what, _), findings in zip(items, found, strict=True):
        bad = errors_of(findings)
        if bad:
            f = bad[0]
            detail = f": {f.message}" if f.message else ""
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise Refused(f"{what}: the lint gate refused to sign: {f.code} ({f.severity}){detail}{more}")
    return [Linted(what, builder, pre) for (what, builder), pre in zip(items, pres, strict=True)]


def sign_linted(linted: Linted, *, issuer_cert: x509.Certificate | None, issuer_key: PrivateKey) -> x509.Certificate:
    """Steps 3-4: the real signature, then re-parse, compare with what was linted, verify
    (``issuer_cert`` None: a self-signed root, verified against itself)."""
    # 3. the real signature
    signed = linted.builder.sign(issuer_key, signature_hash_for(issuer_key))
    # 4. re-parse, same TBS as linted, verifies with the issuer's key
    cert = x509.load_der_x509_certificate(signed.public_bytes(serialization.Encoding.DER))
    if cert.tbs_certificate_bytes != linted.pre.tbs_certificate_bytes:
        raise VerificationError(f"{linted.what}: the signed certificate is not the one that was linted")
    try:
        cert.verify_directly_issued_by(issuer_cert if issuer_cert is not None else cert)
    except Exception as exc:  # InvalidSignature, ValueError, TypeError
        raise VerificationError(f"{linted.what}: the new certificate does not verify with the issuer's key") from exc
    if issuer_cert is not None:  # 5. the chain validates (nothing is published otherwise)
        check_path(cert, issuer_cert, what=linted.what)
    return cert


def check_path(cert: x509.Certificate, issuer_cert: x509.Certificate, *, what: str) -> None:
    """Step 5: root → ``cert`` passes a real path validator (:mod:`airgap.core.pathcheck`), else exit 4."""
    from airgap.core.pathcheck import chain_problem

    problem = chain_problem(cert, [issuer_cert])
    if problem is not None:
        raise Refused(f"{what}: the lint gate refused the chain: it does not validate: {problem}")


def sign_certificate(
    builder: x509.CertificateBuilder,
    *,
    issuer_cert: x509.Certificate | None,
    issuer_key: PrivateKey,
    what: str,
    linter: Linter = lint_certificate,
) -> x509.Certificate:
    """Lint a pre-certificate of ``builder``, then sign with ``issuer_key``, re-parse and verify.

    Trust: ``builder`` is built by airgap's own profile code; ``issuer_key`` may be a token key that
    cannot be inspected. Refused (exit 4) before the real key signs when the pre-certificate has an
    error-severity finding; :class:`VerificationError` (exit 1) when the signed result differs from
    what was linted or does not verify with ``issuer_cert``'s key. ``linter`` is for tests.
    """
    (linted,) = lint_gate([(what, builder)], issuer_key=issuer_key, linter=linter)
    return sign_linted(linted, issuer_cert=issuer_cert, issuer_key=issuer_key)


@functools.cache
def _crl_validator() -> object:
    from pkilint import pkix
    from pkilint.pkix import crl, extension, name

    return crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([]),
            crl.create_extensions_validator_container([]),
        ],
    )


def lint_crl(der: bytes) -> list[Finding]:
    """pkilint's RFC 5280 CRL linters (a CRL, not an ARL) over ``der``: findings of WARNING or worse."""
    from pkilint import loader
    from pkilint.validation import ValidationFindingSeverity

    doc = loader.RFC5280CertificateListDocumentLoader().load_der_document(der, "crl")
    results = _crl_validator().validate(doc.root)  # type: ignore[attr-defined]
    return [
        Finding(fd.finding.code, fd.finding.severity.name, fd.message)
        for r in results
        for fd in r.finding_descriptions
        if fd.finding.severity <= ValidationFindingSeverity.WARNING
    ]


def sign_crl(
    builder: x509.CertificateRevocationListBuilder,
    *,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    linter: Linter = lint_crl,
) -> x509.CertificateRevocationList:
    """The same gate for a CRL: a pre-CRL signed by a throwaway key is linted (ERROR: exit 4) before
    the real key signs; the result is re-parsed, its TBS compared and its signature verified (exit 1)."""
    from airgap.core.x509 import check_crl_issued

    digest = signature_hash_for(issuer_key)
    kind = "rsa" if isinstance(issuer_key, rsa.RSAPrivateKey) else "ec"
    pre = builder.sign(_throwaway(kind), digest)
    bad = errors_of(linter(pre.public_bytes(serialization.Encoding.DER)))
    if bad:
        f = bad[0]
        detail = f": {f.message}" if f.message else ""
        raise Refused(f"CRL: the lint gate refused to sign: {f.code} ({f.severity}){detail}")
    crl = check_crl_issued(builder.sign(issuer_key, digest), issuer_cert)
    if crl.tbs_certlist_bytes != pre.tbs_certlist_bytes:
        raise VerificationError("CRL: the signed CRL is not the one that was linted")
    return crl


__all__ = [
    "Finding",
    "Linted",
    "Linter",
    "check_path",
    "errors_of",
    "lint_certificate",
    "lint_crl",
    "lint_gate",
    "sign_certificate",
    "sign_crl",
    "sign_linted",
]
