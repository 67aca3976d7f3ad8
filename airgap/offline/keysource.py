"""Where a root key comes from: a file in the PKI folder or a key in a PKCS#11 token.

* :func:`signing_root` opens the root that signs new intermediates: the next root during a root
  rotation (``PKI/next-root/``), else the root; :func:`load_root` always the current root.
* :func:`token_ref` finds the token key named on the command line or recorded in the folder,
  :func:`open_token_key` opens it for the duration of a block.
* :func:`new_root_key` makes a root key in the token for ``ca init`` / ``ca rotate-root`` and
  destroys it again when the block fails, so a key that was never certified does not linger in
  the token (a SIGKILL can still leave one: nothing is left to run; the ``key-create`` entry, if
  written, names it).
* :func:`open_officer` opens the officer's log key.

Trust: key files and the token are the officer's; every key is checked against the certificate
it claims to belong to before it signs anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from airgap.core.canonical import state_json
from airgap.core.keys import (
    KeyType,
    PrivateKey,
    key_file_is_encrypted,
    keys_match,
    load_private_key,
    spki_sha256,
)
from airgap.errors import InvalidInput, Refused
from airgap.offline.ceremony import Officer, load_officer
from airgap.offline.layout import PkiLayout
from airgap.offline.pkcs11 import TokenRef, read_key_record


@dataclass(frozen=True)
class SigningRoot:
    cert: x509.Certificate
    key: PrivateKey
    is_next: bool


def load_root(
    layout: PkiLayout, passphrase: bytes | None, root_key: PrivateKey | None = None
) -> tuple[x509.Certificate, PrivateKey]:
    """The root certificate and its key: ``root_key`` (a token key) when given, else root-key.pem."""
    cert = layout.load_root_cert()
    if root_key is not None:
        if not keys_match(root_key, cert.public_key()):  # type: ignore[arg-type]
            raise InvalidInput(f"the token key {spki_sha256(root_key)} does not match {layout.root_cert}")
        return cert, root_key
    if not layout.root_key.exists():
        if layout.root_key_ref.exists():
            raise InvalidInput(
                f"{layout.root_key_ref}: the root key is in a PKCS#11 token; "
                "give the token PIN (--pin-file or $AIRGAP_PKCS11_PIN)"
            )
        raise Refused(f"{layout.root_key}: root key is missing")
    key = load_private_key(layout.root_key, passphrase)
    if not keys_match(key, cert.public_key()):  # type: ignore[arg-type]
        raise InvalidInput(f"{layout.root_key}: does not match {layout.root_cert}")
    return cert, key


def signing_root(layout: PkiLayout, passphrase: bytes | None, root_key: PrivateKey | None) -> SigningRoot:
    """The root that signs new intermediates: the next root during a root rotation, else the root."""
    cert = layout.load_next_root_cert()
    if cert is None:
        c, k = load_root(layout, passphrase, root_key)
        return SigningRoot(c, k, False)
    layout.load_root_cert()  # still a PKI folder with a root
    if root_key is None:
        if not layout.next_root_key.exists():
            raise InvalidInput(f"{layout.next_root_dir}: the next root key is in a PKCS#11 token; give the token PIN")
        root_key = load_private_key(layout.next_root_key, passphrase)
    if not keys_match(root_key, cert.public_key()):  # type: ignore[arg-type]
        raise InvalidInput(f"the signing key {spki_sha256(root_key)} does not match {layout.next_root_cert}")
    return SigningRoot(cert, root_key, True)


def token_ref(
    pki: Path, module: Path | None, token_label: str | None, key_label: str | None, *, next_root: bool = False
) -> TokenRef | None:
    """The token key named on the command line, else the one the PKI folder records, else None.

    ``next_root``: the key record of ``PKI/next-root/`` (the next root's key) is the default.
    """
    where = PkiLayout(pki).next_root_dir if next_root else Path(pki)
    if module is not None or token_label is not None or key_label is not None:
        if not (token_label and key_label):
            raise InvalidInput("--token-label and --key-label are both needed with a PKCS#11 key")
        recorded = read_key_record(where)
        mod = str(module) if module is not None else (recorded.module if recorded else None)
        if mod is None:
            raise InvalidInput("--pkcs11-module is needed with a PKCS#11 key")
        return TokenRef(mod, token_label, key_label)
    recorded = read_key_record(where)
    return recorded.ref if recorded else None


def signing_token_ref(
    pki: Path, module: Path | None, token_label: str | None, key_label: str | None
) -> TokenRef | None:
    """:func:`token_ref` of the key that signs intermediates now (the next root's during a rotation)."""
    return token_ref(pki, module, token_label, key_label, next_root=PkiLayout(pki).next_root_cert.exists())


@contextlib.contextmanager
def open_token_key(ref: TokenRef | None, pin_file: Path | None) -> Iterator[PrivateKey | None]:
    """Open the token key for signing (the session lives for the block), or yield None."""
    if ref is None:
        yield None
        return
    from airgap.offline.pkcs11 import open_key, resolve_pin

    with open_key(ref, resolve_pin(pin_file)) as key:
        yield key


@dataclass(frozen=True)
class NewRootKey:
    """A root key just made in a token: ``record`` (the reference file) and ``params`` (for the log)."""

    key: PrivateKey
    record: bytes
    params: dict[str, str]


@contextlib.contextmanager
def new_root_key(ref: TokenRef, pin_file: Path | None, key_type: KeyType) -> Iterator[NewRootKey]:
    """Generate a root key in the token for the block; destroy it again if the block raises.

    (A file root key is made by the act itself, in memory, and written encrypted.)
    """
    from airgap.offline.pkcs11 import KeyRecord, generate_key, resolve_pin

    pin = resolve_pin(pin_file)
    with generate_key(ref, pin, key_type) as key:
        kr = KeyRecord(ref.module, ref.token_label, ref.key_label, spki_sha256(key), key_type)
        params = {"storage": "pkcs11", "token_label": ref.token_label, "key_label": ref.key_label}
        try:
            yield NewRootKey(key, state_json(kr.to_json()), params)
        except BaseException:
            key.destroy()  # never certified: leave the token as it was
            raise


@contextlib.contextmanager
def root_key_args(
    ref: TokenRef | None, pin_file: Path | None, key_type: KeyType, passphrase: bytes | None
) -> Iterator[dict[str, Any]]:
    """The key arguments of ``init_root`` / ``begin_root_rotation`` for a new root key.

    A file key (``ref`` None): the act makes it and encrypts it with ``passphrase``. A token key:
    generated now, destroyed again if the block raises (:func:`new_root_key`).
    """
    if ref is None:
        yield {"passphrase": passphrase}
        return
    with new_root_key(ref, pin_file, key_type) as new:
        yield {"passphrase": None, "root_key": new.key, "key_record": new.record, "key_params": new.params}


def open_officer(
    log_key: Path | None,
    log_pass_file: Path | None,
    known_pw: bytes | None,
    ask: Callable[[], bytes | None] | None = None,
) -> Officer | None:
    """Open the officer's log key (``--log-key``), the one passphrase policy for it.

    Its passphrase: ``log_pass_file`` (``--log-key-passphrase-file``), else ``known_pw`` (the
    passphrase already given for the PKI or the signing key), else ``ask()`` (a prompt), else
    exit 3 naming the option. An unencrypted key needs none.
    """
    if log_key is None:
        return None
    if not key_file_is_encrypted(log_key, "log key"):
        return load_officer(log_key, None)
    from airgap.core.passphrase import read_passphrase_file

    pw = read_passphrase_file(log_pass_file) if log_pass_file is not None else known_pw
    if pw is None and ask is not None:
        pw = ask()
    if pw is None:
        raise InvalidInput(
            f"{log_key}: the log key is encrypted; give --log-key-passphrase-file (or the PKI passphrase)"
        )
    return load_officer(log_key, pw)


__all__ = [
    "NewRootKey",
    "SigningRoot",
    "load_root",
    "new_root_key",
    "open_officer",
    "open_token_key",
    "root_key_args",
    "signing_root",
    "signing_token_ref",
    "token_ref",
]
