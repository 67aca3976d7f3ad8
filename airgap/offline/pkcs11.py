"""CA keys held in a PKCS#11 token (an HSM; SoftHSM2 in tests), via ``python-pkcs11``.

The private key is generated in the token with ``CKA_SENSITIVE=true, CKA_EXTRACTABLE=false`` and
never leaves it. :class:`TokenECKey` and :class:`TokenRSAKey` subclass cryptography's private-key
interfaces, so everything that signs with a key works with them unchanged: cryptography (≥ 42)
accepts such Python subclasses in ``CertificateBuilder.sign`` and
``CertificateRevocationListBuilder.sign`` and calls their ``sign`` method — no DER re-assembly is
needed. Only signing is implemented; ``private_bytes`` and friends raise (the key is not
extractable, by design).

Signatures: ECDSA is computed by the token over a digest made here (``CKM_ECDSA``; the raw r||s is
DER-encoded as X.509 needs); RSA is PKCS#1 v1.5 with the DigestInfo built here (``CKM_RSA_PKCS``).
Both work with any token that has the raw mechanisms, SoftHSM2 included.

Trust: the module path is trusted code (it is loaded into this process). The PIN is a secret: it
is never logged or put in an error message. A wrong PIN is :class:`InvalidInput` (exit 3).

The PKI folder records where the root key lives in ``PKI/root-key.pkcs11.json`` (module, token
label, key label, key id — no PIN) instead of ``root-key.pem``.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn, Self

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from airgap.core.keys import KeyType, PublicKey, spki_sha256
from airgap.errors import InvalidInput, NotFound, Refused, WrongPassphrase
from airgap.offline.inventory import parse_state, strict_record
from airgap.offline.layout import ROOT_KEY_REF

ENV_PIN = "AIRGAP_PKCS11_PIN"
REF_NAME = ROOT_KEY_REF
DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

_CURVES = {"ecdsa-p256": ("secp256r1", ec.SECP256R1()), "ecdsa-p384": ("secp384r1", ec.SECP384R1())}
_RSA_BITS = {"rsa-4096": 4096, "rsa-3072": 3072}
# DER DigestInfo prefixes (RFC 8017 section 9.2, note 1).
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


@dataclass(frozen=True)
class TokenRef:
    """Where a key lives: the PKCS#11 module, the token label, the key label. No secret."""

    module: str
    token_label: str
    key_label: str

    def describe(self) -> str:
        return f"token {self.token_label!r} key {self.key_label!r} ({self.module})"


@dataclass(frozen=True)
class KeyRecord:
    """``PKI/root-key.pkcs11.json``: the token reference and the key's id (SHA-256 of its SPKI)."""

    module: str
    token_label: str
    key_label: str
    key_id: str
    key_type: str

    @property
    def ref(self) -> TokenRef:
        return TokenRef(self.module, self.token_label, self.key_label)

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, **asdict(self)}


def read_key_record(pki: Path) -> KeyRecord | None:
    """The token reference of the PKI's root key, or None when the root key is a file."""
    p = Path(pki) / REF_NAME
    if not p.exists():
        return None
    what = "PKCS#11 key record"
    try:
        doc = parse_state(p.read_bytes(), source=str(p), what=what)
        if doc.pop("format", 1) != 1:
            raise InvalidInput(what)
        return strict_record(KeyRecord, doc, source=str(p), what=what)
    except InvalidInput as exc:
        raise InvalidInput(f"{p}: not a valid PKCS#11 key record") from exc


def read_pin_file(path: Path) -> str:
    """The first line of ``path``, read exactly as a passphrase file is (openssl's ``file:``)."""
    from airgap.core.passphrase import read_passphrase_file

    line = read_passphrase_file(path, what="PIN file")
    try:
        return line.decode("utf-8", "strict")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: PIN file is not UTF-8") from exc


def resolve_pin(pin_file: Path | None) -> str:
    """The token user PIN: ``--pin-file``, then ``$AIRGAP_PKCS11_PIN``, then a prompt on a TTY."""
    if pin_file is not None:
        return read_pin_file(pin_file)
    env = os.environ.get(ENV_PIN)
    if env:
        return env
    if sys.stdin.isatty():
        pin = getpass.getpass("Token user PIN: ")
        if pin:
            return pin
    raise InvalidInput(f"no token PIN: give --pin-file, set {ENV_PIN}, or run on a terminal")


def _lib(module: str) -> Any:
    import pkcs11

    if not Path(module).is_file():
        raise NotFound(f"{module}: PKCS#11 module not found")
    try:
        return pkcs11.lib(module)
    except Exception as exc:  # the loader raises several kinds for a non-module file
        raise InvalidInput(f"{module}: cannot load as a PKCS#11 module ({type(exc).__name__})") from exc


