"""``ca custody rekey``: M of the current shares → a new M'-of-N' set; the old shares stop working.

The root key is re-encrypted under a fresh secret, so the old shares (and any copy of their words)
no longer open ``root-key.pem``. The new set is staged in ``PKI/custody.next/``, recorded in the
ceremony log, then committed by one rename (see :mod:`airgap.offline.custody`): a crash leaves the
old set or the new set in force, never neither. The next act's recovery finishes a re-key the log
records and undoes one it does not, and records a ``recover`` entry.

Trust: the caller has already recovered the current passphrase from M shares (:class:`Opened`);
that it really opens the root key is checked here, before anything is written. A ``root-key.pem``
copied away before the re-key still opens with the old shares: custody protects the file on this
host, not a backup someone took earlier (see docs/custody.md).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from airgap.core.keys import encode_private_key, spki_sha256
from airgap.errors import Refused
from airgap.offline import custody
from airgap.offline.act import pki_act
from airgap.offline.ceremony import Officer
from airgap.offline.custody import CustodyRecord, Opened
from airgap.offline.keysource import load_root
from airgap.offline.layout import PkiLayout


def rekey_custody(
    pki: Path,
    opened: Opened,
    *,
    threshold: int,
    recipients: Sequence[str],
    officer: Officer | None = None,
) -> CustodyRecord:
    """Replace the current share set by a ``threshold``-of-``len(recipients)`` set; return its record.

    Refused (exit 4) during a root rotation (the next root's key would keep the old secret) and for
    a PKCS#11 root. Every check runs before anything is written.
    """
    layout = PkiLayout(Path(pki))
    new = custody.split(threshold, recipients)
    with pki_act(layout, "custody-rekey", officer) as act:
        current = custody.read_record(layout.path)
        if current.identifier != opened.record.identifier:
            raise Refused("the custody set changed since the shares were read (another re-key ran); read them again")
        if layout.next_root_cert.exists():
            raise Refused(
                f"{layout.next_root_dir}: a root rotation is in progress; finish it ('ca rotate-root --finish') "
                "before re-keying the custody"
            )
        if layout.root_key_ref.exists() and not layout.root_key.exists():
            # GAP (issue 16): re-keying a token root's PIN (C_SetPIN old -> new) has no crash-safe commit
            # point the folder can see (the token may hold either PIN afterwards), so it is not built yet.
            raise Refused(f"{layout.root_key_ref}: re-keying the custody of a PKCS#11 root's PIN is not supported yet")
        _, key = load_root(layout, opened.passphrase)
        staged = custody.stage_rekey(layout.path, new, encode_private_key(key, new.passphrase))
        logged = False
        try:
            # The log first: once recorded, recovery finishes a re-key a crash interrupted.
            logged = (
                act.record(
                    "custody-rekey", {"key_id": spki_sha256(key), "new_custody": custody.created_params(new.record)}
                )
                is not None
            )
            custody.commit_rekey(layout.path)
        except BaseException:
            if not logged and (staged / custody.ROOT_KEY).exists():  # the old set stays in force
                shutil.rmtree(staged, ignore_errors=True)
            raise
        custody.finish_interrupted(layout.path)
        inv = act.inventory()
        inv.custody = new.record
        act.write_inventory(inv)
    return new.record


__all__ = ["rekey_custody"]
