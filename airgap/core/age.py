"""age (X25519) recipient keys and encryption of bundle secrets, through ``pyrage``.

Files match the standard ``age`` tools, so an operator can use either:

* ``NAME.key``: an age identity file as ``age-keygen`` writes it (``# public key: age1…`` then
  ``AGE-SECRET-KEY-1…``), mode 0600; with a passphrase, that whole file is age-encrypted with the
  passphrase (age's scrypt recipient), which ``age -d -i NAME.key`` accepts (it prompts).
* ``NAME.pub``: the ``age1…`` recipient, one line.

Trust: identity and recipient files are the operator's own; they are still parsed defensively
(size cap, strict syntax) and every failure is an :class:`InvalidInput` (exit 3), never a library
exception. Ciphertext handed to :func:`decrypt` may be hostile: age authenticates it (AEAD), and a
failure is reported, never partially returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyrage

from airgap.core.atomic import write_new
from airgap.core.files import read_capped
from airgap.core.limits import MAX_IDENTITY_FILE, MAX_RECIPIENTS_FILE
from airgap.errors import InvalidInput, Malformed, TooLarge, VerificationError, WouldOverwrite, WrongPassphrase

AGE_BINARY_MAGIC = b"age-encryption.org/v1\n"
AGE_ARMOR_MAGIC = b"-----BEGIN AGE ENCRYPTED FILE-----"
_RECIPIENT_RE = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")


@dataclass(frozen=True)
class RecipientKeyFiles:
    """What ``keys new --kind recipient`` wrote."""

    private: Path
    public: Path
    recipient: str


def _passphrase_text(passphrase: bytes, source: str) -> str:
    try:
        return passphrase.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{source}: the passphrase is not valid UTF-8 (age needs text)") from exc


def identity_file_text(identity: pyrage.x25519.Identity) -> bytes:
    """The bytes of an unencrypted identity file, in ``age-keygen``'s layout (no timestamp)."""
    return f"# public key: {identity.to_public()}\n{identity}\n".encode()


def new_recipient_key(name: str, out: Path, passphrase: bytes | None) -> RecipientKeyFiles:
    """``keys new --kind recipient``: a fresh X25519 identity as ``out/NAME.key`` and ``NAME.pub``.

    The identity is encrypted with ``passphrase`` (age scrypt format) unless it is None. Refuses
    (exit 4) when either file exists; a failure leaves neither file behind.
    """
    priv, pub = out / f"{name}.key", out / f"{name}.pub"
    for p in (priv, pub):
        if p.exists() or p.is_symlink():
            raise WouldOverwrite(f"{p}: already exists; refusing to overwrite")
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    body = identity_file_text(identity)
    if passphrase is not None:
        body = pyrage.passphrase.encrypt(body, _passphrase_text(passphrase, str(priv)))
    write_new(priv, body, mode=0o600)
    try:
        write_new(pub, f"{recipient}\n".encode())
    except BaseException:
        priv.unlink(missing_ok=True)
        raise
    return RecipientKeyFiles(priv, pub, recipient)


def identity_is_encrypted(path: Path) -> bool:
    """True when the identity file at ``path`` is passphrase-protected (needs a passphrase)."""
    data = read_capped(path, MAX_IDENTITY_FILE, "age identity file")
    return data.startswith(AGE_BINARY_MAGIC) or data.lstrip().startswith(AGE_ARMOR_MAGIC)


def parse_identities(text: bytes, *, source: str) -> list[pyrage.x25519.Identity]:
    """Parse an identity file's plaintext: ``#`` comments, blank lines, ``AGE-SECRET-KEY-1…`` lines."""
    try:
        lines = text.decode("ascii").splitlines()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{source}: not an age identity file") from exc
    out: list[pyrage.x25519.Identity] = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("AGE-SECRET-KEY-1"):
            raise InvalidInput(f"{source}: not an age identity file (unexpected line)")
        try:
            out.append(pyrage.x25519.Identity.from_str(line))
        except Exception as exc:  # pyrage.IdentityError and friends
            raise Malformed(f"{source}: malformed age identity") from exc
    if not out:
        raise InvalidInput(f"{source}: no age identity found")
    return out