def _fail(exc: Exception, ref: TokenRef) -> NoReturn:
    import pkcs11.exceptions as pe

    if isinstance(exc, pe.PinIncorrect | pe.PinInvalid | pe.PinLenRange):
        raise WrongPassphrase(f"{ref.describe()}: wrong PIN") from exc
    if isinstance(exc, pe.PinLocked):
        raise InvalidInput(f"{ref.describe()}: the PIN is locked") from exc
    if isinstance(exc, pe.NoSuchToken):
        raise InvalidInput(f"{ref.module}: no token labelled {ref.token_label!r}") from exc
    if isinstance(exc, pe.NoSuchKey):
        raise NotFound(f"{ref.describe()}: no such private key in the token") from exc
    if isinstance(exc, pe.MultipleObjectsReturned):
        raise InvalidInput(f"{ref.describe()}: more than one key has this label") from exc
    raise InvalidInput(f"{ref.describe()}: token error {type(exc).__name__}") from exc


class _TokenKeyMixin:
    """Holds the token's private-key handle; signs inside the token."""

    _handle: Any
    _public: PublicKey
    ref: TokenRef

    _pub_handle: Any = None

    def destroy(self) -> None:
        """Remove this key pair from the token, in the session that made it (undo of a failed act)."""
        import pkcs11

        for h in (self._handle, self._pub_handle):
            if h is not None:
                with contextlib.suppress(pkcs11.PKCS11Error):
                    h.destroy()

    def change_pin(self, old_pin: str, new_pin: str) -> None:
        """Set the token's user PIN (C_SetPIN), in the session that holds this key (split custody)."""
        import pkcs11

        try:
            self._handle.session.set_pin(old_pin, new_pin)
        except pkcs11.PKCS11Error as exc:
            _fail(exc, self.ref)

    def _not_extractable(self) -> NoReturn:
        raise Refused(f"{self.ref.describe()}: the key lives in the token and cannot be exported")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        self._not_extractable()

    def __copy__(self) -> Self:  # one token handle: a copy is the same key
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self

    @property
    def key_id(self) -> str:
        return spki_sha256(self._public)


def _digest(
    data: bytes | bytearray | memoryview, algorithm: hashes.HashAlgorithm | Prehashed
) -> tuple[bytes, hashes.HashAlgorithm]:
    if isinstance(algorithm, Prehashed):
        return bytes(data), algorithm._algorithm
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize(), algorithm


class TokenECKey(_TokenKeyMixin, ec.EllipticCurvePrivateKey):
    """An EC private key in a PKCS#11 token, usable as a cryptography signing key."""

    def __init__(self, handle: Any, public: ec.EllipticCurvePublicKey, ref: TokenRef) -> None:
        self._handle, self._public, self._ec_public, self.ref = handle, public, public, ref

    def sign(
        self, data: bytes | bytearray | memoryview, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
    ) -> bytes:
        from pkcs11 import Mechanism

        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError("only ECDSA is supported")
        digest, _ = _digest(data, signature_algorithm.algorithm)
        raw = self._handle.sign(digest, mechanism=Mechanism.ECDSA)
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._ec_public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._ec_public.curve

    @property
    def key_size(self) -> int:
        return self._ec_public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise NotImplementedError("ECDH is not offered by the token key")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        self._not_extractable()


class TokenRSAKey(_TokenKeyMixin, rsa.RSAPrivateKey):
    """An RSA private key in a PKCS#11 token (PKCS#1 v1.5 signatures only)."""

    def __init__(self, handle: Any, public: rsa.RSAPublicKey, ref: TokenRef) -> None:
        self._handle, self._public, self._rsa_public, self.ref = handle, public, public, ref

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        padding_: padding.AsymmetricPadding,
        algorithm: Any,
    ) -> bytes:
        from pkcs11 import Mechanism

        if not isinstance(algorithm, hashes.HashAlgorithm | Prehashed):
            raise TypeError("the token key signs with a DigestInfo only")
        if not isinstance(padding_, padding.PKCS1v15):
            raise TypeError("only PKCS#1 v1.5 signatures are supported by the token key")
        digest, alg = _digest(data, algorithm)
        prefix = _DIGEST_INFO.get(alg.name)
        if prefix is None:
            raise TypeError(f"hash {alg.name} is not supported")
        return bytes(self._handle.sign(prefix + digest, mechanism=Mechanism.RSA_PKCS))

    def public_key(self) -> rsa.RSAPublicKey:
        return self._rsa_public

    @property
    def key_size(self) -> int:
        return self._rsa_public.key_size

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        raise NotImplementedError("decryption is not offered by the token key")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        self._not_extractable()


TokenKey = TokenECKey | TokenRSAKey


