"""The ceremony log: an intact log verifies; each attack is found and the bad entry named."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.core.keys import sign, spki_sha256
from airgap.errors import InvalidInput, LogTampered, Refused, SignatureMismatch, VerificationError
from airgap.offline import ceremony
from airgap.offline.ca import CAStore
from airgap.offline.ceremony import DOMAIN, HEAD_DOMAIN, Officer, canonical, head_hash, read_entries, verify_log
from airgap.offline.crl import refresh_crl, revoke
from tests.act_fixtures import ISSUE, Logged
from tests.conftest import PASSPHRASE
from tests.helpers import one_error_line, run_cli, tree


@pytest.fixture(scope="session")
def _officer() -> Officer:
    return Officer.from_key(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="session")
def _logged_template(tmp_path_factory: pytest.TempPathFactory, _officer: Officer) -> Path:
    """Entries: 1 log-start, 2 key-create, 3 init, 4 issue c1, 5 issue c2, 6 revoke c2, 7 crl."""
    d = tmp_path_factory.mktemp("logged") / "pki"
    store = CAStore(d)
    store.init_root(
        key_type="ecdsa-p256", days=3650, org="Istio", cn="Root CA", passphrase=PASSPHRASE, officer=_officer
    )
    store.issue(["c1"], officer=_officer, **ISSUE)  # type: ignore[arg-type]
    store.issue(["c2"], officer=_officer, **ISSUE)  # type: ignore[arg-type]
    revoke(store.path, "c2", reason="keyCompromise", passphrase=PASSPHRASE, officer=_officer)
    return d


@pytest.fixture
def logged(_logged_template: Path, _officer: Officer, tmp_path: Path) -> Logged:
    d = tmp_path / "pki"
    shutil.copytree(_logged_template, d)
    return Logged(d, _officer)


def _lines(pki: Path) -> list[bytes]:
    return (pki / "ceremony.log").read_bytes().splitlines()


def _write(pki: Path, lines: list[bytes]) -> None:
    (pki / "ceremony.log").write_bytes(b"".join(x + b"\n" for x in lines))


def _entry(line: bytes) -> dict[str, object]:
    doc = json.loads(line)
    assert isinstance(doc, dict)
    return doc


def _signed(body: dict[str, object], key: ec.EllipticCurvePrivateKey) -> bytes:
    """An entry line signed by ``key`` (what an attacker holding some key could write)."""
    body = {**body, "signer": spki_sha256(key)}
    body.pop("signature", None)
    sig = base64.b64encode(sign(key, DOMAIN + canonical(body))).decode()
    return canonical({**body, "signature": sig})


def _fails(logged: Logged, *needles: str, trust: bool = True, **kw: object) -> str:
    with pytest.raises(VerificationError) as ei:
        verify_log(logged.pki, [logged.officer.key.public_key()] if trust else None, **kw)  # type: ignore[arg-type]
    for n in needles:
        assert n in ei.value.message, ei.value.message
    return ei.value.message


def _fails_at(logged: Logged, cause: type[VerificationError], entry: int | None, *needles: str) -> None:
    """The log fails with ``cause`` (typed by cause) naming ``entry`` as data, not only in its text."""
    with pytest.raises(cause) as ei:
        verify_log(logged.pki, [logged.officer.key.public_key()])  # type: ignore[list-item]
    assert getattr(ei.value, "entry", None) == entry
    for n in needles:
        assert n in ei.value.message, ei.value.message


def test_intact_log_verifies_with_and_without_trust(logged: Logged) -> None:
    log = verify_log(logged.pki, [logged.officer.key.public_key()])  # type: ignore[list-item]
    assert [e.act for e in log.entries] == ["log-start", "key-create", "init", "issue", "issue", "revoke", "crl"]
    assert log.anchored and log.head == head_hash(logged.pki) == log.entries[-1].hash
    assert [e.seq for e in log.entries] == list(range(1, 8))
    for a, b in zip(log.entries, log.entries[1:], strict=False):
        assert b.prev == a.hash
    unanchored = verify_log(logged.pki)
    assert not unanchored.anchored and any("no --trust key" in n for n in unanchored.notes)
    issue = log.entries[3]
    assert issue.params["cluster"] == "c1"
    assert issue.params["fingerprint"] and issue.params["serial"] and issue.params["key_id"]
    assert log.entries[5].params["reason"] == "keyCompromise"
    assert log.entries[0].params["officer_key_id"] == logged.officer.key_id


def test_log_holds_no_secret(logged: Logged) -> None:
    data = (logged.pki / "ceremony.log").read_bytes() + (logged.pki / "ceremony-head.json").read_bytes()
    assert PASSPHRASE not in data
    assert b"PRIVATE KEY" not in data
    key_pem = (logged.pki / "c1" / "ca-key.pem").read_bytes()
    body = b"".join(key_pem.splitlines()[1:-1])
    assert body[:40] not in data


def test_deleted_entry_is_named(logged: Logged) -> None:
    lines = _lines(logged.pki)
    del lines[3]
    _write(logged.pki, lines)
    _fails_at(logged, LogTampered, 4, "entry 4 was removed")


def test_edited_entry_is_named(logged: Logged) -> None:
    lines = _lines(logged.pki)
    lines[3] = lines[3].replace(b'"cluster":"c1"', b'"cluster":"c9"')
    _write(logged.pki, lines)
    _fails_at(logged, SignatureMismatch, 4, "entry 4 (issue): signature does not verify", "changed after signing")


def test_reordered_entries_are_named(logged: Logged) -> None:
    lines = _lines(logged.pki)
    lines[3], lines[4] = lines[4], lines[3]
    _write(logged.pki, lines)
    _fails_at(logged, LogTampered, 4, "entry 4", "reordered")


def test_appended_unsigned_entry_is_named(logged: Logged) -> None:
    lines = _lines(logged.pki)
    last = _entry(lines[-1])
    forged = {
        "act": "issue",
        "params": {"cluster": "evil"},
        "prev": ceremony._sha256(lines[-1]),
        "seq": 8,
        "signer": "",
        "signature": "",
        "time": last["time"],
    }
    _write(logged.pki, [*lines, canonical(forged)])
    _fails_at(logged, LogTampered, 8, "entry 8 (issue) is not signed")
    # and with the fields left out altogether
    forged.pop("signer")
    forged.pop("signature")
    _write(logged.pki, [*lines, canonical(forged)])
    _fails(logged, "entry 8 (issue) is not signed")


def test_truncated_log_is_found(logged: Logged) -> None:
    lines = _lines(logged.pki)
    _write(logged.pki, lines[:-1])
    _fails_at(logged, LogTampered, 7, "entry 7 is missing", "truncated")


def test_log_cut_mid_entry_is_found(logged: Logged) -> None:
    data = (logged.pki / "ceremony.log").read_bytes()
    (logged.pki / "ceremony.log").write_bytes(data[:-40])
    _fails_at(logged, LogTampered, 7, "entry 7", "cut short")


def test_truncated_log_without_head_is_found(logged: Logged) -> None:
    _write(logged.pki, _lines(logged.pki)[:-2])
    (logged.pki / "ceremony-head.json").unlink()
    _fails_at(logged, LogTampered, None, "signed head is missing", "truncated")


def test_truncated_log_with_an_older_head_is_found_by_the_files(logged: Logged) -> None:
    """Cut back to entry 4 and forge nothing: re-use an honest head signed at entry 4."""
    lines = _lines(logged.pki)[:4]
    _write(logged.pki, lines)
    o = logged.officer
    body = {"hash": ceremony._sha256(lines[-1]), "seq": 4, "signer": o.key_id}
    sig = base64.b64encode(sign(o.key, HEAD_DOMAIN + canonical(body))).decode()
    (logged.pki / "ceremony-head.json").write_bytes(canonical({**body, "signature": sig}))
    msg = _fails(logged, "has no entry in the log", "truncated")
    assert "c2" in msg


def test_truncation_is_found_by_a_head_from_a_bundle(logged: Logged) -> None:
    """Cut back past an act that left no certificate (the CRL): only an outside head finds it."""
    h7 = head_hash(logged.pki)
    assert h7 is not None
    lines = _lines(logged.pki)[:6]
    _write(logged.pki, lines)
    o = logged.officer
    body = {"hash": ceremony._sha256(lines[-1]), "seq": 6, "signer": o.key_id}
    sig = base64.b64encode(sign(o.key, HEAD_DOMAIN + canonical(body))).decode()
    (logged.pki / "ceremony-head.json").write_bytes(canonical({**body, "signature": sig}))
    verify_log(logged.pki, [o.key.public_key()])  # type: ignore[list-item]
    _fails(logged, f"no entry has hash {h7}", "truncated or rewritten", expect_head=h7)


def test_entry_signed_by_another_key_is_named(logged: Logged) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    lines = _lines(logged.pki)
    e = _entry(lines[-1])
    forged = _signed({**e, "seq": 8, "prev": ceremony._sha256(lines[-1]), "act": "issue", "params": {}}, other)
    _write(logged.pki, [*lines, forged])
    _fails(logged, f"entry 8 (issue) is signed by key {spki_sha256(other)}", "not a --trust key")
    _fails(logged, "not the officer key registered in entry 1", trust=False)


def test_whole_log_rewritten_with_another_key_fails_against_trust(logged: Logged) -> None:
    """A consistent forgery passes a self-check but not the officer's pinned key."""
    other = ec.generate_private_key(ec.SECP256R1())
    from airgap.core.keys import public_pem

    out: list[bytes] = []
    prev = ceremony.GENESIS_PREV
    for line in _lines(logged.pki):
        e = _entry(line)
        if e["act"] == "log-start":
            params = dict(e["params"])  # type: ignore[call-overload]
            params["officer_key"] = public_pem(other).decode()
            e["params"] = params
        new = _signed({**e, "prev": prev}, other)
        out.append(new)
        prev = ceremony._sha256(new)
    _write(logged.pki, out)
    body = {"hash": prev, "seq": len(out), "signer": spki_sha256(other)}
    sig = base64.b64encode(sign(other, HEAD_DOMAIN + canonical(body))).decode()
    (logged.pki / "ceremony-head.json").write_bytes(canonical({**body, "signature": sig}))
    # inventory.json still records the officer who started the log: the replacement is named
    _fails(logged, "entry 1 (started", f"by key {spki_sha256(other)}) is not the log inventory.json records",
           f"by key {logged.officer.key_id}", "the log was replaced", trust=False)  # fmt: skip
    # an attacker who also rewrites that record gets a self-consistent folder ...
    inv = json.loads((logged.pki / "inventory.json").read_bytes())
    inv["ceremony_log"]["officer_key_id"] = spki_sha256(other)
    (logged.pki / "inventory.json").write_text(json.dumps(inv))
    verify_log(logged.pki)  # self-consistent
    # ... which only the officer's pinned key exposes
    _fails(logged, "entry 1: the log was started by key", "not a --trust key")


