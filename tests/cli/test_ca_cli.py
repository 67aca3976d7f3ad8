"""`airgap ca` and `airgap keys` through the CLI: exit codes, one stderr line, nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.helpers import REPO, one_error_line, run_cli, run_proc, tree, without_file_override

EC = ("--key-type", "ecdsa-p256")


def test_version_and_help() -> None:
    r = run_cli("--version")
    assert r.code == 0 and r.out.strip().startswith("airgap ")
    r = run_cli("ca", "issue", "--help")
    assert r.code == 0 and "Example:" in r.out and "outlive the root" in r.out


def test_init_issue_list_json(tmp_path: Path, passfile: Path) -> None:
    d = tmp_path / "deep" / "pki"
    r = run_cli("ca", "init", "--dir", d, *EC, "--passphrase-file", passfile)
    assert r.code == 0, r.err
    assert "Root CA created" in r.out
    r = run_cli("ca", "issue", "a", "b", "--dir", d, *EC, "--passphrase-file", passfile)
    assert r.code == 0, r.err
    r = run_cli("ca", "list", "--dir", d, "--json", "--passphrase-file", passfile)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert [i["cluster"] for i in doc["intermediates"]] == ["a", "b"]
    assert all(i["key_check"] == "passed" and i["status"] == "valid" for i in doc["intermediates"])
    assert len(doc["root"]["fingerprint"]) == 64 and doc["root"]["fingerprint"] == doc["root"]["fingerprint"].lower()
    r = run_cli("ca", "list", "--dir", d, "--json")
    assert {i["key_check"] for i in json.loads(r.out)["intermediates"]} == {"skipped"}
    r = run_cli("ca", "list", "--dir", d)
    assert r.code == 0 and "a" in r.out and "skipped" in r.out


def test_issue_without_root(tmp_path: Path, passfile: Path) -> None:
    r = run_cli("ca", "issue", "c1", "--dir", tmp_path / "pki", *EC, "--passphrase-file", passfile)
    assert r.code == 4
    one_error_line(r.err, "root-cert.pem", "ca init")
    assert not (tmp_path / "pki" / "c1").exists()


def test_wrong_passphrase(pki: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    before = tree(pki)
    r = run_cli("ca", "issue", "c3", "--dir", pki, *EC, "--passphrase-file", wrong)
    assert r.code == 3
    one_error_line(r.err, "root-key.pem", "wrong passphrase")
    assert tree(pki) == before


def test_corrupt_root_cert(pki: Path, passfile: Path) -> None:
    (pki / "root-cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
    before = tree(pki)
    r = run_cli("ca", "issue", "c3", "--dir", pki, *EC, "--passphrase-file", passfile)
    assert r.code == 3
    one_error_line(r.err, "root-cert.pem", "not a valid PEM certificate")
    assert tree(pki) == before


def test_corrupt_root_key(pki: Path, passfile: Path) -> None:
    (pki / "root-key.pem").write_text("garbage\n")
    r = run_cli("ca", "issue", "c3", "--dir", pki, *EC, "--passphrase-file", passfile)
    assert r.code == 3
    one_error_line(r.err, "root-key.pem", "not a valid PEM private key")
    assert not (pki / "c3").exists()


def test_existing_root_refused(pki: Path, passfile: Path) -> None:
    key_before = (pki / "root-key.pem").read_bytes()
    r = run_cli("ca", "init", "--dir", pki, *EC, "--passphrase-file", passfile)
    assert r.code == 4
    one_error_line(r.err, "already exists")
    assert (pki / "root-key.pem").read_bytes() == key_before


def test_existing_cluster_refused_and_batch_untouched(pki: Path, passfile: Path) -> None:
    before = tree(pki)
    key_before = (pki / "c1" / "ca-key.pem").read_bytes()
    r = run_cli("ca", "issue", "c9", "c1", "--dir", pki, *EC, "--passphrase-file", passfile)
    assert r.code == 4
    one_error_line(r.err, "c1", "already exists")
    assert tree(pki) == before  # c9 was not made either: all checks run before any key
    assert (pki / "c1" / "ca-key.pem").read_bytes() == key_before


@pytest.mark.parametrize("name", ["bad/name", "x-", "UPPER CASE", ".."])
def test_bad_cluster_name(pki: Path, passfile: Path, name: str) -> None:
    before = tree(pki)
    r = run_cli("ca", "issue", name, "--dir", pki, *EC, "--passphrase-file", passfile)
    assert r.code == 3
    one_error_line(r.err, "cluster name", "not valid")
    assert tree(pki) == before


def test_intermediate_outliving_root(tmp_path: Path, passfile: Path) -> None:
    d = tmp_path / "pki"
    assert run_cli("ca", "init", "--dir", d, *EC, "--days", "365", "--passphrase-file", passfile).code == 0
    before = tree(d)
    r = run_cli("ca", "issue", "c1", "--dir", d, *EC, "--days", "730", "--passphrase-file", passfile)
    assert r.code == 4
    one_error_line(r.err, "outlive the root")
    assert tree(d) == before


def test_unknown_key_type_and_usage_errors(tmp_path: Path, passfile: Path) -> None:
    r = run_cli("ca", "init", "--dir", tmp_path / "p", "--key-type", "dsa", "--passphrase-file", passfile)
    assert r.code == 3
    one_error_line(r.err, "unknown key type")
    assert run_cli("ca", "init").code == 2  # missing --dir: typer's own usage error
    assert not (tmp_path / "p").exists()


def test_no_passphrase_source_is_clear(tmp_path: Path) -> None:
    r = run_cli("ca", "init", "--dir", tmp_path / "p", *EC, env={"AIRGAP_PASSPHRASE": ""})
    assert r.code == 3
    one_error_line(r.err, "no passphrase")
    assert not (tmp_path / "p" / "root-key.pem").exists()


def test_unwritable_folder(tmp_path: Path, passfile: Path) -> None:
    """A real process that cannot write the folder (as root: with CAP_DAC_OVERRIDE dropped)."""
    d = tmp_path / "ro"
    d.mkdir()
    os.chmod(d, 0o555)
    prefix = without_file_override()
    for target in (d / "pki", d):  # a folder to create inside it, and the folder itself
        p = subprocess.run(
            [
                *prefix,
                sys.executable,
                "-m",
                "airgap",
                "ca",
                "init",
                "--dir",
                str(target),
                *EC,
                "--passphrase-file",
                str(passfile),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert p.returncode == 3, p.stderr
        one_error_line(p.stderr, "not writable")
        assert tree(d) == []


def test_keys_new_signing(tmp_path: Path, passfile: Path) -> None:
    r = run_cli("keys", "new", "officer", "--out", tmp_path / "k", "--passphrase-file", passfile)
    assert r.code == 0, r.err
    assert (tmp_path / "k" / "officer.key").stat().st_mode & 0o777 == 0o600
    key_text = (tmp_path / "k" / "officer.key").read_text()
    assert "ENCRYPTED" in key_text and key_text not in r.out + r.err
    before = (tmp_path / "k" / "officer.key").read_bytes()
    r = run_cli("keys", "new", "officer", "--out", tmp_path / "k", "--passphrase-file", passfile)
    assert r.code == 4
    one_error_line(r.err, "officer.key", "already exists")
    assert (tmp_path / "k" / "officer.key").read_bytes() == before
    r = run_cli("keys", "new", "../evil", "--out", tmp_path / "k", "--no-passphrase")
    assert r.code == 3
    one_error_line(r.err, "key name")


def test_offline_commands_import_no_network_libraries() -> None:
    for argv in (["ca", "--help"], ["--help"], ["keys", "--help"], ["--version"]):
        p = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "airgap", *argv], capture_output=True, text=True, cwd=REPO
        )
        assert p.returncode == 0
        imported = {line.split("|")[-1].strip().split(".")[0] for line in p.stderr.splitlines() if "|" in line}
        assert "airgap" in imported  # the probe is live
        assert not imported & {"requests", "kubernetes", "urllib3"}, argv


def test_sigkill_mid_issue_leaves_no_partial_file(tmp_path: Path, passfile: Path) -> None:
    d = tmp_path / "pki"
    assert run_cli("ca", "init", "--dir", d, *EC, "--passphrase-file", passfile).code == 0
    names = [f"k{i:03d}" for i in range(400)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airgap",
            "ca",
            "issue",
            *names,
            "--dir",
            str(d),
            *EC,
            "--passphrase-file",
            str(passfile),
            "--workers",
            "1",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len([p for p in d.iterdir() if p.name.startswith("k")]) < 3:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in d.iterdir() if p.name.startswith("k"))
    assert 0 < len(done) < len(names), "the kill must land mid-run"
    # Every published cluster folder is complete and readable.
    for name in done:
        files = sorted(p.name for p in (d / name).iterdir())
        assert files == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"], name
        x509.load_pem_x509_certificate((d / name / "ca-cert.pem").read_bytes())
        assert len(x509.load_pem_x509_certificates((d / name / "cert-chain.pem").read_bytes())) == 2
    json.loads((d / "inventory.json").read_text())  # never torn
    # A rerun for the rest completes and cleans the temp left by the kill.
    rest = [n for n in names[: len(done) + 3] if n not in done]
    r = run_cli("ca", "issue", *rest, "--dir", d, *EC, "--passphrase-file", passfile)
    assert r.code == 0, r.err
    assert not [p for p in d.iterdir() if p.name.startswith(".airgap-tmp-")]
    r = run_proc("ca", "list", "--dir", d, "--json", "--passphrase-file", passfile)
    rows = json.loads(r.out)["intermediates"]
    assert all(i["key_check"] == "passed" for i in rows) and len(rows) == len(done) + len(rest)


# -- revoke, crl, rotate, rotate-root, list --expiring-within (issue 6) --------------------------


def test_revoke_and_crl_cli(pki: Path, passfile: Path) -> None:
    pf = ("--passphrase-file", passfile)
    r = run_cli("ca", "revoke", "c1", "--reason", "key-compromise", "--dir", pki, *pf)
    assert r.code == 0, r.err
    assert "Revoked c1" in r.out and "(keyCompromise)" in r.out and "CRL #1" in r.out
    assert (pki / "ca-crl.pem").exists() and (pki / "c2" / "ca-crl.pem").exists()
    before = tree(pki)
    r = run_cli("ca", "revoke", "c1", "--reason", "keyCompromise", "--dir", pki, *pf)
    assert r.code == 4
    one_error_line(r.err, "is already revoked")
    r = run_cli("ca", "revoke", "c2", "--reason", "because", "--dir", pki, *pf)
    assert r.code == 3
    one_error_line(r.err, "unknown revocation reason 'because'")
    r = run_cli("ca", "revoke", "c2", "--reason", "superseded", "--dir", pki, "--next-update-days", "0", *pf)
    assert r.code == 2 and "--next-update-days" in r.err and "Traceback" not in r.err
    r = run_cli("ca", "revoke", "c2", "--dir", pki, *pf)
    assert r.code == 2
    assert tree(pki) == before
    r = run_cli("ca", "crl", "--dir", pki, "--next-update-days", "7", *pf)
    assert r.code == 0 and "CRL #2" in r.out and "1 revoked" in r.out
    r = run_cli("ca", "list", "--dir", pki, "--json")
    rows = {i["cluster"]: i for i in json.loads(r.out)["intermediates"]}
    assert rows["c1"]["status"] == "revoked" and rows["c2"]["status"] == "valid"


def test_rotate_cli(pki: Path, passfile: Path) -> None:
    pf = ("--passphrase-file", passfile)
    old = (pki / "c1" / "ca-cert.pem").read_bytes()
    r = run_cli("ca", "rotate", "c1", "--dir", pki, "--days", "100", *pf)
    assert r.code == 0, r.err
    assert r.out.startswith("Rotated c1: ") and "archived in" in r.out
    assert (pki / "c1" / "ca-cert.pem").read_bytes() != old
    assert any((d / "ca-cert.pem").read_bytes() == old for d in (pki / "archive" / "c1").iterdir())
    before = tree(pki)
    r = run_cli("ca", "rotate", "c9", "--dir", pki, *pf)
    assert r.code == 4
    one_error_line(r.err, "no intermediate to rotate", "ca issue c9")
    r = run_cli("ca", "rotate", "c1", "--dir", pki, "--days", "20000", *pf)
    assert r.code == 4
    one_error_line(r.err, "would outlive the root")
    r = run_cli("ca", "rotate", "c1", "--dir", pki, "--passphrase-file", pki / "c1" / "ca-cert.pem")
    assert r.code == 3
    one_error_line(r.err, "root-key.pem", "wrong passphrase")
    assert [x for x in tree(pki) if x != ".lock"] == [x for x in before if x != ".lock"]


def test_rotate_root_cli(pki: Path, passfile: Path) -> None:
    pf = ("--passphrase-file", passfile)
    r = run_cli("ca", "rotate-root", "--dir", pki, *EC, "--cn", "Root CA 2", *pf)
    assert r.code == 0, r.err
    assert "both roots" in r.out
    assert len(x509.load_pem_x509_certificates((pki / "c1" / "root-cert.pem").read_bytes())) == 2
    r = run_cli("ca", "list", "--dir", pki, "--json")
    assert "Root CA 2" in json.loads(r.out)["next_root"]["subject"]
    r = run_cli("ca", "rotate-root", "--dir", pki, "--finish", *pf)
    assert r.code == 4
    one_error_line(r.err, "c1, c2 still have an intermediate under the old root", "ca rotate c1")
    for c in ("c1", "c2"):
        r = run_cli("ca", "rotate", c, "--dir", pki, "--days", "100", *pf)
        assert r.code == 0 and "signed by the NEXT root" in r.out, r.err
    r = run_cli("ca", "rotate-root", "--dir", pki, "--finish", *pf)
    assert r.code == 0, r.err
    root = x509.load_pem_x509_certificate((pki / "root-cert.pem").read_bytes())
    assert "Root CA 2" in root.subject.rfc4514_string()
    assert x509.load_pem_x509_certificates((pki / "c2" / "root-cert.pem").read_bytes()) == [root]
    r = run_cli("ca", "rotate-root", "--dir", pki, "--finish", *pf)
    assert r.code == 4
    one_error_line(r.err, "no root rotation in progress")


def test_a_lost_next_root_folder_is_a_problem_and_no_bundle_carries_its_root(
    pki: Path, passfile: Path, tmp_path: Path
) -> None:
    """After rotate-root every cluster's root-cert.pem trusts A and B. If next-root/ (B's key) is
    gone, whoever holds it could issue under B: ca list says so and bundle create refuses."""
    pf = ("--passphrase-file", passfile)
    assert run_cli("ca", "rotate-root", "--dir", pki, *EC, "--cn", "Root CA 2", *pf).code == 0
    b = x509.load_pem_x509_certificates((pki / "c1" / "root-cert.pem").read_bytes())[1]
    b_sha = b.fingerprint(hashes.SHA256()).hex()
    shutil.move(pki / "next-root", tmp_path / "stolen")
    r = run_cli("ca", "list", "--dir", pki)
    assert r.code == 1
    one_error_line(r.err, f"root-cert.pem of c1, c2 trusts root sha256 {b_sha}", "lost or moved next-root/")
    keys = tmp_path / "keys"
    assert run_cli("keys", "new", "officer", "--out", keys, *pf).code == 0
    assert run_cli("keys", "new", "op", "--kind", "recipient", "--out", keys, "--no-passphrase").code == 0
    out = tmp_path / "c1.bundle"
    r = run_cli("bundle", "create", "c1", "--dir", pki, "--sign-key", keys / "officer.key", "--recipient",
                keys / "op.pub", "--out", out, *pf)  # fmt: skip
    assert r.code == 4
    one_error_line(r.err, "c1/root-cert.pem: carries root sha256", b_sha, "never sealed")
    assert not out.exists()
    shutil.move(tmp_path / "stolen", pki / "next-root")
    assert run_cli("ca", "list", "--dir", pki).code == 0


def test_list_expiring_within_for_cron(pki: Path) -> None:
    r = run_cli("ca", "list", "--dir", pki, "--expiring-within", "30")
    assert r.code == 0, r.err
    r = run_cli("ca", "list", "--dir", pki, "--expiring-within", "800", "--json")
    assert r.code == 1
    one_error_line(r.err, "2 certificate(s) expire within 800 days", "c1 (", "c2 (")
    doc = json.loads(r.out)  # the report is still printed for the cron mail
    assert [c["what"] for c in doc["expiring_within"]["certificates"]] == ["c1", "c2"]
    r = run_cli("ca", "list", "--dir", pki, "--expiring-within", "4000")
    assert r.code == 1
    one_error_line(r.err, "3 certificate(s)", "root (")
    r = run_cli("ca", "list", "--dir", pki, "--expiring-within", "-1")
    assert r.code == 2 and "--expiring-within" in r.err and "Traceback" not in r.err


def test_unreadable_passphrase_file_is_exit_3(tmp_path: Path, passfile: Path) -> None:
    """Typer's own readable check (exit 2) is off: the command reports it, exit 3, one line."""
    pw = tmp_path / "pw"
    pw.write_bytes(passfile.read_bytes())
    pw.chmod(0)
    prefix = without_file_override()
    p = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-m",
            "airgap",
            "ca",
            "init",
            "--dir",
            str(tmp_path / "pki"),
            *EC,
            "--passphrase-file",
            str(pw),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert p.returncode == 3, p.stderr
    one_error_line(p.stderr, str(pw), "cannot read passphrase file")
    assert not (tmp_path / "pki" / "root-key.pem").exists()


def test_ca_list_piped_is_never_cut_to_80_columns(pki: Path) -> None:
    """Issue 9 item 11: 'ca list | cat' and cron mail get whole rows and whole fingerprints."""
    from tests.helpers import run_proc

    r = run_proc("ca", "list", "--dir", pki, env={"COLUMNS": "80"})
    assert r.code == 0, r.err
    doc = json.loads(run_cli("ca", "list", "--dir", pki, "--json").out)
    for row in doc["intermediates"]:
        line = next(ln for ln in r.out.splitlines() if f" {row['cluster']} " in ln)
        assert row["fingerprint"] in line and row["not_after"] in line
    assert "…" not in r.out