def _public_of(pub_handle: Any) -> PublicKey:
    """The public half read from the token, as a cryptography key."""
    from pkcs11 import Attribute
    from pkcs11 import KeyType as P11KeyType
    from pkcs11.util.ec import encode_ec_public_key

    if pub_handle.key_type == P11KeyType.EC:
        pub: object = serialization.load_der_public_key(encode_ec_public_key(pub_handle))
    else:
        n = int.from_bytes(pub_handle[Attribute.MODULUS], "big")
        e = int.from_bytes(pub_handle[Attribute.PUBLIC_EXPONENT], "big")
        pub = rsa.RSAPublicNumbers(e, n).public_key()
    if not isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise InvalidInput("the token key is neither RSA nor EC")
    return pub


def _wrap(priv: Any, pub: PublicKey, ref: TokenRef, pub_handle: Any = None) -> TokenKey:
    key: TokenKey = (
        TokenECKey(priv, pub, ref) if isinstance(pub, ec.EllipticCurvePublicKey) else TokenRSAKey(priv, pub, ref)
    )
    key._pub_handle = pub_handle
    return key


@contextlib.contextmanager
def open_key(ref: TokenRef, pin: str) -> Iterator[TokenKey]:
    """Log in to the token and yield the private key named ``ref.key_label``, usable for signing.

    The session is closed when the block ends; the key object must not be used after that.
    """
    import pkcs11
    from pkcs11 import ObjectClass

    lib = _lib(ref.module)
    try:
        token = lib.get_token(token_label=ref.token_label)
        session = token.open(user_pin=pin)
    except pkcs11.PKCS11Error as exc:
        _fail(exc, ref)
    try:
        try:
            priv = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=ref.key_label)
            pub_h = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=ref.key_label)
        except pkcs11.PKCS11Error as exc:
            _fail(exc, ref)
        yield _wrap(priv, _public_of(pub_h), ref)
    finally:
        with contextlib.suppress(pkcs11.PKCS11Error):
            session.close()


@contextlib.contextmanager
def generate_key(ref: TokenRef, pin: str, key_type: KeyType) -> Iterator[TokenKey]:
    """Generate a key pair in the token (sensitive, never extractable) and yield it for signing.

    Refuses (exit 4) when the token already holds a key with this label: a key is never replaced.
    """
    import pkcs11
    from pkcs11 import Attribute, ObjectClass
    from pkcs11 import KeyType as P11KeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    lib = _lib(ref.module)
    try:
        token = lib.get_token(token_label=ref.token_label)
        session = token.open(rw=True, user_pin=pin)
    except pkcs11.PKCS11Error as exc:
        _fail(exc, ref)
    try:
        existing = list(session.get_objects({Attribute.LABEL: ref.key_label, Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
        if existing:
            raise Refused(f"{ref.describe()}: a key with this label exists; refusing to replace it")
        private_template = {
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
        }
        key_id = os.urandom(16)
        try:
            if key_type in _CURVES:
                params = session.create_domain_parameters(
                    P11KeyType.EC,
                    {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[key_type][0])},
                    local=True,
                )
                pub_h, priv = params.generate_keypair(
                    id=key_id, label=ref.key_label, store=True, private_template=private_template
                )
            elif key_type in _RSA_BITS:
                pub_h, priv = session.generate_keypair(
                    P11KeyType.RSA,
                    _RSA_BITS[key_type],
                    id=key_id,
                    label=ref.key_label,
                    store=True,
                    private_template=private_template,
                )
            else:
                raise InvalidInput(f"key type {key_type!r} is not supported in a token")
        except pkcs11.PKCS11Error as exc:
            _fail(exc, ref)
        yield _wrap(priv, _public_of(pub_h), ref, pub_h)
    finally:
        with contextlib.suppress(pkcs11.PKCS11Error):
            session.close()


def destroy_key(ref: TokenRef, pin: str) -> None:
    """Remove a key pair from the token (used only to undo a key whose certificate was never written)."""
    import pkcs11
    from pkcs11 import Attribute

    lib = _lib(ref.module)
    try:
        with lib.get_token(token_label=ref.token_label).open(rw=True, user_pin=pin) as session:
            for obj in list(session.get_objects({Attribute.LABEL: ref.key_label})):
                obj.destroy()
    except pkcs11.PKCS11Error as exc:
        _fail(exc, ref)


__all__ = [
    "DEFAULT_MODULE",
    "ENV_PIN",
    "REF_NAME",
    "KeyRecord",
    "TokenECKey",
    "TokenKey",
    "TokenRSAKey",
    "TokenRef",
    "destroy_key",
    "generate_key",
    "open_key",
    "read_key_record",
    "read_pin_file",
    "resolve_pin",
]
