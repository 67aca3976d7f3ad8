"""Private and public keys: generation, PKCS#8 encryption at rest, loading, fingerprints.

Private keys are PKCS#8 PEM, encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) unless the
caller explicitly asks for none; ``openssl pkey -passin file:F`` opens them. Loading untrusted
key files raises :class:`InvalidInput` (exit 3), never a library exception.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from airgap.core.atomic import write_new
from airgap.core.files import read_capped
from airgap.core.limits import MAX_KEY_FILE
from airgap.core.names import KEY_TYPES, KeyType
from airgap.errors import InvalidInput, WouldOverwrite, WrongPassphrase

DEFAULT_KEY_TYPE: KeyType = "rsa-4096"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# Keys at rest: cryptography's BestAvailableEncryption for PKCS#8 is PBES2 with PBKDF2-HMAC-SHA256
# and AES-256-CBC. Its PBKDF2 iteration count (2048, as `openssl pkcs8 -v2 aes-256-cbc`) cannot be
# raised through the library for PKCS#8, so passphrase length carries the weight: see SECURITY.md.


def check_key_type(value: str) -> KeyType:
    if value not in KEY_TYPES:
        raise InvalidInput(f"unknown key type {value!r}; choose one of {', '.join(KEY_TYPES)}")
    return value  # type: ignore[return-value]


def generate_private_key(key_type: KeyType) -> PrivateKey:
    """A fresh key of ``key_type`` from the OS CSPRNG (via OpenSSL)."""
    if key_type == "rsa-4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    if key_type == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    raise InvalidInput(f"unknown key type {key_type!r}")


def key_type_of(key: PrivateKey | PublicKey) -> str:
    """The airgap name of a key's type (e.g. ``rsa-4096``, ``ecdsa-p256``)."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}.get(
            key.curve.name, f"ecdsa-{key.curve.name}"
        )
    return type(key).__name__


def signature_hash_for(key: PrivateKey | PublicKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """SHA-384 for P-384 (and larger curves), SHA-256 otherwise. Never SHA-1."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and key.curve.key_size >= 384:
        return hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA512()
    return hashes.SHA256()


def encode_private_key(key: PrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM, encrypted with ``passphrase`` (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC) when given."""
    if passphrase is None:
        enc: serialization.KeySerializationEncryption = serialization.NoEncryption()
    else:
        enc = serialization.BestAvailableEncryption(passphrase)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def public_pem(key: PrivateKey | PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_der(key: PrivateKey | PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_sha256(key: PrivateKey | PublicKey) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex: the contract's key fingerprint."""
    return hashlib.sha256(spki_der(key)).hexdigest()


def is_encrypted_pem(data: bytes) -> bool:
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b"Proc-Type: 4,ENCRYPTED" in data


def key_file_is_encrypted(path: Path, what: str = "private key") -> bool:
    """True when the PEM key file needs a passphrase (so a command knows whether to ask for one).

    Missing, unreadable or oversized is :class:`InvalidInput` (exit 3), naming ``what``.
    """
    return is_encrypted_pem(read_capped(path, MAX_KEY_FILE, what))


def load_private_key_pem(data: bytes, passphrase: bytes | None, *, source: str) -> PrivateKey:
    """Parse a PEM private key; wrong or missing passphrase and corrupt PEM are exit 3."""
    encrypted = is_encrypted_pem(data)
    if encrypted and passphrase is None:
        raise InvalidInput(f"{source}: key is encrypted; a passphrase is needed (--passphrase-file)")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except ValueError as exc:
        if encrypted:
            raise WrongPassphrase(f"{source}: wrong passphrase or corrupt key") from exc
        raise InvalidInput(f"{source}: not a valid PEM private key") from exc
    except Exception as exc:  # cryptography raises several types for garbage input
        raise InvalidInput(f"{source}: not a valid PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InvalidInput(f"{source}: unsupported key algorithm {type(key).__name__}")
    return key


def load_private_key(path: Path, passphrase: bytes | None) -> PrivateKey:
    return load_private_key_pem(read_capped(path, MAX_KEY_FILE, "private key"), passphrase, source=str(path))


def load_public_key(path: Path) -> PublicKey:
    """Load a PEM SubjectPublicKeyInfo (or the public key of a PEM certificate)."""
    data = read_capped(path, MAX_KEY_FILE, "public key")
    return load_public_key_pem(data, source=str(path))


def load_public_key_pem(data: bytes, *, source: str) -> PublicKey:
    pub: object
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            from cryptography import x509

            pub = x509.load_pem_x509_certificate(data).public_key()
        else:
            pub = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{source}: not a valid PEM public key") from exc
    if not isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise InvalidInput(f"{source}: unsupported key algorithm {type(pub).__name__}")
    return pub


def keys_match(private: PrivateKey, public: PublicKey) -> bool:
    """True when ``private`` is the key of ``public`` (compares the SPKI encodings)."""
    return spki_der(private) == spki_der(public)


@dataclass(frozen=True)
class KeyPairFiles:
    private: Path
    public: Path
    fingerprint: str


def write_private_key(path: Path, key: PrivateKey, passphrase: bytes | None) -> None:
    """Write a key file: mode 0600, atomic, never replacing an existing file (exit 4)."""
    write_new(path, encode_private_key(key, passphrase), mode=0o600)


def new_signing_key(name: str, out: Path, passphrase: bytes | None) -> KeyPairFiles:
    """``keys new --kind signing``: an ECDSA P-256 key as ``out/NAME.key`` (0600) and ``NAME.pub``."""
    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = out / f"{name}.key", out / f"{name}.pub"
    for p in (priv, pub):
        if p.exists():
            raise WouldOverwrite(f"{p}: already exists; refusing to overwrite")
    write_private_key(priv, key, passphrase)
    try:
        write_new(pub, public_pem(key))
    except BaseException:
        priv.unlink(missing_ok=True)
        raise
    return KeyPairFiles(priv, pub, spki_sha256(key))


def sign(key: PrivateKey, data: bytes) -> bytes:
    """Sign ``data``: ECDSA (DER signature) or RSA PKCS#1 v1.5, hash chosen by the key."""
    h = signature_hash_for(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(h))
    return key.sign(data, padding.PKCS1v15(), h)


__all__ = [
    "KEY_TYPES",
    "KeyPairFiles",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "check_key_type",
    "encode_private_key",
    "generate_private_key",
    "key_type_of",
    "keys_match",
    "load_private_key",
    "load_public_key",
    "new_signing_key",
    "public_pem",
    "sign",
    "signature_hash_for",
    "spki_sha256",
    "write_private_key",
]
