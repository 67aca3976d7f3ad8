"""``ca custody rekey`` is atomic: a crash at any point leaves the old set or the new set in force."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airgap.core.age import new_recipient_key
from airgap.core.keys import encode_private_key, load_private_key
from airgap.errors import InvalidInput
from airgap.offline import custody
from airgap.offline.ca import CAStore
from airgap.offline.rekey import rekey_custody


@pytest.fixture(scope="module")
def ids(tmp_path_factory: pytest.TempPathFactory) -> list[custody.ShareIdentity]:
    d = tmp_path_factory.mktemp("rekey-custodians")
    return [custody.load_share_identity(new_recipient_key(f"c{i}", d, None).private, None) for i in range(5)]


def _recipients(ids: list[custody.ShareIdentity], *which: int) -> list[str]:
    return [str(ids[i].identities[0].to_public()) for i in which]


def _store(tmp_path: Path, ids: list[custody.ShareIdentity]) -> CAStore:
    store = CAStore(tmp_path / "pki")
    store.init_root(
        key_type="ecdsa-p256",
        days=365,
        org="Istio",
        cn="Root CA",
        passphrase=None,
        custody_set=custody.split(2, _recipients(ids, 0, 1, 2)),
    )
    return store


def _opens(store: CAStore, who: list[custody.ShareIdentity]) -> bool:
    """True when these custodians' shares open root-key.pem now."""
    with store.locked():  # what every act does first: finish or undo an interrupted re-key
        pass
    try:
        opened = custody.open_root_passphrase(store.path, who)
        store.load_root(opened.passphrase)
    except InvalidInput:
        return False
    return True


def _stage(store: CAStore, ids: list[custody.ShareIdentity]) -> custody.NewSet:
    """Stage a 2-of-2 re-key for custodians 3 and 4, as rekey_custody does before its commit."""
    opened = custody.open_root_passphrase(store.path, ids[:2])
    key = load_private_key(store.root_key_path, opened.passphrase)
    new = custody.split(2, _recipients(ids, 3, 4))
    custody.stage_rekey(store.path, new, encode_private_key(key, new.passphrase))
    return new


def test_crash_before_commit_keeps_the_old_set(tmp_path: Path, ids: list[custody.ShareIdentity]) -> None:
    store = _store(tmp_path, ids)
    _stage(store, ids)
    assert (store.path / "custody.next" / "root-key.pem").exists()
    assert _opens(store, ids[:2])
    assert not (store.path / "custody.next").exists()
    assert not _opens(store, ids[3:5])


def test_crash_after_commit_rolls_forward(tmp_path: Path, ids: list[custody.ShareIdentity]) -> None:
    store = _store(tmp_path, ids)
    new = _stage(store, ids)
    custody.commit_rekey(store.path)
    assert _opens(store, ids[3:5])
    assert not (store.path / "custody.next").exists()
    assert store.read_inventory().custody == new.record
    assert not _opens(store, ids[:2])


def test_crash_in_the_middle_of_the_swap(tmp_path: Path, ids: list[custody.ShareIdentity]) -> None:
    store = _store(tmp_path, ids)
    new = _stage(store, ids)
    custody.commit_rekey(store.path)
    os.rename(store.path / "custody", store.path / "custody.old")  # killed between the two renames
    assert _opens(store, ids[3:5])
    assert not (store.path / "custody.old").exists() and not (store.path / "custody.next").exists()
    assert custody.read_record(store.path) == new.record


def test_crash_before_the_old_set_is_removed(tmp_path: Path, ids: list[custody.ShareIdentity]) -> None:
    store = _store(tmp_path, ids)
    _stage(store, ids)
    custody.commit_rekey(store.path)
    os.rename(store.path / "custody", store.path / "custody.old")
    os.rename(store.path / "custody.next", store.path / "custody")
    assert _opens(store, ids[3:5])
    assert not (store.path / "custody.old").exists()


def test_failed_commit_leaves_nothing(
    tmp_path: Path, ids: list[custody.ShareIdentity], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path, ids)
    opened = custody.open_root_passphrase(store.path, ids[:2])
    before = sorted(p.name for p in store.path.iterdir())

    def boom(pki: Path) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(custody, "commit_rekey", boom)
    with pytest.raises(OSError, match="disk gone"):
        rekey_custody(store.path, opened, threshold=2, recipients=_recipients(ids, 3, 4))
    assert sorted(p.name for p in store.path.iterdir()) == before
    monkeypatch.undo()
    assert _opens(store, ids[:2])


def test_rekey_then_again(tmp_path: Path, ids: list[custody.ShareIdentity]) -> None:
    store = _store(tmp_path, ids)
    opened = custody.open_root_passphrase(store.path, [ids[2], ids[0]])
    rec = rekey_custody(store.path, opened, threshold=3, recipients=_recipients(ids, 0, 1, 2, 3, 4))
    assert (rec.threshold, rec.count) == (3, 5) and store.read_inventory().custody == rec
    assert _opens(store, [ids[4], ids[0], ids[3]]) and not _opens(store, ids[:2])
    # a stale Opened (from the previous set) is refused before anything is written
    from airgap.errors import Refused

    with pytest.raises(Refused, match="custody set changed"):
        rekey_custody(store.path, opened, threshold=2, recipients=_recipients(ids, 0, 1))


def test_shares_in_force_are_read_before_recovery(tmp_path: Path, ids: list[custody.ShareIdentity]) -> None:
    """A committed re-key not yet moved into place: the new shares open the key, read only."""
    store = _store(tmp_path, ids)
    new = _stage(store, ids)
    custody.commit_rekey(store.path)
    assert custody.read_record(store.path) == new.record
    opened = custody.open_root_passphrase(store.path, ids[3:5])
    store.load_root(opened.passphrase)
    assert (store.path / "custody.next").exists()  # nothing moved: reading changes nothing


def test_recorded_but_not_committed_is_finished(tmp_path: Path, ids: list[custody.ShareIdentity]) -> None:
    """The log already has the re-key (it is written before the commit): recovery commits it."""
    store = _store(tmp_path, ids)
    new = _stage(store, ids)
    seen: list[custody.CustodyRecord] = []

    def recorded(staged: custody.CustodyRecord) -> bool:
        seen.append(staged)
        return True

    assert "finished" in (custody.finish_interrupted(store.path, recorded) or "")
    assert seen == [new.record]
    assert _opens(store, ids[3:5]) and not _opens(store, ids[:2])
