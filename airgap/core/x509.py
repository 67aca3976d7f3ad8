"""X.509 for Istio's plugged-in CA: build the root and intermediates, load and check them.

Profiles follow Istio's ``tools/certs/Makefile.selfsigned.mk`` (see the contract), plus
``cRLSign`` on both CAs, key identifiers, random positive serials and SHA-256 or stronger.

:func:`check_ca_material` checks a cluster's four ``cacerts`` files the way istiod does before
it will sign with them; bundle import and ``ca list`` both use it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from airgap.core.keys import PrivateKey, PublicKey, keys_match, signature_hash_for
from airgap.errors import ChainBroken, Expired, InvalidInput, VerificationError

ISTIOD_SAN = "DNS:istiod.istio-system.svc"
EXPIRING_DAYS = 90
# Backdate notBefore a little so clocks slightly behind ours still accept the cert.
BACKDATE = dt.timedelta(minutes=5)


def ca_key_usage(subject_key: PublicKey | PrivateKey) -> x509.KeyUsage:
    """Istio's CA key usage (digitalSignature, nonRepudiation, keyEncipherment, keyCertSign) + cRLSign.

    keyEncipherment only for RSA keys: RFC 8813 prohibits it for EC keys (pkilint flags it).
    """
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,  # nonRepudiation
        key_encipherment=isinstance(subject_key, rsa.RSAPublicKey | rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


_WEAK_SIGNATURES = {
    SignatureAlgorithmOID.RSA_WITH_SHA1,
    SignatureAlgorithmOID.ECDSA_WITH_SHA1,
    SignatureAlgorithmOID.DSA_WITH_SHA1,
    SignatureAlgorithmOID.RSA_WITH_MD5,
    SignatureAlgorithmOID._RSA_WITH_SHA1,
}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 over the DER certificate, lowercase hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# RFC 5280 Appendix A.1 upper bounds (characters) of the subject attributes airgap writes.
SUBJECT_BOUNDS = {"--org": ("ub-organization-name", 64), "--cn": ("ub-common-name", 64)}


def check_subject(*, org: str | None, cn: str | None) -> None:
    """``--org`` and ``--cn`` (when given) must be 1 to 64 characters, no control characters (exit 3).

    Run it before any key is made: an empty or oversized field would otherwise fail while the
    certificate is built.
    """
    for flag, value in (("--org", org), ("--cn", cn)):
        if value is None:  # the caller's default applies (e.g. the next root's derived CN)
            continue
        bound_name, bound = SUBJECT_BOUNDS[flag]
        if not value or not value.strip():
            raise InvalidInput(
                f"{flag} is empty: a subject field needs 1 to {bound} characters (RFC 5280 {bound_name})"
            )
        if len(value) > bound:
            raise InvalidInput(f"{flag} is {len(value)} characters: RFC 5280 allows at most {bound} ({bound_name})")
        if any(not ch.isprintable() for ch in value):
            raise InvalidInput(f"{flag} holds control characters; use printable text")


def check_validity_days(days: int, *, flag: str = "--days") -> None:
    """A validity in days between 1 and 100 years (exit 3); beyond that datetime overflows."""
    from airgap.core.limits import MAX_VALIDITY_DAYS

    if not 1 <= days <= MAX_VALIDITY_DAYS:
        raise InvalidInput(f"{flag} {days}: must be between 1 and {MAX_VALIDITY_DAYS} days")


def _name(org: str, cn: str, locality: str | None = None) -> x509.Name:
    check_subject(org=org, cn=cn)
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if locality:
        attrs.append(x509.NameAttribute(NameOID.LOCALITY_NAME, locality))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME_RE = re.compile(rf"(?:\*\.)?{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
# A SPIFFE ID (SPIFFE-ID spec §2): a lowercase trust domain, then path segments of [A-Za-z0-9._-]
# (no empty, "." or ".." segment), no port, user-info, query or fragment; at most 2048 bytes.
SPIFFE_ID_RE = re.compile(r"spiffe://[a-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
MAX_SPIFFE_ID = 2048


def is_spiffe_id(value: str) -> bool:
    """True when ``value`` is a valid SPIFFE ID (Istio's workload identities are SPIFFE IDs)."""
    return (
        len(value.encode()) <= MAX_SPIFFE_ID
        and SPIFFE_ID_RE.fullmatch(value) is not None
        and not any(seg in (".", "..") for seg in value[len("spiffe://") :].split("/")[1:])
    )


def dns_san(value: str, *, shown: str) -> str:
    """A DNS SAN as it goes in a certificate: non-ASCII names become their A-label (IDNA 2008 with
    UTS #46 mapping, as browsers do: ``ünï.com`` → ``xn--n-tfa4b.com``); anything that is not a
    host name (or ``*.`` wildcard) of letters, digits and ``-`` is refused (exit 3)."""
    name = value
    if not name.isascii():
        import idna

        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise InvalidInput(f"--san {shown!r}: not a valid internationalised domain name ({exc})") from exc
    if len(name) > 253 or not DNS_NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"--san {shown!r}: not a valid DNS name (labels of letters, digits and '-', separated by '.', "
            "an optional leading '*.')"
        )
    return name


