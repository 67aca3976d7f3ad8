from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.core import keys
from airgap.core.signatures import decode_signature, verify_bytes
from airgap.errors import InvalidInput, NotFound, VerificationError, WouldOverwrite, WrongPassphrase
from tests.helpers import openssl


def test_encrypted_key_opens_with_openssl_passin_file(tmp_path: Path) -> None:
    k = keys.generate_private_key("ecdsa-p256")
    p = tmp_path / "k.pem"
    keys.write_private_key(p, k, b"s3cret pass")
    assert p.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    pf = tmp_path / "pass"
    pf.write_bytes(b"s3cret pass\nsecond line ignored\n")
    out = openssl("pkey", "-in", p, "-passin", f"file:{pf}", "-pubout").stdout
    assert out == keys.public_pem(k)
    # and the wrong passphrase fails in openssl too
    pf.write_bytes(b"wrong\n")
    assert openssl("pkey", "-in", p, "-passin", f"file:{pf}", "-noout", check=False).returncode != 0


def test_crlf_passphrase_file_means_the_same_to_openssl_and_airgap(tmp_path: Path) -> None:
    """openssl keeps a '\\r' before the newline; so do we, so a key opens in both or neither."""
    from airgap.core.passphrase import read_passphrase_file

    pf = tmp_path / "pass"
    pf.write_bytes(b"pw\r\n")
    k = keys.generate_private_key("ecdsa-p256")
    p = tmp_path / "k.pem"
    keys.write_private_key(p, k, read_passphrase_file(pf))
    assert openssl("pkey", "-in", p, "-passin", f"file:{pf}", "-noout", check=False).returncode == 0


def test_encryption_is_pbes2_aes256(tmp_path: Path) -> None:
    p = tmp_path / "k.pem"
    keys.write_private_key(p, keys.generate_private_key("ecdsa-p256"), b"pw")
    text = openssl("asn1parse", "-in", p).stdout.decode()
    assert "PBES2" in text and "PBKDF2" in text and "aes-256-cbc" in text and "hmacWithSHA256" in text


def test_wrong_passphrase_is_invalid_input(tmp_path: Path) -> None:
    p = tmp_path / "k.pem"
    keys.write_private_key(p, keys.generate_private_key("ecdsa-p256"), b"right")
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        keys.load_private_key(p, b"wrong")
    with pytest.raises(InvalidInput, match="passphrase is needed"):
        keys.load_private_key(p, None)


@pytest.mark.parametrize(
    "content,match",
    [(b"", "not a valid PEM"), (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a valid")],
)
def test_corrupt_key(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "k.pem"
    p.write_bytes(content)
    with pytest.raises(InvalidInput, match=match):
        keys.load_private_key(p, None)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="not found"):
        keys.load_private_key(tmp_path / "nope.pem", None)


@pytest.mark.parametrize(
    "kt,name,size",
    [("ecdsa-p256", "ecdsa-p256", 256), ("ecdsa-p384", "ecdsa-p384", 384), ("rsa-3072", "rsa-3072", 3072)],
)
def test_key_types(kt: keys.KeyType, name: str, size: int) -> None:
    k = keys.generate_private_key(kt)
    assert keys.key_type_of(k) == name
    assert k.key_size == size


def test_unknown_key_type() -> None:
    with pytest.raises(InvalidInput, match="unknown key type"):
        keys.check_key_type("dsa-1024")


def test_hash_follows_key() -> None:
    assert keys.signature_hash_for(keys.generate_private_key("ecdsa-p384")).name == "sha384"
    assert keys.signature_hash_for(keys.generate_private_key("ecdsa-p256")).name == "sha256"


def test_new_signing_key_files_and_fingerprint(tmp_path: Path) -> None:
    made = keys.new_signing_key("officer", tmp_path / "keys", b"pw")
    assert stat.S_IMODE(made.private.stat().st_mode) == 0o600
    pub = keys.load_public_key(made.public)
    assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"
    der = openssl("pkey", "-pubin", "-in", made.public, "-outform", "DER").stdout
    import hashlib

    assert made.fingerprint == hashlib.sha256(der).hexdigest()
    with pytest.raises(WouldOverwrite):
        keys.new_signing_key("officer", tmp_path / "keys", b"pw")


def test_sign_verify_roundtrip_and_tamper() -> None:
    k = keys.generate_private_key("ecdsa-p256")
    sig = keys.sign(k, b"manifest")
    verify_bytes(k.public_key(), b"manifest", sig)
    with pytest.raises(VerificationError):
        verify_bytes(k.public_key(), b"manifesT", sig)
    with pytest.raises(VerificationError):
        verify_bytes(k.public_key(), b"manifest", sig[:-3])


def test_decode_signature_base64() -> None:
    import base64

    k = keys.generate_private_key("ecdsa-p256")
    sig = keys.sign(k, b"x")
    assert decode_signature(base64.b64encode(sig) + b"\n") == sig
    assert decode_signature(sig) == sig
    with pytest.raises(InvalidInput, match="empty"):
        decode_signature(b"")


def test_decode_signature_base64_text_starting_with_zero() -> None:
    """Base64 text may begin with '0' (0x30, the DER tag): it must still be decoded, not taken raw."""
    import base64

    raw = bytes([0xD3]) + bytes(range(70))  # encodes to text starting with '0'
    text = base64.b64encode(raw)
    assert text[:1] == b"0"
    assert decode_signature(text) == raw
    assert decode_signature(text[:20] + b"\n" + text[20:] + b"\n") == raw  # wrapped lines too


def test_key_file_is_encrypted(tmp_path: Path) -> None:
    k = keys.generate_private_key("ecdsa-p256")
    keys.write_private_key(tmp_path / "enc.pem", k, b"pw")
    keys.write_private_key(tmp_path / "plain.pem", k, None)
    assert keys.key_file_is_encrypted(tmp_path / "enc.pem") is True
    assert keys.key_file_is_encrypted(tmp_path / "plain.pem") is False
    with pytest.raises(InvalidInput, match="log key not found"):
        keys.key_file_is_encrypted(tmp_path / "nope.pem", "log key")