def test_spliced_entry_signed_by_the_officer_is_named(logged: Logged) -> None:
    """A genuine officer signature on an entry that does not follow its predecessor."""
    lines = _lines(logged.pki)
    e = _entry(lines[4])
    lines[4] = _signed({**e, "prev": "ab" * 32}, logged.officer.key)  # type: ignore[arg-type]
    _write(logged.pki, lines)
    _fails(logged, "entry 5 (issue) does not follow entry 4")


def test_malformed_head_and_garbage_line(logged: Logged) -> None:
    lines = _lines(logged.pki)
    _write(logged.pki, [*lines[:2], b"not json", *lines[3:]])
    _fails(logged, "entry at line 3 is not valid JSON")


def test_act_on_logged_pki_needs_the_officer_and_changes_nothing(logged: Logged) -> None:
    before = tree(logged.pki), (logged.pki / "ceremony.log").read_bytes()
    store = CAStore(logged.pki)
    with pytest.raises(Refused, match="keeps a ceremony log"):
        store.issue(["c3"], **ISSUE)  # type: ignore[arg-type]
    stranger = Officer.from_key(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(Refused, match="is not the officer key registered"):
        store.issue(["c3"], officer=stranger, **ISSUE)  # type: ignore[arg-type]
    assert (tree(logged.pki), (logged.pki / "ceremony.log").read_bytes()) == before


def test_broken_log_is_not_extended(logged: Logged) -> None:
    lines = _lines(logged.pki)
    del lines[2]
    _write(logged.pki, lines)
    before = tree(logged.pki)
    with pytest.raises(VerificationError, match="refusing to extend a broken log"):
        CAStore(logged.pki).issue(["c3"], officer=logged.officer, **ISSUE)  # type: ignore[arg-type]
    assert tree(logged.pki) == before


def test_next_act_extends_the_chain(logged: Logged) -> None:
    h = head_hash(logged.pki)
    CAStore(logged.pki).issue(["c3"], officer=logged.officer, **ISSUE)  # type: ignore[arg-type]
    log = verify_log(logged.pki, [logged.officer.key.public_key()])  # type: ignore[list-item]
    assert log.entries[-1].prev == h and log.entries[-1].params["cluster"] == "c3"


def test_record_refuses_secrets(tmp_path: Path, _officer: Officer) -> None:
    with pytest.raises(ValueError, match="looks like a secret"):
        ceremony.record(tmp_path, "issue", {"passphrase": "x"}, _officer)
    with pytest.raises(ValueError, match="holds a private key"):
        ceremony.record(tmp_path, "issue", {"k": "-----BEGIN PRIVATE KEY-----"}, _officer)
    assert not (tmp_path / "ceremony.log").exists()


def test_existing_pki_starts_a_log_listing_what_exists(pki: Path, _officer: Officer) -> None:
    """A PKI made without a log can start one: entry 1 lists the certificates already there."""
    CAStore(pki).issue(["c3"], officer=_officer, **ISSUE)  # type: ignore[arg-type]
    log = verify_log(pki, [_officer.key.public_key()])  # type: ignore[list-item]
    assert len(log.entries[0].params["existing_certificates"]) == 3  # root, c1, c2
    assert [e.act for e in log.entries] == ["log-start", "issue"]


@pytest.mark.parametrize(
    ("head", "needle"),
    [
        (b"{", "the signed head is malformed"),
        (b'{"hash": "x", "seq": "7", "signer": "s", "signature": ""}', "the signed head is malformed"),
        (b'{"hash": "x", "seq": 7, "signer": "s", "signature": ""}', "is not an officer key"),
    ],
)
def test_malformed_head_is_reported(logged: Logged, head: bytes, needle: str) -> None:
    (logged.pki / "ceremony-head.json").write_bytes(head)
    _fails(logged, needle)


def test_head_signed_over_other_bytes_is_reported(logged: Logged) -> None:
    doc = json.loads((logged.pki / "ceremony-head.json").read_bytes())
    doc["seq"] = 6
    (logged.pki / "ceremony-head.json").write_bytes(canonical(doc))
    _fails(logged, "the head's signature does not verify")


# -- a logged PKI cannot silently become unlogged --------------------------------------------------


def _snapshot(pki: Path) -> dict[str, bytes]:
    """Every file below ``pki`` with its bytes: for 'nothing changed' checks."""
    return {str(p.relative_to(pki)): p.read_bytes() for p in sorted(pki.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def _officer_key_file(tmp_path_factory: pytest.TempPathFactory, _officer: Officer) -> Path:
    from airgap.core.keys import write_private_key

    p = tmp_path_factory.mktemp("officer") / "officer.key"
    write_private_key(p, _officer.key, None)
    return p


def _remove(pki: Path, which: str) -> list[str]:
    """Delete the log, its head or both; returns the names that must appear in the error."""
    names = {"log": ["ceremony.log"], "head": ["ceremony-head.json"], "both": ["ceremony.log", "ceremony-head.json"]}
    for n in names[which]:
        (pki / n).unlink()
    return names[which]


def _acts(pki: Path, officer: Officer | None, key_file: Path, out: Path) -> dict[str, object]:
    from airgap.offline.bundle import seal_bundle
    from airgap.offline.rotate import begin_root_rotation, rotate_intermediate

    store = CAStore(pki)
    return {
        "issue": lambda: store.issue(["c3"], officer=officer, **ISSUE),  # type: ignore[arg-type]
        "revoke": lambda: revoke(store.path, "c1", reason="superseded", passphrase=PASSPHRASE, officer=officer),
        "crl": lambda: refresh_crl(store.path, passphrase=PASSPHRASE, officer=officer),
        "bundle": lambda: seal_bundle(
            "c1",
            pki_dir=pki,
            sign_key_path=key_file,
            sign_passphrase=None,
            pki_passphrase=PASSPHRASE,
            recipients=[],
            no_encrypt=True,
            out=out,
            officer=officer,
        ),
        "rotate": lambda: rotate_intermediate(
            store.path, "c1", days=365, passphrase=PASSPHRASE, key_passphrase=PASSPHRASE, officer=officer
        ),
        "rotate-root": lambda: begin_root_rotation(
            store.path, key_type="ecdsa-p256", days=3650, org="Istio", cn="Root CA 2",
            passphrase=PASSPHRASE, officer=officer
        ),
    }


def test_log_start_is_recorded_in_the_inventory(logged: Logged) -> None:
    doc = json.loads((logged.pki / "inventory.json").read_bytes())
    first = verify_log(logged.pki).entries[0]
    assert doc["ceremony_log"] == {"officer_key_id": logged.officer.key_id, "started": first.time}
    rec = ceremony.log_record(logged.pki)
    assert rec is not None and rec.officer_key_id == logged.officer.key_id
    assert doc["root"] and len(doc["intermediates"]) == 2  # the rest of the inventory is untouched


@pytest.mark.parametrize("which", ["log", "head", "both"])
@pytest.mark.parametrize("act", ["issue", "revoke", "crl", "bundle", "rotate", "rotate-root"])
@pytest.mark.parametrize("with_officer", [True, False], ids=["officer", "no-officer"])
def test_removed_log_refuses_every_act_and_changes_nothing(
    logged: Logged, _officer_key_file: Path, tmp_path: Path, which: str, act: str, with_officer: bool
) -> None:
    """With or without the log key: exit 1 naming the missing file; no new log, no file changed."""
    missing = _remove(logged.pki, which)
    before = _snapshot(logged.pki)
    out = tmp_path / "c1.bundle"
    run = _acts(logged.pki, logged.officer if with_officer else None, _officer_key_file, out)[act]
    with pytest.raises(VerificationError) as ei:
        run()  # type: ignore[operator]
    assert ei.value.exit_code == 1
    msg = ei.value.message
    assert "\n" not in msg
    assert (
        f"{logged.pki / missing[0]} is missing" in msg
        or f"{logged.pki / missing[0]}: the signed head is missing" in msg
    )
    for n in missing:
        assert str(logged.pki / n) in msg, msg
    assert "was removed" in msg and "inventory.json records that this PKI keeps a ceremony log" in msg, msg
    assert logged.officer.key_id in msg
    assert _snapshot(logged.pki) == before
    assert not out.exists()


@pytest.mark.parametrize("which", ["log", "head", "both"])
def test_audit_verify_names_the_removal(logged: Logged, which: str) -> None:
    missing = _remove(logged.pki, which)
    r = run_cli("audit", "verify", logged.pki)
    assert r.code == 1
    line = one_error_line(r.err, *(str(logged.pki / n) for n in missing), "was removed")
    assert "keeps a ceremony log" in line
    assert "missing" in line


def test_removed_log_cli_act_is_exit_1(logged: Logged, _officer_key_file: Path, passfile: Path) -> None:
    _remove(logged.pki, "both")
    before = _snapshot(logged.pki)
    base = ("ca", "issue", "c3", "--dir", logged.pki, "--key-type", "ecdsa-p256", "--passphrase-file", passfile)
    for extra in ((), ("--log-key", _officer_key_file)):
        r = run_cli(*base, *extra)
        assert r.code == 1, r.err
        one_error_line(r.err, f"{logged.pki / 'ceremony.log'} is missing", "the ceremony log was removed")
    assert _snapshot(logged.pki) == before


def _old_inventory(pki: Path) -> None:
    """Rewrite inventory.json as it was before it recorded the log (no ``ceremony_log``)."""
    doc = json.loads((pki / "inventory.json").read_bytes())
    del doc["ceremony_log"]
    (pki / "inventory.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize("which", ["log", "head"])
def test_old_inventory_one_file_left_still_refuses(logged: Logged, which: str) -> None:
    """Without the record, the file that is left is the evidence: still exit 1, nothing changed."""
    _old_inventory(logged.pki)
    missing = _remove(logged.pki, which)
    before = _snapshot(logged.pki)
    with pytest.raises(VerificationError) as ei:
        CAStore(logged.pki).issue(["c3"], officer=logged.officer, **ISSUE)  # type: ignore[arg-type]
    assert str(logged.pki / missing[0]) in ei.value.message and "was removed" in ei.value.message
    assert _snapshot(logged.pki) == before
    with pytest.raises(VerificationError, match="was removed"):
        verify_log(logged.pki)


def test_old_inventory_without_the_record_works_as_before(logged: Logged) -> None:
    """An inventory that predates the record: a logged act adds it; an unlogged PKI stays unlogged."""
    _old_inventory(logged.pki)
    assert ceremony.log_record(logged.pki) is None
    verify_log(logged.pki, [logged.officer.key.public_key()])  # type: ignore[list-item]
    with pytest.raises(Refused, match="keeps a ceremony log"):
        CAStore(logged.pki).issue(["c3"], **ISSUE)  # type: ignore[arg-type]
    CAStore(logged.pki).issue(["c3"], officer=logged.officer, **ISSUE)  # type: ignore[arg-type]
    rec = ceremony.log_record(logged.pki)
    first = verify_log(logged.pki, [logged.officer.key.public_key()]).entries[0]  # type: ignore[list-item]
    assert rec is not None and (rec.officer_key_id, rec.started) == (logged.officer.key_id, first.time)
    # an old logged folder whose log and head were BOTH removed before it got the record: as before,
    # nothing in the folder shows it (documented limit); the act goes through unlogged
    _old_inventory(logged.pki)
    _remove(logged.pki, "both")
    CAStore(logged.pki).issue(["c4"], **ISSUE)  # type: ignore[arg-type]
    assert not (logged.pki / "ceremony.log").exists()


def test_never_logged_pki_gets_no_record(pki: Path) -> None:
    """A PKI that never kept a log: no record is written, acts stay unlogged."""
    CAStore(pki).issue(["c3"], **ISSUE)  # type: ignore[arg-type]
    assert "ceremony_log" not in json.loads((pki / "inventory.json").read_bytes())
    assert ceremony.log_record(pki) is None and not (pki / "ceremony.log").exists()


def test_log_started_by_a_multi_cluster_issue_keeps_its_record(pki: Path, _officer: Officer) -> None:
    """``issue`` rewrites the inventory per cluster; the record must survive to the end."""
    CAStore(pki).issue(["c3", "c4"], officer=_officer, **ISSUE)  # type: ignore[arg-type]
    rec = ceremony.log_record(pki)
    assert rec is not None and rec.officer_key_id == _officer.key_id
    assert [e.act for e in verify_log(pki, [_officer.key.public_key()]).entries] == ["log-start", "issue", "issue"]  # type: ignore[list-item]
    (pki / "ceremony.log").unlink()
    (pki / "ceremony-head.json").unlink()
    with pytest.raises(VerificationError, match="the ceremony log was removed"):
        CAStore(pki).issue(["c5"], officer=_officer, **ISSUE)  # type: ignore[arg-type]
    assert not (pki / "c5").exists() and not (pki / "ceremony.log").exists()


@pytest.mark.parametrize(
    "record",
    [
        {"officer_key_id": 5, "started": "x"},
        {"officer_key_id": "k"},
        "yes",
        {"officer_key_id": "k", "started": "t", "x": 1},
    ],
)
def test_corrupt_log_record_is_invalid_input(logged: Logged, record: object) -> None:
    doc = json.loads((logged.pki / "inventory.json").read_bytes())
    doc["ceremony_log"] = record
    (logged.pki / "inventory.json").write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match="inventory is corrupt"):
        CAStore(logged.pki).read_inventory()
    with pytest.raises(InvalidInput, match="inventory is corrupt"):
        verify_log(logged.pki)


def test_record_all_appends_a_batch_in_one_write_that_verifies(logged: Logged, monkeypatch: pytest.MonkeyPatch) -> None:
    from airgap.offline.ceremony import store

    before = read_entries(logged.pki)
    writes: list[str] = []
    real = store.write_replace
    monkeypatch.setattr(store, "write_replace", lambda p, data, **kw: (writes.append(p.name), real(p, data, **kw)))
    written = ceremony.record_all(logged.pki, [("note", {"n": i}) for i in range(5)], logged.officer)
    assert writes == [store.LOG_NAME, store.HEAD_NAME]  # the log and its head once, not once per entry
    after = read_entries(logged.pki)
    assert [e.params.get("n") for e in after[len(before) :]] == [0, 1, 2, 3, 4]
    assert [e.seq for e in written] == [len(before) + 1 + i for i in range(5)]
    verify_log(logged.pki, [logged.officer.key.public_key()])
    with pytest.raises(ValueError):
        ceremony.record_all(logged.pki, [("note", {"passphrase": "x"})], logged.officer)
    assert len(read_entries(logged.pki)) == len(after)  # a batch with a secret writes nothing


def test_an_entry_that_is_not_json_is_named_as_data(logged: Logged) -> None:
    lines = _lines(logged.pki)
    lines[2] = b"{not json"
    _write(logged.pki, lines)
    _fails_at(logged, LogTampered, 3, "entry at line 3", "not valid JSON")