def _parse_san(value: str) -> x509.GeneralName:
    kind, _, rest = value.partition(":")
    if not rest:
        raise InvalidInput(f"--san {value!r}: expected TYPE:VALUE, e.g. DNS:istiod.istio-system.svc")
    kind = kind.upper()
    if kind == "DNS":
        return x509.DNSName(dns_san(rest, shown=value))
    if kind == "URI":
        if rest.lower().startswith("spiffe:") and not is_spiffe_id(rest):
            raise InvalidInput(
                f"--san {value!r}: not a valid SPIFFE ID (spiffe://<lowercase trust domain>/<segments of "
                "letters, digits, '.', '-', '_'>)"
            )
        if not rest.isascii() or not rest.isprintable():
            raise InvalidInput(f"--san {value!r}: a URI must be printable ASCII (percent-encode the rest)")
        return x509.UniformResourceIdentifier(rest)
    if kind == "IP":
        import ipaddress

        try:
            return x509.IPAddress(ipaddress.ip_address(rest))
        except ValueError as exc:
            raise InvalidInput(f"--san {value!r}: not an IP address") from exc
    raise InvalidInput(f"--san {value!r}: type must be DNS, URI or IP")


def root_builder(
    key: PrivateKey, *, org: str, cn: str, days: int, not_before: dt.datetime | None = None
) -> x509.CertificateBuilder:
    """The to-be-signed self-signed root: ``CA:true`` (critical), the Istio key usage plus cRLSign, SKI, AKI."""
    check_validity_days(days)
    start = (not_before or now()) - BACKDATE
    name = _name(org, cn)
    pub = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + BACKDATE + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ca_key_usage(pub), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pub), critical=False)
    )


def build_root(
    key: PrivateKey, *, org: str, cn: str, days: int, not_before: dt.datetime | None = None
) -> x509.Certificate:
    """A self-signed root (:func:`root_builder`), re-parsed and verified."""
    cert = root_builder(key, org=org, cn=cn, days=days, not_before=not_before).sign(key, signature_hash_for(key))
    return check_issued(cert, cert, what="root certificate")


def authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI of what ``issuer`` signs: its subjectKeyIdentifier, or (a root without one, which is
    legal: RFC 5280 4.2.1.2 only says SHOULD) derived from its public key as RFC 5280 method 1 does."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def intermediate_builder(
    public: PublicKey,
    *,
    cluster: str,
    root_cert: x509.Certificate,
    org: str,
    cn: str,
    days: int,
    sans: list[str],
    not_before: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    """The to-be-signed cluster intermediate: ``CA:true, pathlen:0`` (critical), ``L=<cluster>``, SAN, SKI, AKI.

    Only ``public`` comes from the key's holder; every other field is the profile's. The caller
    guarantees validity ends no later than the root's (:func:`check_within_root`).
    """
    check_validity_days(days)
    start = (not_before or now()) - BACKDATE
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(org, cn, locality=cluster))
        .issuer_name(root_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + BACKDATE + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ca_key_usage(public), critical=True)
    )
    if sans:  # an empty SubjectAltName is not valid DER (RFC 5280: at least one name); no SANs, no extension
        builder = builder.add_extension(x509.SubjectAlternativeName([_parse_san(s) for s in sans]), critical=False)
    return builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False).add_extension(
        authority_key_id(root_cert), critical=False
    )


