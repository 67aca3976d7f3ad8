"""The ``--share`` options every act that needs the root takes, and opening the root's custody.

Split custody (``ca init --custody M-of-N --custodian PUB …``): the root key opens only with M of
the N custodians' SLIP-39 shares, each age-encrypted to one custodian as ``PKI/custody/share-K.age``.
"""

from __future__ import annotations

import contextlib
import getpass
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from airgap.offline.custody import Opened

ShareOpt = typer.Option(
    None,
    "--share",
    help="A custodian's age identity (keys new --kind recipient) that opens one custody share; repeat it: "
    "M of the N custodians are needed whenever the root key is used.",
)
SharePassOpt = typer.Option(
    None,
    "--share-passphrase-file",
    help="Passphrase file of a passphrase-protected --share identity; repeat it, in the order of the protected "
    "identities. On a terminal a missing one is asked for.",
)
TypeShareOpt = typer.Option(
    0,
    "--type-share",
    count=True,
    help="A custodian types one share's words (from the paper backup) on the terminal, not echoed; repeat it.",
)


def _invalid(msg: str) -> Exception:
    from airgap.errors import InvalidInput

    return InvalidInput(msg)


def open_custody(
    pki: Path,
    shares: Sequence[Path] | None,
    share_passphrase_files: Sequence[Path] | None,
    type_share: int,
) -> Opened | None:
    """Recover the root passphrase from the given shares, or None when the root is not under custody.

    Refuses (exit 3) shares for a root without custody, fewer than M distinct shares, an identity
    that opens no share (naming the files), and a protected identity without its passphrase.
    """
    from airgap.core.age import identity_is_encrypted
    from airgap.core.passphrase import read_passphrase_file
    from airgap.offline import custody

    shares = list(shares or [])
    pw_files = list(share_passphrase_files or [])
    if not custody.has_custody(pki):
        from airgap.offline.inventory import read_inventory
        from airgap.offline.layout import PkiLayout

        if PkiLayout(pki).inventory.exists() and read_inventory(PkiLayout(pki).inventory).custody is not None:
            from airgap.errors import VerificationError

            raise VerificationError(
                f"{pki / custody.CUSTODY_DIR}: missing, but the inventory records split custody of the root "
                "(restore the folder from backup)"
            )
        if shares or type_share or pw_files:
            raise _invalid(f"--share: the root in {pki} is not under split custody (ca init --custody M-of-N)")
        return None
    # After an interrupted re-key the shares in force are read where they are (read only); the act's
    # recovery moves them into place, under the lock, and records that.
    record = custody.read_record(pki)
    identities = []
    for p in shares:
        pw: bytes | None = None
        if identity_is_encrypted(p):
            if pw_files:
                pw = read_passphrase_file(pw_files.pop(0), what="share passphrase file")
            elif sys.stdin.isatty():
                pw = getpass.getpass(f"passphrase of {p}: ").encode()
            else:
                raise _invalid(f"{p}: identity is passphrase-protected; give --share-passphrase-file")
        identities.append(custody.load_share_identity(p, pw))
    if pw_files:
        raise _invalid("--share-passphrase-file given more often than there are protected --share identities")
    typed: list[tuple[str, str]] = []
    for i in range(1, type_share + 1):
        if not sys.stdin.isatty():
            raise _invalid("--type-share needs a terminal (the words are never read from an argument or a pipe)")
        typed.append((f"typed share {i}", getpass.getpass(f"words of one share ({i}/{type_share}): ")))
    return custody.combine(custody.collect_shares(pki, identities, typed=typed, record=record), record)


@contextlib.contextmanager
def logged(opened: Opened | None) -> Iterator[None]:
    """Inside the block every ceremony-log entry names the custody shares that opened the root."""
    if opened is None:
        yield
        return
    from airgap.offline.ceremony import annotate

    with annotate(opened.log_params()):
        yield


def custodian_recipients(custodians: Sequence[str]) -> list[str]:
    """``--custodian`` values: an ``age1…`` recipient or a ``.pub`` file holding exactly one."""
    from airgap.core.age import load_recipients

    out: list[str] = []
    for c in custodians:
        got = load_recipients(c, option="--custodian")
        if len(got) != 1:
            raise _invalid(f"--custodian {c}: holds {len(got)} recipients; give one custodian per --custodian")
        out.extend(got)
    return out


__all__ = ["ShareOpt", "SharePassOpt", "TypeShareOpt", "custodian_recipients", "logged", "open_custody"]
