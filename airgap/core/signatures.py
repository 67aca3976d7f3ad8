"""Detached signatures: sign and verify bytes or a pre-computed digest.

Accepts the raw DER ECDSA signature that ``openssl dgst -sign`` writes and its base64 form (what
``cosign sign-blob`` prints). Verification returns nothing or raises :class:`VerificationError`.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from airgap.core.keys import PublicKey, signature_hash_for
from airgap.errors import InvalidInput, VerificationError

MAX_SIGNATURE = 64 * 1024


def decode_signature(raw: bytes, *, source: str = "signature") -> bytes:
    """Raw DER stays as is; base64 text (cosign) is decoded. Anything else is exit 3."""
    if not raw:
        raise InvalidInput(f"{source}: signature is empty")
    if len(raw) > MAX_SIGNATURE:
        raise InvalidInput(f"{source}: too large for a signature")
    if raw[:1] == b"\x30":  # DER SEQUENCE (ECDSA); RSA signatures are raw big-endian bytes
        return raw
    text = raw.strip()
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return raw  # not base64: let verification decide (e.g. an RSA signature)
    return decoded if decoded else raw


def verify_digest(public: PublicKey, digest: bytes, signature: bytes, algorithm: hashes.HashAlgorithm) -> None:
    """Verify ``signature`` over a digest computed with ``algorithm``; raise on failure."""
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, digest, ec.ECDSA(Prehashed(algorithm)))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, digest, padding.PKCS1v15(), Prehashed(algorithm))
        else:  # pragma: no cover - load_public_key only returns the two kinds above
            raise VerificationError("unsupported key type")
    except InvalidSignature as exc:
        raise VerificationError("signature does not verify") from exc
    except ValueError as exc:  # malformed DER and the like
        raise VerificationError(f"signature is malformed: {exc}") from exc


def verify_bytes(public: PublicKey, data: bytes, signature: bytes) -> None:
    """Verify ``signature`` over ``data`` with the hash that fits ``public``."""
    algorithm = signature_hash_for(public)
    h = hashes.Hash(algorithm)
    h.update(data)
    verify_digest(public, h.finalize(), signature, algorithm)