def build_intermediate(
    public: PublicKey,
    *,
    cluster: str,
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    org: str,
    cn: str,
    days: int,
    sans: list[str],
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """A cluster intermediate (:func:`intermediate_builder`) signed by ``root_key``, re-parsed and verified."""
    builder = intermediate_builder(
        public, cluster=cluster, root_cert=root_cert, org=org, cn=cn, days=days, sans=sans, not_before=not_before
    )
    return check_issued(builder.sign(root_key, signature_hash_for(root_key)), root_cert, what="intermediate")


def check_issued(cert: x509.Certificate, issuer: x509.Certificate, *, what: str) -> x509.Certificate:
    """Sign, re-parse, verify (after Boulder's ``signAndWriteCert``): ``cert`` re-parsed from its DER
    must verify against ``issuer``'s public key, else :class:`VerificationError` and nothing is written.

    A token (PKCS#11) key signs through airgap's own ``sign()`` methods; this proves the bytes
    that would be published really carry the issuer's signature.
    """
    reparsed = x509.load_der_x509_certificate(cert.public_bytes(serialization.Encoding.DER))
    if not signed_by(reparsed, issuer):
        raise VerificationError(
            f"the signed {what} does not verify against the issuer's public key "
            f"({issuer.subject.rfc4514_string()}); nothing was written"
        )
    return reparsed


def check_crl_issued(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> x509.CertificateRevocationList:
    """:func:`check_issued` for a CRL: re-parsed, its signature must verify with ``issuer``'s key."""
    reparsed = x509.load_der_x509_crl(crl.public_bytes(serialization.Encoding.DER))
    if not reparsed.is_signature_valid(issuer.public_key()) or reparsed.issuer != issuer.subject:  # type: ignore[arg-type]
        raise VerificationError(
            f"the signed CRL does not verify against the issuer's public key "
            f"({issuer.subject.rfc4514_string()}); nothing was written"
        )
    return reparsed


def validate_sans(sans: list[str]) -> None:
    for s in sans:
        _parse_san(s)


def check_within_root(root_cert: x509.Certificate, days: int, *, at: dt.datetime | None = None) -> None:
    """Refuse an intermediate that would outlive its root (exit 4: precondition)."""
    check_validity_days(days)
    start = at or now()
    end = start + dt.timedelta(days=days)
    root_end = root_cert.not_valid_after_utc
    if root_end <= start:
        raise Expired(f"the root expired on {root_end:%Y-%m-%d}; it must be rotated ('airgap ca rotate-root')")
    if end > root_end:
        left = (root_end - start).days
        if left < 1:  # no whole day left: no --days value fits
            raise Expired(
                f"the root expires on {root_end:%Y-%m-%d %H:%M} UTC (0 days left: it expires today); no intermediate "
                "fits inside it: the root must be rotated ('airgap ca rotate-root')"
            )
        soon = "; the root itself must be rotated soon ('airgap ca rotate-root')" if left < 30 else ""
        raise Expired(
            f"an intermediate valid {days} days would outlive the root (expires {root_end:%Y-%m-%d}, "
            f"{left} day{'s' if left != 1 else ''} left); use --days {left} or less{soon}"
        )


def load_cert_pem(data: bytes, *, source: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise InvalidInput(f"{source}: not a valid PEM certificate") from exc


def load_certs_pem(data: bytes, *, source: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InvalidInput(f"{source}: not a valid PEM certificate chain") from exc
    if not certs:
        raise InvalidInput(f"{source}: no certificate found")
    return certs


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key made ``cert``'s signature and the names chain."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError):
        return False
    except Exception:  # InvalidSignature
        return False
    return True


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def weak_signature(cert: x509.Certificate) -> bool:
    """True for SHA-1/MD5 signatures, which istiod rejects."""
    return cert.signature_algorithm_oid in _WEAK_SIGNATURES


def status_of(cert: x509.Certificate, *, at: dt.datetime | None = None) -> str:
    """``valid`` / ``expiring`` (< 90 days left) / ``expired`` / ``not-yet-valid``."""
    t = at or now()
    if cert.not_valid_after_utc <= t:
        return "expired"
    if cert.not_valid_before_utc > t:
        return "not-yet-valid"
    if cert.not_valid_after_utc - t < dt.timedelta(days=EXPIRING_DAYS):
        return "expiring"
    return "valid"


def revocation_entry(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> str | None:
    """``cert``'s entry in ``crl`` described for a user, or None when the CRL does not list it.

    Only a CRL of ``cert``'s own issuer counts (the caller has checked its signature). Example:
    ``"CRL #2 lists serial 1f3a... (keyCompromise, revoked 2026-12-01T10:00:00Z)"``.
    """
    if crl.issuer != cert.issuer:
        return None
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return None
    reasons = [e.value.reason.value for e in entry.extensions if isinstance(e.value, x509.CRLReason)]
    reason = str(reasons[0]) if reasons else "unspecified"
    try:
        number = f"CRL #{crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number}"
    except x509.ExtensionNotFound:
        number = "the CRL"
    when = entry.revocation_date_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{number} lists serial {cert.serial_number:x} ({reason}, revoked {when})"


@dataclass(frozen=True)
class CAMaterial:
    """A cluster's four ``cacerts`` files, parsed and checked as istiod would."""

    ca_cert: x509.Certificate
    root_cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    ca_cert_pem: bytes
    ca_key_pem: bytes = field(repr=False)  # a secret: never in reprs, logs or tracebacks
    cert_chain_pem: bytes
    root_cert_pem: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.ca_cert)


def check_ca_material(
    *,
    ca_cert_pem: bytes,
    ca_key: PrivateKey | None,
    ca_key_pem: bytes,
    cert_chain_pem: bytes,
    root_cert_pem: bytes,
    at: dt.datetime | None = None,
    source: str = "cacerts",
) -> CAMaterial:
    """Check CA material as istiod's plugged-in CA would, or raise :class:`VerificationError`.

    1. every file parses; 2. the key matches ``ca-cert.pem`` (skipped when ``ca_key`` is None);
    3. ``ca-cert.pem`` is a CA; 4. ``cert-chain.pem`` starts with ``ca-cert.pem``; 5. the chain
    verifies link by link and ends at a cert signed by ``root-cert.pem``; 6. nothing is expired or
    not yet valid; 7. no SHA-1/MD5 signature.
    """
    ca_cert = load_cert_pem(ca_cert_pem, source=f"{source}/ca-cert.pem")
    chain = load_certs_pem(cert_chain_pem, source=f"{source}/cert-chain.pem")
    roots = load_certs_pem(root_cert_pem, source=f"{source}/root-cert.pem")
    if ca_key is not None and not keys_match(ca_key, ca_cert.public_key()):  # type: ignore[arg-type]
        raise VerificationError(f"{source}: ca-key.pem does not match ca-cert.pem")
    if not is_ca(ca_cert):
        raise VerificationError(f"{source}: ca-cert.pem is not a CA certificate")
    if chain[0] != ca_cert:
        raise ChainBroken(f"{source}: cert-chain.pem does not start with ca-cert.pem")
    for child, parent in itertools.pairwise(chain):
        if not signed_by(child, parent):
            raise ChainBroken(f"{source}: cert-chain.pem is broken at {child.subject.rfc4514_string()}")
    last = chain[-1]
    anchor = next((r for r in roots if r == last or signed_by(last, r)), None)
    if anchor is None:
        raise ChainBroken(f"{source}: the chain does not verify to root-cert.pem")
    t = at or now()
    for cert in (*chain, anchor):
        who = cert.subject.rfc4514_string()
        if cert.not_valid_after_utc <= t:
            raise VerificationError(f"{source}: certificate {who} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
        if cert.not_valid_before_utc > t:
            raise VerificationError(f"{source}: certificate {who} is not yet valid")
        if weak_signature(cert):
            raise ChainBroken(f"{source}: certificate {who} uses a SHA-1/MD5 signature, which istiod rejects")
    return CAMaterial(
        ca_cert=ca_cert,
        root_cert=anchor,
        chain=tuple(chain),
        ca_cert_pem=ca_cert_pem,
        ca_key_pem=ca_key_pem,
        cert_chain_pem=cert_chain_pem,
        root_cert_pem=root_cert_pem,
    )


__all__ = [
    "ISTIOD_SAN",
    "CAMaterial",
    "authority_key_id",
    "build_intermediate",
    "build_root",
    "cert_pem",
    "check_ca_material",
    "check_within_root",
    "dns_san",
    "fingerprint",
    "intermediate_builder",
    "is_ca",
    "is_spiffe_id",
    "load_cert_pem",
    "load_certs_pem",
    "root_builder",
    "signed_by",
    "status_of",
]
