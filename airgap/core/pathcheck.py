"""Path validation of airgap's chains with a real validator (``cryptography.x509.verification``).

A cluster intermediate is validated as the end of the path root → intermediate, the way the
workload certificates istiod signs will be: the root's basic constraints, key usage, name
constraints (against the intermediate's SANs) and extended key usage are those of RFC 5280 and
the Web PKI profile (``ExtensionPolicy.webpki_defaults_ca``), checked for ``clientAuth`` and, when
the intermediate has a DNS SAN, ``serverAuth`` (Go's verifier, which istiod uses, nests EKUs: a CA
with an EKU must allow what its leaves use). The intermediate itself is checked with
``ExtensionPolicy.permit_all`` (a CA certificate is not a Web PKI end entity).

The validator cannot see the path length a workload certificate needs below the intermediate, so
:func:`root_problems` checks it, and says in words what the validator reports in its own terms.

Trust: nothing here is trusted; certificates in, a reason out (or :class:`ChainBroken`).
"""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from airgap.errors import ChainBroken

# What a workload certificate under an airgap intermediate uses (Istio's mTLS: both ways).
WORKLOAD_EKUS = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


E = TypeVar("E", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[E]) -> E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def root_problems(cert: x509.Certificate) -> list[str]:
    """Why ``cert`` cannot be the root of root → intermediate (pathlen:0) → workload: [] when it can."""
    from airgap.core.x509 import weak_signature

    out: list[str] = []
    bc = _ext(cert, x509.BasicConstraints)
    if bc is None or not bc.ca:
        out.append("basicConstraints CA:true is missing")
    elif bc.path_length is not None and bc.path_length < 1:
        out.append(
            f"basicConstraints pathlen:{bc.path_length} allows no intermediate "
            "(airgap issues one per cluster: pathlen must be absent or at least 1)"
        )
    ku = _ext(cert, x509.KeyUsage)
    if ku is None:
        out.append("keyUsage is missing (a root needs keyCertSign)")
    elif not ku.key_cert_sign:
        out.append("keyUsage lacks keyCertSign (the root signs the clusters' intermediates)")
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is not None:
        usages = set(eku)
        lacking = [u._name for u in WORKLOAD_EKUS if u not in usages]
        if lacking:
            out.append(
                f"extendedKeyUsage lacks {', '.join(lacking)}: Go's verifier (istiod) nests EKUs, and OpenSSL's "
                "does not count anyExtendedKeyUsage, so workload certificates under this root would not verify "
                "(the root needs no EKU, or serverAuth and clientAuth)"
            )
    if weak_signature(cert):
        out.append("the signature is SHA-1/MD5, which istiod rejects")
    return out


def can_sign_crls(cert: x509.Certificate) -> bool:
    """Whether a CRL ``cert`` signs would be accepted: keyUsage, when present, asserts cRLSign.

    Istio's own ``Makefile.selfsigned.mk`` roots lack it: they are adopted, and refused when a CRL
    is to be signed (``ca revoke``, ``ca crl``), with the advice to rotate the root."""
    ku = _ext(cert, x509.KeyUsage)
    return ku is None or ku.crl_sign


def _reason(exc: Exception) -> str:
    text = str(exc)
    for prefix in ("validation failed: ", "candidates exhausted: "):
        text = text.removeprefix(prefix)
    return text


def _valid_time(chain: list[x509.Certificate], at: dt.datetime) -> dt.datetime:
    """``at``, moved inside every certificate's validity when it is outside one (expiry is reported apart)."""
    start = max(c.not_valid_before_utc for c in chain)
    end = min(c.not_valid_after_utc for c in chain)
    return min(max(at, start), max(start, end - dt.timedelta(seconds=1)))


def chain_problem(
    cert: x509.Certificate, roots: list[x509.Certificate], *, at: dt.datetime | None = None
) -> str | None:
    """Why root → ``cert`` fails the path validator (module docstring), or None when it passes. Each
    caller raises its own cause (the lint gate refuses, ``ca list`` reports, adoption refuses). ``at``
    (default now) is moved inside the validity of the chain: expiry is the caller's own check."""
    from cryptography.x509 import verification as v

    from airgap.core.x509 import now

    issuers = [r for r in roots if r.subject == cert.issuer] or roots
    when = _valid_time([cert, issuers[0]], at or now())
    problems = [f"the root {p}" for r in issuers[:1] for p in root_problems(r)]
    if problems:
        return problems[0]
    san = _ext(cert, x509.SubjectAlternativeName)
    dns = san.get_values_for_type(x509.DNSName) if san is not None else []
    ee = v.ExtensionPolicy.permit_all()
    ca = v.ExtensionPolicy.webpki_defaults_ca()
    builder = v.PolicyBuilder().store(v.Store(roots)).time(when)
    try:
        builder.extension_policies(ca_policy=ca, ee_policy=ee).build_client_verifier().verify(cert, [])
        if dns:
            ee_server = ee.require_present(x509.SubjectAlternativeName, v.Criticality.AGNOSTIC, None)
            server = builder.extension_policies(ca_policy=ca, ee_policy=ee_server)
            server.build_server_verifier(x509.DNSName(dns[0])).verify(cert, [])
    except v.VerificationError as exc:
        return _reason(exc)
    return None


def validate_intermediate(
    cert: x509.Certificate, roots: list[x509.Certificate], *, at: dt.datetime | None = None
) -> None:
    """:func:`chain_problem` as an error: :class:`ChainBroken` (exit 1) with the validator's reason."""
    problem = chain_problem(cert, roots, at=at)
    if problem is not None:
        raise ChainBroken(problem)


__all__ = ["WORKLOAD_EKUS", "can_sign_crls", "chain_problem", "root_problems", "validate_intermediate"]
