"""The ``--share`` options every act that needs the root takes (opening the custody: ``offline/root.py``).

Split custody (``ca init --custody M-of-N --custodian PUB …``): the root key opens only with M of
the N custodians' SLIP-39 shares, each age-encrypted to one custodian as ``PKI/custody/share-K.age``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    pass

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


__all__ = ["ShareOpt", "SharePassOpt", "TypeShareOpt", "custodian_recipients"]
