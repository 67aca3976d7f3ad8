"""The act mechanism (airgap/offline/act.py): lock, log check, recovery that records itself.

The SIGKILL tests kill a real ``airgap`` process at its N-th atomic write
(``AIRGAP_TEST_KILL_AT_WRITE=N``, see airgap/core/crashpoint.py), for every N the command has,
and then check that ``audit verify`` tells the truth, no cluster vanished, and the next act works
(and records the recovery it needed).
"""

# ruff: noqa: F811  (fixtures imported from tests.act_fixtures)

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airgap.errors import InvalidInput, Refused, VerificationError
from airgap.offline import ceremony
from airgap.offline.act import pki_act
from airgap.offline.ca import CAStore
from airgap.offline.ceremony import verify_log
from airgap.offline.issue import issue_intermediates
from airgap.offline.layout import PkiLayout
from airgap.offline.rotate import begin_root_rotation, rotate_intermediate
from tests.act_fixtures import (  # noqa: F401  (fixtures)
    EC,
    ISSUE,
    Logged,
    _acts,
    _common,
    _kill_at_every_write,
    _logged_template,
    _next_act_works,
    _proc,
    logged,
)
from tests.conftest import PASSPHRASE
from tests.helpers import REPO, one_error_line, run_cli, tree


def test_sigkill_at_every_write_of_ca_issue_leaves_a_true_log_and_a_working_pki(
    logged: Logged, tmp_path: Path, passfile: Path
) -> None:
    partial = 0  # kill points between the two folders of the batch: one published, one not
    args = ["ca", "issue", "c3", "c5", *EC, *_common(logged, passfile)]
    for n, lg in _kill_at_every_write(logged, tmp_path, args):
        # every published certificate is in the log: audit verify passes right after the crash
        verify_log(lg.pki, [lg.officer.key.public_key()])
        assert {"c1", "c2"} <= set(PkiLayout(lg.pki).clusters()), n
        inv = CAStore(lg.pki).read_inventory()
        for c in ("c3", "c5"):
            if (lg.pki / c).exists():  # published: recorded in the inventory and the log
                assert inv.current(c) is not None, (n, c)
        partial += (lg.pki / "c3").exists() != (lg.pki / "c5").exists()
        _next_act_works(lg, "c4")
        for c in ("c3", "c5"):
            assert (lg.pki / c).exists() == (CAStore(lg.pki).read_inventory().current(c) is not None), (n, c)
    assert partial > 0, "no kill point fell between the two clusters of the batch"


def test_sigkill_at_every_write_of_ca_rotate_never_makes_the_cluster_vanish(
    logged: Logged, tmp_path: Path, passfile: Path
) -> None:
    old = (logged.pki / "c1" / "ca-cert.pem").read_bytes()
    for n, lg in _kill_at_every_write(logged, tmp_path, ["ca", "rotate", "c1", *_common(logged, passfile)]):
        assert (lg.pki / "c1" / "ca-cert.pem").exists(), n  # before any recovery
        assert "c1" in PkiLayout(lg.pki).clusters()
        verify_log(lg.pki, [lg.officer.key.public_key()])
        _next_act_works(lg, "c4")
        now = (lg.pki / "c1" / "ca-cert.pem").read_bytes()
        archived = list((lg.pki / "archive" / "c1").glob("*/ca-cert.pem")) if (lg.pki / "archive").exists() else []
        assert (now != old) == ("rotate" in _acts(lg.pki)), n  # finished exactly when the log recorded it
        if now == old:
            assert archived == [], n  # undone: nothing archived
        else:
            assert [p.read_bytes() for p in archived] == [old], n  # finished: the old one archived once


