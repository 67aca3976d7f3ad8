"""Opening the root for an act: custody shares, the PKI passphrase, the officer's log key, the token key.

Trust: nothing the user passes is trusted until it opens what it claims to. The checks a library
caller must not be able to skip live here, not in the CLI: a root the inventory records under
split custody whose ``custody/`` folder is missing is refused (exit 1); shares given for a root
without custody, fewer than M shares, an identity that opens no share, a protected identity
without its passphrase are refused (exit 3). The custody facts (which shares took part) are
handed to the act explicitly, on the :class:`~airgap.offline.ceremony.Officer` that records it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from airgap.errors import InvalidInput, VerificationError

if TYPE_CHECKING:
    from airgap.core.keys import PrivateKey
    from airgap.offline.ceremony import Officer
    from airgap.offline.custody import Opened, ShareIdentity
    from airgap.offline.pkcs11 import TokenRef

Prompt = Callable[[str], str]


@dataclass(frozen=True)
class RootOptions:
    """How the user opens the root for one act: the options every root act takes, as one object."""

    passphrase_file: Path | None = None
    no_passphrase: bool = False
    log_key: Path | None = None
    log_key_passphrase_file: Path | None = None
    pin_file: Path | None = None
    shares: Sequence[Path] = ()
    share_passphrase_files: Sequence[Path] = ()
    type_share: int = 0


@dataclass(frozen=True)
class OpenRoot:
    """The root of one act, opened (:func:`open_root`): what signs, and the officer who records it."""

    passphrase: bytes | None  # opens the root key file: the shares' secret under split custody
    pki_passphrase: bytes | None  # the officer's own: new cluster keys, and the log key's default
    key: PrivateKey | None  # the token key when the root is in a PKCS#11 token
    officer: Officer | None  # carries the custody facts every entry of the act names


def _check_no_custody(pki: Path, opts: RootOptions) -> None:
    """The root has no ``custody/`` folder: refuse if the inventory says it should, or shares were given."""
    from airgap.offline import custody
    from airgap.offline.inventory import read_inventory
    from airgap.offline.layout import PkiLayout

    layout = PkiLayout(pki)
    if layout.inventory.exists() and read_inventory(layout.inventory).custody is not None:
        raise VerificationError(
            f"{pki / custody.CUSTODY_DIR}: missing, but the inventory records split custody of the root "
            "(restore the folder from backup)"
        )
    if opts.shares or opts.type_share or opts.share_passphrase_files:
        raise InvalidInput(f"--share: the root in {pki} is not under split custody (ca init --custody M-of-N)")


def _share_identities(opts: RootOptions, prompt: Prompt) -> list[ShareIdentity]:
    from airgap.core.age import identity_is_encrypted
    from airgap.core.passphrase import read_passphrase_file
    from airgap.offline import custody

    pw_files = list(opts.share_passphrase_files)
    identities: list[ShareIdentity] = []
    for p in opts.shares:
        pw: bytes | None = None
        if identity_is_encrypted(p):
            if pw_files:
                pw = read_passphrase_file(pw_files.pop(0), what="share passphrase file")
            elif sys.stdin.isatty():
                pw = prompt(f"passphrase of {p}: ").encode()
            else:
                raise InvalidInput(f"{p}: identity is passphrase-protected; give --share-passphrase-file")
        identities.append(custody.load_share_identity(p, pw))
    if pw_files:
        raise InvalidInput("--share-passphrase-file given more often than there are protected --share identities")
    return identities


def _typed_shares(count: int, prompt: Prompt) -> list[tuple[str, str]]:
    typed: list[tuple[str, str]] = []
    for i in range(1, count + 1):
        if not sys.stdin.isatty():
            raise InvalidInput("--type-share needs a terminal (the words are never read from an argument or a pipe)")
        typed.append((f"typed share {i}", prompt(f"words of one share ({i}/{count}): ")))
    return typed


def open_custody(pki: Path, opts: RootOptions, *, prompt: Prompt = getpass.getpass) -> Opened | None:
    """Recover the root passphrase from the given shares, or None when the root is not under custody.

    Refuses (exit 3) shares for a root without custody, fewer than M distinct shares, an identity
    that opens no share (naming the files), and a protected identity without its passphrase; a
    custody the inventory records but whose folder is missing is exit 1.
    """
    from airgap.offline import custody

    if not custody.has_custody(pki):
        _check_no_custody(pki, opts)
        return None
    # After an interrupted re-key the shares in force are read where they are (read only); the act's
    # recovery moves them into place, under the lock, and records that.
    record = custody.read_record(pki)
    identities = _share_identities(opts, prompt)
    typed = _typed_shares(opts.type_share, prompt)
    return custody.combine(custody.collect_shares(pki, identities, typed=typed, record=record), record)


def with_custody(officer: Officer | None, opened: Opened | None) -> Officer | None:
    """``officer``, recording in every entry the custody shares that opened the root (if any)."""
    if officer is None or opened is None:
        return officer
    return dataclasses.replace(officer, annotations={**officer.annotations, **opened.log_params()})


def pki_passphrase(opts: RootOptions, *, required: bool, opened: Opened | None) -> bytes | None:
    """The PKI passphrase of an act that makes no new key: under custody only the log key's default."""
    from airgap.core.passphrase import read_passphrase_file, resolve_passphrase

    if opened is None:
        return resolve_passphrase(opts.passphrase_file, no_passphrase=opts.no_passphrase, required=required)
    return read_passphrase_file(opts.passphrase_file) if opts.passphrase_file is not None else None


def open_key(
    ref: TokenRef | None, pin_file: Path | None, opened: Opened | None = None
) -> contextlib.AbstractContextManager[PrivateKey | None]:
    """Open the token key; under split custody its user PIN is the one the shares recovered."""
    from airgap.offline.keysource import open_token_key

    if opened is not None and ref is not None and pin_file is not None:
        raise InvalidInput("--pin-file: the token PIN of a root under split custody comes from the shares (--share)")
    return open_token_key(ref, pin_file, pin=opened.passphrase.decode() if opened is not None else None)


@contextlib.contextmanager
def open_root(pki: Path, ref: TokenRef | None, opts: RootOptions, *, new_keys: bool = False) -> Iterator[OpenRoot]:
    """Open the root for an act, in the one order every root act uses: the custody shares (M of N),
    the PKI passphrase, the officer's log key (carrying the custody facts), then the token key
    (``ref``). ``new_keys``: the act makes cluster keys, so the PKI passphrase that encrypts them is
    asked for even under custody."""
    from airgap.core.passphrase import resolve_passphrase
    from airgap.offline.keysource import open_officer

    opened = open_custody(pki, opts)
    if new_keys:
        pw = resolve_passphrase(opts.passphrase_file, no_passphrase=opts.no_passphrase)
    else:
        pw = pki_passphrase(opts, required=ref is None, opened=opened)
    officer = with_custody(open_officer(opts.log_key, opts.log_key_passphrase_file, pw), opened)
    with open_key(ref, opts.pin_file, opened) as key:
        yield OpenRoot(opened.passphrase if opened is not None else pw, pw, key, officer)


__all__ = ["OpenRoot", "RootOptions", "open_custody", "open_key", "open_root", "pki_passphrase", "with_custody"]
