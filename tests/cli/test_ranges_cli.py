"""Issue 9, items 9 and 10: every number has a range, subject fields their RFC 5280 bounds, and a
command that fails leaves no folder it created."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import one_error_line, run_cli, tree


def _usage_error(r: object, option: str) -> None:
    from tests.helpers import Result

    assert isinstance(r, Result)
    assert r.code == 2, r
    assert option in r.err and "Traceback" not in r.err and "internal error" not in r.err


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["ca", "init", "--days", "99999999"], "--days"),
        (["ca", "issue", "c3", "--days", "99999999"], "--days"),
        (["ca", "rotate", "c1", "--days", "99999999"], "--days"),
        (["ca", "rotate-root", "--days", "99999999"], "--days"),
        (["ca", "revoke", "c1", "--reason", "superseded", "--next-update-days", "99999999"], "--next-update-days"),
        (["ca", "crl", "--next-update-days", "99999999"], "--next-update-days"),
        (["ca", "list", "--expiring-within", "99999999999"], "--expiring-within"),
        (["ca", "issue", "c3", "--workers", "-3"], "--workers"),
        (["bundle", "create", "c1", "--expires", "0", "--sign-key", "k", "--out", "o"], "--expires"),
    ],
)
def test_huge_or_negative_numbers_are_usage_errors_not_crashes(
    argv: list[str], option: str, pki: Path, passfile: Path
) -> None:
    before = tree(pki)
    r = run_cli(*argv, "--dir", pki, "--passphrase-file", passfile)
    _usage_error(r, option)
    assert tree(pki) == before


@pytest.mark.parametrize("value", ["0", "-1", "nan", "1e300"])
def test_release_fetch_timeout_out_of_range_is_a_usage_error(value: str, tmp_path: Path) -> None:
    r = run_cli("release", "fetch", "1.8.6-asm.8", "--out", tmp_path / "o", "--timeout", value)
    _usage_error(r, "--timeout")
    assert not (tmp_path / "o").exists()


def test_release_fetch_negative_retries_is_a_usage_error(tmp_path: Path) -> None:
    r = run_cli("release", "fetch", "1.8.6-asm.8", "--out", tmp_path / "o", "--retries", "-3")
    _usage_error(r, "--retries")


@pytest.mark.parametrize(
    ("cn", "needles"),
    [
        ("", ("--cn is empty", "RFC 5280 ub-common-name", "64")),
        ("   ", ("--cn is empty",)),
        ("x" * 65, ("--cn is 65 characters", "RFC 5280 allows at most 64", "ub-common-name")),
        ("bad\x1b[2Jcn", ("--cn holds control characters",)),
    ],
)
def test_empty_or_oversized_subject_field_is_exit_3_naming_the_rfc5280_bound(
    cn: str, needles: tuple[str, ...], tmp_path: Path
) -> None:
    d = tmp_path / "pki"
    r = run_cli("ca", "init", "--dir", d, "--key-type", "ecdsa-p256", "--cn", cn, "--no-passphrase")
    assert r.code == 3
    one_error_line(r, *needles)
    assert not d.exists()


def test_oversized_org_on_issue_names_ub_organization_name(pki: Path, passfile: Path) -> None:
    before = tree(pki)
    r = run_cli("ca", "issue", "c3", "--dir", pki, "--org", "o" * 65, "--passphrase-file", passfile)
    assert r.code == 3
    one_error_line(r, "--org is 65 characters", "ub-organization-name")
    assert tree(pki) == before


def test_a_64_character_cn_is_accepted(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    r = run_cli("ca", "init", "--dir", d, "--key-type", "ecdsa-p256", "--cn", "c" * 64, "--no-passphrase")
    assert r.code == 0, r.err
    assert "CN=" + "c" * 64 in r.out


@pytest.mark.parametrize(
    "command", [["ca", "crl"], ["ca", "issue", "c1"], ["ca", "revoke", "c1", "--reason", "superseded"]]
)
def test_an_act_on_a_missing_or_empty_folder_creates_nothing_there(
    command: list[str], tmp_path: Path, passfile: Path
) -> None:
    """'(created when missing)' holds for ca init only: other acts refuse and leave no folder or .lock."""
    missing, empty = tmp_path / "nope", tmp_path / "empty"
    empty.mkdir()
    for d in (missing, empty):
        r = run_cli(*command, "--dir", d, "--passphrase-file", passfile)
        assert r.code == 4
        one_error_line(r, "no root here", "ca init")
    assert not missing.exists()
    assert tree(empty) == []
    assert "created when missing" not in " ".join(run_cli(*command[:2], "--help").out.split())  # its help says so too


def test_only_ca_init_says_it_creates_the_folder() -> None:
    assert "created when missing" in " ".join(run_cli("ca", "init", "--help").out.split())


def test_release_fetch_removes_the_out_folder_it_created_when_it_fails(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "downloads"
    r = run_cli("release", "fetch", "1.8.6-asm.8", "--base-url", f"file://{tmp_path}/mirror", "--out", out)
    assert r.code == 3
    one_error_line(r, "not found")
    assert tree(tmp_path) == []


def test_bundle_create_without_a_passphrase_does_not_suggest_no_passphrase(
    pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9 item 10: bundle create / import have no --no-passphrase, so the error never offers it."""
    from tests.bundle_fixtures import new_keys

    monkeypatch.delenv("AIRGAP_PASSPHRASE", raising=False)
    keys = new_keys(tmp_path / "keys")
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", keys.signer, "--recipient", keys.recipient_pub,
        "--out", tmp_path / "c1.bundle",
    )  # fmt: skip
    assert r.code == 3
    line = one_error_line(r, "no passphrase", "--passphrase-file")
    assert "--no-passphrase" not in line


def test_verify_json_failures_are_one_json_document(pki: Path, tmp_path: Path) -> None:
    """Issue 9 item 10: 'bundle verify --json' and 'audit verify --json' print the error as JSON too."""
    import json

    from tests.bundle_fixtures import new_keys

    keys = new_keys(tmp_path / "keys")
    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"\0" * 2048)
    r = run_cli("bundle", "verify", junk, "--trust", keys.signer_pub, "--json")
    assert r.code in (1, 3)
    doc = json.loads(r.out)
    assert doc["verified"] is False and doc["exit_code"] == r.code and doc["bundle"] == str(junk)
    assert doc["error"] in one_error_line(r)
    r = run_cli("audit", "verify", pki, "--json")  # a PKI that keeps no log
    assert r.code in (1, 3)
    doc = json.loads(r.out)
    assert doc["verified"] is False and doc["exit_code"] == r.code and doc["error"] in one_error_line(r)
