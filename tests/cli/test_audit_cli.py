"""A whole ceremony through the CLI, recorded; `airgap audit verify | show` as an auditor runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE
from tests.helpers import one_error_line, run_cli, tree

EC = ("--key-type", "ecdsa-p256")


@pytest.fixture(scope="session")
def _ceremony(tmp_path_factory: pytest.TempPathFactory, passfile: Path) -> tuple[Path, Path]:
    """keys new officer; ca init; ca issue c1 c2; ca revoke c2; ca crl; ca rotate c1 — all logged."""
    base = tmp_path_factory.mktemp("ceremony")
    keys, pki = base / "keys", base / "pki"
    pf = ("--passphrase-file", passfile)
    steps = [
        ("keys", "new", "officer", "--out", keys, *pf),
        ("ca", "init", "--dir", pki, *EC, *pf, "--log-key", keys / "officer.key"),
        ("ca", "issue", "c1", "c2", "--dir", pki, *EC, *pf, "--workers", "1"),
        ("ca", "revoke", "c2", "--reason", "keyCompromise", "--dir", pki, *pf),
        ("ca", "crl", "--dir", pki, "--next-update-days", "14", *pf),
        ("ca", "rotate", "c1", "--dir", pki, "--days", "365", *pf),
    ]
    for i, args in enumerate(steps):
        env = {"AIRGAP_LOG_KEY": str(keys / "officer.key")} if i >= 2 else None  # the env var works too
        r = run_cli(*args, env=env)
        assert r.code == 0, (args, r.err)
    return keys, pki


@pytest.fixture
def ceremony(_ceremony: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    keys, pki = _ceremony
    shutil.copytree(pki, tmp_path / "pki")
    return keys, tmp_path / "pki"


def test_audit_verify_and_show(ceremony: tuple[Path, Path]) -> None:
    keys, pki = ceremony
    r = run_cli("audit", "verify", pki, "--trust", keys / "officer.pub")
    assert r.code == 0, r.err
    assert r.out.startswith("Verified OK: 9 entries, head ")
    r = run_cli("audit", "verify", pki, "--trust", keys / "officer.pub", "--json")
    doc = json.loads(r.out)
    assert doc["verified"] and doc["anchored"] and doc["entries"] == 9
    r = run_cli("audit", "show", pki, "--json")
    shown = json.loads(r.out)
    assert shown["verified"] is False and shown["head"] == doc["head"]
    acts = [e["act"] for e in shown["entries"]]
    assert acts == ["log-start", "key-create", "init", "issue", "issue", "revoke", "crl", "crl", "rotate"]
    assert shown["entries"][-1]["params"]["cluster"] == "c1"
    r = run_cli("audit", "show", pki)
    assert r.code == 0 and "unverified" in r.out and "rotate" in r.out
    # the head hash an import record keeps is accepted as a check
    r = run_cli("audit", "verify", pki, "--head", doc["head"])
    assert r.code == 0 and "no --trust key" in r.out


def test_no_secret_in_the_log(ceremony: tuple[Path, Path]) -> None:
    _, pki = ceremony
    data = (pki / "ceremony.log").read_bytes()
    assert PASSPHRASE not in data and b"PRIVATE KEY" not in data


def test_tampered_log_fails_with_the_entry_named(ceremony: tuple[Path, Path], passfile: Path) -> None:
    keys, pki = ceremony
    lines = (pki / "ceremony.log").read_bytes().splitlines(keepends=True)
    lines[5] = lines[5].replace(b"keyCompromise", b"superseded")
    (pki / "ceremony.log").write_bytes(b"".join(lines))
    r = run_cli("audit", "verify", pki, "--trust", keys / "officer.pub")
    assert r.code == 1
    one_error_line(r.err, "entry 6 (revoke): signature does not verify")
    # and an officer cannot extend it: the next act is refused, nothing changes
    before = tree(pki)
    r = run_cli("ca", "crl", "--dir", pki, "--no-passphrase", "--log-key", keys / "officer.key")
    assert r.code == 3
    one_error_line(r.err, "the log key is encrypted; give --log-key-passphrase-file")
    r = run_cli("ca", "crl", "--dir", pki, "--passphrase-file", passfile, "--log-key", keys / "officer.key")
    assert r.code == 1
    one_error_line(r.err, "refusing to extend a broken log")
    assert tree(pki) == before


def test_verify_errors(ceremony: tuple[Path, Path], tmp_path: Path) -> None:
    _keys, pki = ceremony
    r = run_cli("keys", "new", "stranger", "--out", tmp_path, "--no-passphrase")
    assert r.code == 0
    r = run_cli("audit", "verify", pki, "--trust", tmp_path / "stranger.pub")
    assert r.code == 1
    one_error_line(r.err, "entry 1: the log was started by key", "not a --trust key")
    r = run_cli("audit", "verify", pki, "--head", "ab" * 32)
    assert r.code == 1
    one_error_line(r.err, f"no entry has hash {'ab' * 32}")
    r = run_cli("audit", "verify", tmp_path)
    assert r.code == 1
    one_error_line(r.err, "no ceremony log")
    r = run_cli("audit", "show", tmp_path)
    assert r.code == 3
    one_error_line(r.err, "no ceremony log")
    r = run_cli("audit", "verify", pki, "--trust", tmp_path / "missing.pub")
    assert r.code == 3
    one_error_line(r.err, "missing.pub")


def test_an_act_without_the_log_key_is_refused(ceremony: tuple[Path, Path], passfile: Path) -> None:
    keys, pki = ceremony
    before = tree(pki)
    r = run_cli("ca", "issue", "c3", "--dir", pki, *EC, "--passphrase-file", passfile)
    assert r.code == 4
    one_error_line(r.err, "keeps a ceremony log", "--log-key")
    assert tree(pki) == before
    # a wrong passphrase for the log key is exit 3, before anything is done
    bad = pki.parent / "bad.txt"
    bad.write_text("wrong\n")
    r = run_cli(
        "ca", "issue", "c3", "--dir", pki, *EC, "--passphrase-file", passfile,
        "--log-key", keys / "officer.key", "--log-key-passphrase-file", bad,
    )  # fmt: skip
    assert r.code == 3
    one_error_line(r.err, "officer.key", "wrong passphrase")
    assert tree(pki) == before
    r = run_cli(
        "ca", "issue", "c3", "--dir", pki, *EC, "--passphrase-file", passfile, "--log-key", keys / "officer.key"
    )
    assert r.code == 0, r.err
    assert run_cli("audit", "verify", pki, "--trust", keys / "officer.pub").code == 0


HOSTILE = "[bold red]FORGED[/] [/] \x1b[2J\x1b]0;owned\x07\rcover\u202etxt"


def test_audit_show_on_a_tampered_log_never_crashes_nor_styles_the_screen(ceremony: tuple[Path, Path]) -> None:
    """Issue 9 item 8: markup in a field is shown literally, escapes are made visible, exit 0."""
    _, pki = ceremony
    log = pki / "ceremony.log"
    lines = log.read_bytes().splitlines()
    doc = json.loads(lines[3])
    doc["act"] = "[/]"
    doc["time"] = "\x1b[31m" + doc["time"]
    doc["params"]["cluster"] = HOSTILE
    doc["params"]["fingerprint"] = "[link=x]" * 10
    doc["signer"] = "\x1b[5m" + "[" * 40
    lines[3] = json.dumps(doc).encode()
    log.write_bytes(b"\n".join(lines) + b"\n")
    r = run_cli("audit", "show", pki)
    assert r.code == 0, r.err
    assert "\x1b" not in r.out and "\x07" not in r.out and "\r" not in r.out and "\u202e" not in r.out
    assert "[bold red]FORGED[/]" in r.out and "\\x1b[2J" in r.out and "\\u202e" in r.out
    assert "[/]" in r.out
    r = run_cli("audit", "show", pki, "--json")
    assert r.code == 0 and json.loads(r.out)["entries"][3]["params"]["cluster"] == HOSTILE
    r = run_cli("audit", "verify", pki)
    assert r.code == 1
    one_error_line(r)


@pytest.mark.parametrize(
    "junk",
    [
        b"\x00\xff\xfe not json",
        b'{"seq": "1"}',
        b"[1, 2]",
        b'{"act": 1, "params": [], "prev": "", "seq": 1, "time": ""}',
    ],
)
def test_audit_show_on_a_malformed_line_is_exit_1_not_a_crash(ceremony: tuple[Path, Path], junk: bytes) -> None:
    """A malformed line was changed or cut short: a tampered log, exit 1 (issue 23 fault 16), as verify says."""
    _, pki = ceremony
    log = pki / "ceremony.log"
    log.write_bytes(log.read_bytes() + junk + b"\n")
    r = run_cli("audit", "show", pki)
    assert r.code == 1
    one_error_line(r, "ceremony.log")


def test_audit_show_piped_is_never_cut(ceremony: tuple[Path, Path]) -> None:
    """Issue 9 item 11: through a pipe the table is full width and holds whole fingerprints."""
    from tests.helpers import run_proc

    _, pki = ceremony
    r = run_proc("audit", "show", pki)
    assert r.code == 0, r.err
    fps = [json.loads(x)["params"].get("fingerprint") for x in (pki / "ceremony.log").read_text().splitlines()]
    for fp in filter(None, fps):
        assert fp in r.out
    assert "…" not in r.out


def test_audit_verify_head_typo_is_bad_input_not_truncation(ceremony: tuple[Path, Path]) -> None:
    """Issue 9 item 10: '--head zzz' is a bad-input error (exit 3) naming the expected form."""
    _keys, pki = ceremony
    for bad in ("zzz", "ab" * 31, "g" * 64):
        r = run_cli("audit", "verify", pki, "--head", bad)
        assert r.code == 3, (bad, r.err)
        one_error_line(r.err, "--head", "not a head hash", "64 hexadecimal digits")
        assert "truncated" not in r.err


def test_audit_verify_and_show_agree_on_a_missing_folder(tmp_path: Path) -> None:
    """Issue 9 item 10: a PKI folder that does not exist is exit 3 for both."""
    for cmd in ("verify", "show"):
        r = run_cli("audit", cmd, tmp_path / "nope")
        assert r.code == 3, (cmd, r.err)
        one_error_line(r.err, "nope: no such PKI folder")


def test_audit_verify_and_show_given_the_log_file_name_the_folder_to_pass(ceremony: tuple[Path, Path]) -> None:
    _keys, pki = ceremony
    for cmd in ("verify", "show"):
        r = run_cli("audit", cmd, pki / "ceremony.log")
        assert r.code == 3, (cmd, r.err)
        one_error_line(r.err, "ceremony.log: a file, not a PKI folder", f"holds it: {pki}")