def test_sigkill_at_every_write_of_ca_rotate_root_and_finish(logged: Logged, tmp_path: Path, passfile: Path) -> None:
    for _n, lg in _kill_at_every_write(logged, tmp_path, ["ca", "rotate-root", *EC, *_common(logged, passfile)]):
        verify_log(lg.pki, [lg.officer.key.public_key()])
        _next_act_works(lg, "c4")
        layout = PkiLayout(lg.pki)
        if layout.next_root_cert.exists():  # the rotation took effect: every cluster trusts both roots
            assert all((lg.pki / c / "root-cert.pem").read_bytes() == layout.trust_pem() for c in layout.clusters())
    # step 3 on a folder whose clusters are all under the next root (and which has a CRL)
    begin_root_rotation(
        logged.pki,
        key_type="ecdsa-p256",
        days=3650,
        org="Istio",
        cn=None,
        passphrase=PASSPHRASE,
        officer=logged.officer,
    )
    for c in ("c1", "c2"):
        rotate_intermediate(
            logged.pki, c, days=365, passphrase=PASSPHRASE, key_passphrase=PASSPHRASE, officer=logged.officer
        )
    from airgap.offline.crl import refresh_crl

    refresh_crl(logged.pki, passphrase=PASSPHRASE, officer=logged.officer)
    new_root = (logged.pki / "next-root" / "root-cert.pem").read_bytes()
    args = ["ca", "rotate-root", "--finish", *_common(logged, passfile)]
    for n, lg in _kill_at_every_write(logged, tmp_path / "finish", args):
        verify_log(lg.pki, [lg.officer.key.public_key()])
        _next_act_works(lg, "c4")  # recovery finishes the moves: the next root signs c4
        assert (lg.pki / "root-cert.pem").read_bytes() in (new_root, (logged.pki / "root-cert.pem").read_bytes()), n
        if not (lg.pki / "next-root").exists():
            assert (lg.pki / "root-cert.pem").read_bytes() == new_root
            assert all((lg.pki / c / "root-cert.pem").read_bytes() == new_root for c in PkiLayout(lg.pki).clusters())


def test_sigkill_at_every_write_of_bundle_create(logged: Logged, tmp_path: Path, passfile: Path) -> None:
    import pyrage

    recipient = str(pyrage.x25519.Identity.generate().to_public())
    for n, lg in _kill_at_every_write(
        logged,
        tmp_path,
        [
            "bundle", "create", "c1", "--dir", "{pki}", "--sign-key", str(logged.key_file), "--recipient", recipient,
            "--passphrase-file", str(passfile), "--out", "{pki}/../c1.bundle",
        ],
    ):  # fmt: skip
        verify_log(lg.pki, [lg.officer.key.public_key()])
        _next_act_works(lg, "c4")
        assert n < 20


def test_acts_refuse_while_a_certificate_on_disk_has_no_log_entry(logged: Logged, tmp_path: Path) -> None:
    """Issue 9 item 3: a CA the log never recorded (e.g. an older airgap crashed) stops every act (exit 1)."""
    other = CAStore(tmp_path / "other")
    other.init_root(key_type="ecdsa-p256", days=3650, org="Istio", cn="Root CA", passphrase=None)
    other.issue(["c9"], **{**ISSUE, "passphrase": None, "key_passphrase": None})  # type: ignore[arg-type]
    shutil.copytree(tmp_path / "other" / "c9", logged.pki / "c9")
    before = tree(logged.pki)
    with pytest.raises(VerificationError, match=r"c9/ca-cert.pem .* has no entry in the log.*refusing every act"):
        issue_intermediates(logged.pki, ["c5"], **ISSUE, officer=logged.officer, notify=None)  # type: ignore[arg-type]
    with pytest.raises(VerificationError, match="has no entry in the log"):
        rotate_intermediate(
            logged.pki, "c9", days=30, passphrase=PASSPHRASE, key_passphrase=PASSPHRASE, officer=logged.officer
        )
    assert tree(logged.pki) == before
    with pytest.raises(VerificationError):
        verify_log(logged.pki)


def test_recovery_of_an_interrupted_rotation_is_recorded_in_the_log(logged: Logged) -> None:
    """A crash left .rotate-c1 and no journal: the next act removes it and says so in the log."""
    shutil.copytree(logged.pki / "c2", logged.pki / ".rotate-c1")
    issue_intermediates(logged.pki, ["c5"], **ISSUE, officer=logged.officer, notify=None)  # type: ignore[arg-type]
    entries = ceremony.read_entries(logged.pki)
    rec = [e for e in entries if e.act == "recover"]
    assert len(rec) == 1 and rec[0].params["cluster"] == "c1" and "removed" in rec[0].params["outcome"]
    assert not (logged.pki / ".rotate-c1").exists()
    verify_log(logged.pki, [logged.officer.key.public_key()])


