"""``offline.root``: opening the root for an act lives in the library (issue 26 item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.core.keys import load_private_key
from airgap.errors import InvalidInput
from airgap.offline.ceremony import Officer, read_entries, record
from airgap.offline.root import RootOptions, open_custody, open_root, with_custody
from tests.bundle_fixtures import Keys, _logged_pki_template, bkeys, logged_pki  # noqa: F401
from tests.conftest import PASSPHRASE


def test_shares_for_a_root_without_custody_are_refused_by_the_library(pki: Path, tmp_path: Path) -> None:
    opts = RootOptions(shares=(tmp_path / "alice.key",))
    with pytest.raises(InvalidInput, match="not under split custody"):
        open_custody(pki, opts)
    with pytest.raises(InvalidInput, match="not under split custody"), open_root(pki, None, opts):
        pass


def test_open_root_without_custody_yields_the_passphrase(pki: Path, passfile: Path) -> None:
    with open_root(pki, None, RootOptions(passphrase_file=passfile)) as root:
        assert root.passphrase == root.pki_passphrase == PASSPHRASE
        assert root.key is None and root.officer is None


def test_custody_facts_reach_every_entry_through_the_officer(logged_pki: Path, bkeys: Keys) -> None:  # noqa: F811
    class Opened:
        def log_params(self) -> dict[str, object]:
            return {"custody_shares": [1, 3]}

    officer = Officer.from_key(load_private_key(bkeys.signer, None))
    assert with_custody(officer, None) is officer and with_custody(None, Opened()) is None  # type: ignore[arg-type]
    record(logged_pki, "crl", {"number": 9}, with_custody(officer, Opened()))  # type: ignore[arg-type]
    record(logged_pki, "crl", {"number": 10}, officer)
    last, before = read_entries(logged_pki)[-1], read_entries(logged_pki)[-2]
    assert before.params == {"number": 9, "custody_shares": [1, 3]}
    assert last.params == {"number": 10}  # nothing carried over from an earlier act