def load_identities(path: Path, passphrase: bytes | None) -> list[pyrage.x25519.Identity]:
    """Load the X25519 identities in ``path``; decrypt the file first when it is passphrase-protected.

    Wrong or missing passphrase, and any malformed file, are :class:`InvalidInput` (exit 3).
    """
    data = read_capped(path, MAX_IDENTITY_FILE, "age identity file")
    if data.startswith(AGE_BINARY_MAGIC) or data.lstrip().startswith(AGE_ARMOR_MAGIC):
        if passphrase is None:
            raise InvalidInput(f"{path}: identity is passphrase-protected; a passphrase is needed (--passphrase-file)")
        try:
            data = pyrage.passphrase.decrypt(data, _passphrase_text(passphrase, str(path)))
        except Exception as exc:  # pyrage.DecryptError
            raise WrongPassphrase(f"{path}: wrong passphrase or corrupt identity file") from exc
    return parse_identities(data, source=str(path))


def parse_recipient(value: str, *, source: str) -> pyrage.x25519.Recipient:
    """One ``age1…`` X25519 recipient string; anything else is exit 3."""
    value = value.strip()
    if not _RECIPIENT_RE.match(value):
        raise InvalidInput(f"{source}: not an age X25519 recipient (expected age1…)")
    try:
        return pyrage.x25519.Recipient.from_str(value)
    except Exception as exc:  # pyrage.RecipientError
        raise Malformed(f"{source}: malformed age recipient") from exc


def load_recipients(spec: str, *, option: str = "--recipient") -> list[str]:
    """The value of ``option`` (the option the user typed: ``--recipient``, ``--sops-age``,
    ``--custodian``): a recipients file (``age -R`` format) or a literal ``age1…`` string.

    Returns canonical recipient strings (each one checked by :func:`parse_recipient`). Every
    error names ``option``.
    """
    path = Path(spec)
    if spec.startswith("age1") and not path.exists():
        return [str(parse_recipient(spec, source=option))]
    try:
        return _recipients_file(path)
    except InvalidInput as exc:
        raise InvalidInput(f"{option}: {exc.message}") from exc


def _recipients_file(path: Path) -> list[str]:
    data = read_capped(path, MAX_RECIPIENTS_FILE, "age recipients file")
    try:
        lines = data.decode("ascii").splitlines()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not an age recipients file") from exc
    out = [
        str(parse_recipient(line, source=str(path)))
        for line in (raw.strip() for raw in lines)
        if line and not line.startswith("#")
    ]
    if not out:
        raise InvalidInput(f"{path}: no age recipient found")
    return out


def encrypt(plaintext: bytes, recipients: list[str]) -> bytes:
    """age-encrypt ``plaintext`` (a small secret such as ``ca-key.pem``) to every recipient."""
    if not recipients:
        raise InvalidInput("no age recipient to encrypt to")
    parsed = [parse_recipient(r, source="recipient") for r in recipients]
    try:
        return bytes(pyrage.encrypt(plaintext, parsed))
    except Exception as exc:  # pragma: no cover - pyrage.EncryptError on valid recipients
        raise InvalidInput(f"age encryption failed: {exc}") from exc


def decrypt(ciphertext: bytes, identities: list[pyrage.x25519.Identity], *, source: str, max_size: int) -> bytes:
    """Decrypt an age file with ``identities``.

    No matching identity is :class:`InvalidInput` (exit 3: the operator's key is not a recipient);
    a ciphertext that fails authentication is :class:`VerificationError` (exit 1). Output larger
    than ``max_size`` is refused.
    """
    if len(ciphertext) > max_size + 64 * 1024:
        raise TooLarge(f"{source}: encrypted member is too large")
    try:
        plain = bytes(pyrage.decrypt(ciphertext, identities))
    except Exception as exc:  # pyrage.DecryptError
        if "No matching keys" in str(exc):
            raise InvalidInput(f"{source}: this identity is not one of the bundle's recipients") from exc
        raise VerificationError(f"{source}: age decryption failed (corrupt or tampered ciphertext)") from exc
    if len(plain) > max_size:
        raise TooLarge(f"{source}: decrypted member is too large")
    return plain


__all__ = [
    "RecipientKeyFiles",
    "decrypt",
    "encrypt",
    "identity_is_encrypted",
    "load_identities",
    "load_recipients",
    "new_recipient_key",
    "parse_recipient",
]
