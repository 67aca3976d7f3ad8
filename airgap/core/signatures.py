"""Detached signatures: sign and verify bytes or a pre-computed digest.

Accepts the raw DER ECDSA signature that ``openssl dgst -sign`` writes and its base64 form (what
``cosign sign-blob`` prints). Verification returns nothing or raises :class:`VerificationError`.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from airgap.core.keys import PublicKey, signature_hash_for
from airgap.core.limits import MAX_SIGNATURE as MAX_SIGNATURE  # re-exported: core/release.py imports it here
from airgap.errors import InvalidInput, SignatureMismatch, TooLarge, VerificationError

_B64_TEXT = re.compile(rb"[A-Za-z0-9+/=\s]+")


def decode_signature(raw: bytes, *, source: str = "signature") -> bytes:
    """Raw DER/RSA signature bytes, or their base64 text (cosign). Anything empty or huge is exit 3.

    Base64 is tried first: base64 text can start with ``0`` (0x30, the DER SEQUENCE tag), while a
    binary signature made only of base64 characters is vanishingly unlikely.
    """
    if not raw:
        raise InvalidInput(f"{source}: signature is empty")
    if len(raw) > MAX_SIGNATURE:
        raise TooLarge(f"{source}: too large for a signature")
    if _B64_TEXT.fullmatch(raw):
        try:
            decoded = base64.b64decode(b"".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if decoded:
            return decoded
    return raw  # binary: let verification decide


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
        raise SignatureMismatch("signature does not verify") from exc
    except ValueError as exc:  # malformed DER and the like
        raise SignatureMismatch(f"signature is malformed: {exc}") from exc


def verify_bytes(public: PublicKey, data: bytes, signature: bytes) -> None:
    """Verify ``signature`` over ``data`` with the hash that fits ``public``."""
    algorithm = signature_hash_for(public)
    h = hashes.Hash(algorithm)
    h.update(data)
    verify_digest(public, h.finalize(), signature, algorithm)