def test_a_refused_ca_init_leaves_no_folder_or_lock(tmp_path: Path, passfile: Path) -> None:
    d = tmp_path / "new-pki"
    bad_log_key = tmp_path / "not-a-key"
    bad_log_key.write_text("garbage\n")
    r = run_cli("ca", "init", "--dir", d, *EC, "--passphrase-file", passfile, "--log-key", bad_log_key)
    assert r.code == 3
    assert not d.exists()
    # refused inside the act (a log whose entries were made for another folder): the folder it made goes
    store = CAStore(d)
    with pytest.raises(InvalidInput):
        store.init_root(key_type="dsa", days=10, org="Istio", cn="Root CA", passphrase=None)  # type: ignore[arg-type]
    assert not d.exists()


def test_ca_issue_on_a_missing_folder_creates_nothing(tmp_path: Path, passfile: Path) -> None:
    r = run_cli("ca", "issue", "c1", "--dir", tmp_path / "nope", *EC, "--passphrase-file", passfile)
    assert r.code == 4
    one_error_line(r.err, "no root here", "ca init")
    assert not (tmp_path / "nope").exists()


def test_a_second_act_says_it_waits_for_the_lock(pki: Path, passfile: Path) -> None:
    """Issue 9 item 11: 'ca issue' says on stderr that it waits for the PKI lock, then goes on."""
    with pki_act(pki, "test", None):
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airgap",
                "ca",
                "issue",
                "c7",
                "--dir",
                str(pki),
                *EC,
                "--passphrase-file",
                str(passfile),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert p.stderr is not None
        line = p.stderr.readline()  # blocks until it reports waiting (or ends: "")
        assert line.startswith(f"waiting for another act on {pki} (lock: {pki / '.lock'})"), line
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "Issued c7" in out


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(x) for x in text]
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_killed_ca_issue_leaves_no_worker_holding_the_lock(pki: Path, passfile: Path) -> None:
    """Issue 9 item 2: SIGKILL of 'ca issue' mid-pool: every worker exits and the next act gets the lock."""
    names = [f"w{i}" for i in range(12)]
    p = subprocess.Popen(
        [sys.executable, "-m", "airgap", "ca", "issue", *names, "--dir", str(pki), "--key-type", "rsa-4096",
         "--workers", "2", "--passphrase-file", str(passfile)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while len(workers) < 2 and time.monotonic() < deadline and p.poll() is None:
        workers = _children(p.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the pool never started"
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 60
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "a pool worker outlived its parent"
    fd = os.open(pki / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it any more
    finally:
        os.close(fd)
    r = run_cli("ca", "issue", "c8", "--dir", pki, *EC, "--passphrase-file", passfile)
    assert r.code == 0, r.err
    assert not [n for n in names if (pki / n).exists()]  # nothing was published by the killed run


def test_skip_existing_finishes_an_interrupted_fleet_and_lists_what_it_did(pki: Path, passfile: Path) -> None:
    """Issue 9 item 11: re-running a fleet with --skip-existing issues the missing clusters only."""
    key_before = (pki / "c1" / "ca-key.pem").read_bytes()
    r = run_cli("ca", "issue", "c1", "c3", "c2", "c4", "--dir", pki, *EC, "--passphrase-file", passfile)
    assert r.code == 4
    one_error_line(r.err, "c1: already exists", "--skip-existing")
    r = run_cli(
        "ca", "issue", "c1", "c3", "c2", "c4", "--dir", pki, *EC, "--passphrase-file", passfile, "--skip-existing"
    )
    assert r.code == 0, r.err
    assert "Skipped c1" in r.out and "Skipped c2" in r.out and "Issued c3" in r.out and "Issued c4" in r.out
    assert "2 intermediate(s) written" in r.err and "2 skipped" in r.err
    assert (pki / "c1" / "ca-key.pem").read_bytes() == key_before


def test_ca_issue_during_a_root_rotation_signs_with_the_next_root(pki: Path, passfile: Path) -> None:
    """Issue 9 item 11: a cluster issued between rotate-root and --finish is under the next root."""
    from airgap.core.x509 import load_cert_pem, load_certs_pem, signed_by

    begin_root_rotation(pki, key_type="ecdsa-p256", days=3650, org="Istio", cn=None, passphrase=PASSPHRASE)
    r = run_cli("ca", "issue", "c5", "--dir", pki, *EC, "--passphrase-file", passfile)
    assert r.code == 0, r.err
    assert "NEXT root" in r.err
    nxt = load_cert_pem((pki / "next-root" / "root-cert.pem").read_bytes(), source="next")
    cert = load_cert_pem((pki / "c5" / "ca-cert.pem").read_bytes(), source="c5")
    assert signed_by(cert, nxt)
    assert load_certs_pem((pki / "c5" / "cert-chain.pem").read_bytes(), source="chain")[-1] == nxt
    assert len(load_certs_pem((pki / "c5" / "root-cert.pem").read_bytes(), source="trust")) == 2


def test_the_next_root_does_not_default_to_the_current_subject(pki: Path, passfile: Path) -> None:
    r = run_cli("ca", "rotate-root", "--dir", pki, *EC, "--passphrase-file", passfile)
    assert r.code == 0, r.err
    from airgap.core.x509 import load_cert_pem

    old = load_cert_pem((pki / "root-cert.pem").read_bytes(), source="root")
    new = load_cert_pem((pki / "next-root" / "root-cert.pem").read_bytes(), source="next")
    assert old.subject != new.subject
    assert new.subject.rfc4514_string() == "CN=Root CA 2,O=Istio"


def test_ca_list_exits_1_when_a_chain_is_broken_or_a_key_does_not_match(
    pki: Path, passfile: Path, tmp_path: Path
) -> None:
    assert run_cli("ca", "list", "--dir", pki, "--passphrase-file", passfile).code == 0
    (pki / "c2" / "ca-key.pem").write_bytes((pki / "c1" / "ca-key.pem").read_bytes())
    r = run_cli("ca", "list", "--dir", pki, "--passphrase-file", passfile)
    assert r.code == 1
    one_error_line(r.err, "intermediate(s) failed their checks", "c2", "does not match")
    assert "c1" in r.out and "c2" in r.out  # the report is still printed
    r = run_cli("ca", "list", "--dir", pki, "--json")
    assert r.code == 0 and json.loads(r.out)["intermediates"][1]["key_check"] == "skipped"  # no passphrase: unchecked
    other = CAStore(tmp_path / "other")
    other.init_root(key_type="ecdsa-p256", days=3650, org="Istio", cn="Root CA", passphrase=None)
    other.issue(["c9"], **{**ISSUE, "passphrase": None, "key_passphrase": None})  # type: ignore[arg-type]
    shutil.copytree(tmp_path / "other" / "c9", pki / "c9")
    r = run_cli("ca", "list", "--dir", pki, "--json")
    assert r.code == 1
    one_error_line(r.err, "c9 (does not chain to the root; not recorded in inventory.json")


def test_reserved_cluster_names_get_their_own_message(pki: Path, passfile: Path) -> None:
    r = run_cli("ca", "issue", "archive", "--dir", pki, *EC, "--passphrase-file", passfile)
    assert r.code == 3
    one_error_line(r.err, "'archive'", "reserved for the PKI folder")
    assert "letters, digits" not in r.err


def test_a_journal_of_an_unknown_kind_refuses_with_a_clear_line(pki: Path) -> None:
    (pki / ".journal.json").write_text('{"format": 1, "kind": "mystery"}\n')
    with pytest.raises(InvalidInput, match="unknown act journal kind 'mystery'"):
        issue_intermediates(pki, ["c5"], **ISSUE, notify=None)  # type: ignore[arg-type]


def test_a_logged_folder_refuses_an_act_without_the_officer_key_before_recovery(logged: Logged) -> None:
    shutil.copytree(logged.pki / "c2", logged.pki / ".rotate-c1")
    with pytest.raises(Refused, match="keeps a ceremony log"):
        issue_intermediates(logged.pki, ["c5"], **ISSUE, notify=None)  # type: ignore[arg-type]
    assert (logged.pki / ".rotate-c1").exists()  # nothing recovered unrecorded
