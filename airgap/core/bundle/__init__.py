"""The transfer-bundle format: manifest, canonical bytes, strict tar reader, verification.

* :mod:`.manifest`: the manifest, its canonical bytes, strict JSON, schema and cross-field checks, signing;
* :mod:`.ustar`: the strict ustar reader and the bundle writer;
* :mod:`.verify`: :func:`open_bundle` → :class:`VerifiedBundle`, and :func:`inspect_bundle`.

This package re-exports their public names (``from airgap.core.bundle import open_bundle``).

A bundle is an uncompressed POSIX ustar archive (``bundles/SPEC.md`` is the normative text)::

    <member 1> ... <member n>   in the manifest's order (cacerts/…, then include/…)
    manifest.json               canonical JSON (sorted keys, no whitespace, ASCII)
    manifest.json.sig           DER ECDSA signature over the exact bytes of manifest.json
    two zero blocks             then only zero bytes up to the end of the file

Trust: everything read from a bundle is hostile until :func:`open_bundle` returns. It checks, in
the order the format requires, and before trusting anything it read: size caps, member types,
member names, the manifest against the schema, the signature against the caller's trusted keys,
every member's size and SHA-256, no member missing or extra, expiry. Only the returned
:class:`VerifiedBundle` may be used by import; :func:`inspect_bundle` reports unverified claims.
"""

from __future__ import annotations

from airgap.core.bundle.manifest import (
    _MEMBER_KEYS,
    _TOP_KEYS,
    _TOP_KEYS_V1,
    CA_CERT,
    CA_CRL,
    CA_KEY,
    CA_KEY_AGE,
    CACERTS_ORDER,
    CERT_CHAIN,
    FORMAT_VERSION,
    INCLUDE_NAME,
    MANIFEST_NAME,
    MAX_EXPIRY_DAYS,
    MAX_RECIPIENTS,
    MAX_SEQUENCE,
    MAX_USTAR_SIZE,
    ROOT_CERT,
    SIGNATURE_NAME,
    SUPPORTED_FORMAT_VERSIONS,
    Manifest,
    MemberEntry,
    check_bundled_crl,
    check_signer_key,
    format_time,
    parse_manifest_json,
    parse_time,
    sign_manifest,
    validate_manifest,
)
from airgap.core.bundle.ustar import (
    BLOCK,
    BundleWriter,
    TarEntry,
    padding_for,
    scan_archive,
    ustar_header,
)
from airgap.core.bundle.verify import (
    VerifiedBundle,
    inspect_bundle,
    open_bundle,
)
from airgap.core.canonical import canonical_json

__all__ = [
    "BLOCK",
    "CACERTS_ORDER",
    "CA_CERT",
    "CA_CRL",
    "CA_KEY",
    "CA_KEY_AGE",
    "CERT_CHAIN",
    "FORMAT_VERSION",
    "INCLUDE_NAME",
    "MANIFEST_NAME",
    "MAX_EXPIRY_DAYS",
    "MAX_RECIPIENTS",
    "MAX_SEQUENCE",
    "MAX_USTAR_SIZE",
    "ROOT_CERT",
    "SIGNATURE_NAME",
    "SUPPORTED_FORMAT_VERSIONS",
    "_MEMBER_KEYS",
    "_TOP_KEYS",
    "_TOP_KEYS_V1",
    "BundleWriter",
    "Manifest",
    "MemberEntry",
    "TarEntry",
    "VerifiedBundle",
    "canonical_json",
    "check_bundled_crl",
    "check_signer_key",
    "format_time",
    "inspect_bundle",
    "open_bundle",
    "padding_for",
    "parse_manifest_json",
    "parse_time",
    "scan_archive",
    "sign_manifest",
    "ustar_header",
    "validate_manifest",
]
