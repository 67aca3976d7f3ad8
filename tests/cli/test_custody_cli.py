"""Split custody through the CLI: 2-of-3 init, acts with --share, refusals, rekey, status, the log."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import shamir_mnemonic

from airgap.offline.custody import derive_passphrase
from tests.helpers import one_error_line, openssl, run_cli, tree
from tests.softhsm import SoftHSM

EC = ("--key-type", "ecdsa-p256")
NAMES = ("alice", "bob", "carol", "dan", "erin", "mallory")


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Custodians' identities (keys new --kind recipient), a stranger (mallory) and the officer's log key."""
    d = tmp_path_factory.mktemp("people")
    for n in NAMES:
        assert run_cli("keys", "new", n, "--kind", "recipient", "--out", d, "--no-passphrase").code == 0
    (d / "guarded-pass.txt").write_text("guarded custodian\n")
    r = run_cli(
        "keys", "new", "guarded", "--kind", "recipient", "--out", d, "--passphrase-file", d / "guarded-pass.txt"
    )
    assert r.code == 0, r.err
    assert run_cli("keys", "new", "officer", "--out", d, "--no-passphrase").code == 0
    return d


def _custodians(people: Path, *names: str) -> list[str]:
    out: list[str] = []
    for n in names:
        out += ["--custodian", str(people / f"{n}.pub")]
    return out


def _shares(people: Path, *names: str) -> list[str]:
    out: list[str] = []
    for n in names:
        out += ["--share", str(people / f"{n}.key")]
    return out


def _log(people: Path) -> list[str]:
    return ["--log-key", str(people / "officer.key")]


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory, people: Path) -> Path:
    d = tmp_path_factory.mktemp("custody-template") / "pki"
    r = run_cli(
        "ca",
        "init",
        "--dir",
        d,
        *EC,
        "--custody",
        "2-of-3",
        *_custodians(people, "alice", "bob", "carol"),
        *_log(people),
    )
    assert r.code == 0, r.err
    return d


@pytest.fixture
def pki(tmp_path: Path, _template: Path) -> Path:
    d = tmp_path / "pki"
    shutil.copytree(_template, d)
    return d


def _entries(pki: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (pki / "ceremony.log").read_text().splitlines()]


def _words(share: Path, identity: Path) -> str:
    return subprocess.run(
        ["age", "-d", "-i", str(identity), str(share)], capture_output=True, check=True
    ).stdout.decode()


def test_init_2_of_3(_template: Path, people: Path) -> None:
    pki = _template
    assert sorted(p.name for p in (pki / "custody").iterdir()) == [
        "custody.json",
        "share-1.age",
        "share-2.age",
        "share-3.age",
    ]
    inv = json.loads((pki / "inventory.json").read_bytes())
    assert (inv["custody"]["threshold"], inv["custody"]["count"]) == (2, 3)
    assert [s["recipient"] for s in inv["custody"]["shares"]] == [
        (people / f"{n}.pub").read_text().strip() for n in ("alice", "bob", "carol")
    ]
    key_create = next(e for e in _entries(pki) if e["act"] == "key-create")
    params = key_create["params"]
    assert isinstance(params, dict) and "custody" not in params
    assert params["custody_set"]["threshold"] == 2 and len(params["custody_set"]["shares"]) == 3
    # Interop: two custodians' words (age CLI) combine with the reference library into the secret
    # whose hex opens root-key.pem with openssl.
    words = [_words(pki / "custody" / f"share-{k}.age", people / f"{n}.key") for k, n in ((1, "alice"), (3, "carol"))]
    secret = shamir_mnemonic.combine_mnemonics([w.strip() for w in words])
    pw = derive_passphrase(secret).decode()
    out = openssl("pkey", "-in", str(pki / "root-key.pem"), "-passin", f"pass:{pw}", "-noout")
    assert out.returncode == 0
    bad = openssl("pkey", "-in", str(pki / "root-key.pem"), "-passin", "pass:" + "0" * 64, "-noout", check=False)
    assert bad.returncode != 0
    assert (pki / "root-key.pem").stat().st_mode & 0o777 == 0o600


def test_issue_with_two_shares_names_them_in_the_log(pki: Path, people: Path) -> None:
    r = run_cli(
        "ca", "issue", "c1", "--dir", pki, *EC, "--no-passphrase", *_shares(people, "carol", "alice"), *_log(people)
    )
    assert r.code == 0, r.err
    assert (pki / "c1" / "ca-cert.pem").exists()
    issue = [e for e in _entries(pki) if e["act"] == "issue"]
    assert len(issue) == 1
    assert issue[0]["params"]["custody"]["shares"] == [1, 3]  # type: ignore[index]
    assert run_cli("audit", "verify", pki, "--trust", people / "officer.pub").code == 0


@pytest.mark.parametrize(
    ("names", "needles"),
    [
        (("alice",), ("1 distinct share(s) given (shares: 1)", "2 of 3 needed: 1 more")),
        (("bob", "bob"), ("1 distinct share(s) given (shares: 2)", "1 more")),
        ((), ("0 distinct share(s) given (shares: none)", "2 more")),
        (("alice", "mallory"), ("mallory.key: could not open any custody share", "share-1.age", "share-3.age")),
    ],
    ids=["one-share", "same-share-twice", "no-share", "wrong-identity"],
)
def test_issue_refused_nothing_written(
    pki: Path, people: Path, names: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    before = tree(pki)
    log = (pki / "ceremony.log").read_bytes()
    r = run_cli("ca", "issue", "c1", "--dir", pki, *EC, "--no-passphrase", *_shares(people, *names), *_log(people))
    assert r.code == 3
    one_error_line(r.err, *needles)
    assert tree(pki) == before and (pki / "ceremony.log").read_bytes() == log


def test_tampered_share_refused(pki: Path, people: Path) -> None:
    f = pki / "custody" / "share-2.age"
    f.write_bytes(f.read_bytes()[:-1] + bytes([f.read_bytes()[-1] ^ 1]))
    r = run_cli(
        "ca", "issue", "c1", "--dir", pki, *EC, "--no-passphrase", *_shares(people, "alice", "bob"), *_log(people)
    )
    assert r.code == 1
    one_error_line(r.err, "share-2.age", "SHA-256")
    assert not (pki / "c1").exists()
    r = run_cli("ca", "custody", "status", "--dir", pki)
    assert r.code == 1 and "share-2.age: CHANGED" in r.err


def test_share_on_a_root_without_custody(tmp_path: Path, people: Path, passfile: Path) -> None:
    d = tmp_path / "plain"
    assert run_cli("ca", "init", "--dir", d, *EC, "--passphrase-file", passfile).code == 0
    before = tree(d)
    r = run_cli("ca", "issue", "c1", "--dir", d, *EC, "--passphrase-file", passfile, *_shares(people, "alice"))
    assert r.code == 3
    one_error_line(r, "not under split custody")
    assert tree(d) == before
    r = run_cli("ca", "custody", "status", "--dir", d)
    assert r.code == 4
    one_error_line(r, "not under split custody")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--custody", "2-of-3", "alice", "bob"), "needs 3 --custodian, got 2"),
        (("--custody", "2-of-3", "alice", "bob", "alice"), "given twice"),
        (("--custody", "1-of-3", "alice", "bob", "carol"), "1-of-N"),
        (("--custody", "two-of-3", "alice", "bob", "carol"), "expected M-of-N"),
        (("--custody", "2-of-2", "alice", "nobody"), "nobody.pub"),
        (("", "alice", "bob"), "--custodian needs --custody"),
        (("--custody", "2-of-2", "alice", "bob", "--no-passphrase"), "cannot be used together"),
    ],
    ids=["count", "twice", "one-of-n", "spec", "missing-pub", "no-spec", "no-passphrase"],
)
def test_init_refusals(tmp_path: Path, people: Path, args: tuple[str, ...], needle: str) -> None:
    d = tmp_path / "pki"
    cli: list[str] = []
    for a in args:
        if a.startswith("--") or a[:1].isdigit() or a.startswith("two"):
            cli.append(a)
        elif a:
            cli += ["--custodian", str(people / f"{a}.pub")]
    r = run_cli("ca", "init", "--dir", d, *EC, *cli)
    assert r.code == 3, r.err
    one_error_line(r, needle)
    assert tree(d) == []


def test_rekey_to_3_of_5_then_old_shares_refused(pki: Path, people: Path) -> None:
    old_words = {
        k: _words(pki / "custody" / f"share-{k}.age", people / f"{n}.key").strip()
        for k, n in ((1, "alice"), (2, "bob"))
    }
    old_pw = derive_passphrase(shamir_mnemonic.combine_mnemonics(list(old_words.values()))).decode()
    r = run_cli(
        "ca",
        "custody",
        "rekey",
        "--dir",
        pki,
        *_shares(people, "bob", "alice"),
        "--custody",
        "3-of-5",
        *_custodians(people, "alice", "bob", "carol", "dan", "erin"),
        *_log(people),
    )
    assert r.code == 0, r.err
    assert "now 3 of 5" in r.out and "shares 1, 2 took part" in r.out
    rekey = [e for e in _entries(pki) if e["act"] == "custody-rekey"]
    assert len(rekey) == 1
    params = rekey[0]["params"]
    assert isinstance(params, dict)
    assert params["custody"]["shares"] == [1, 2] and params["custody"]["count"] == 3
    assert params["new_custody"]["threshold"] == 3 and len(params["new_custody"]["shares"]) == 5
    assert not (pki / "custody.next").exists() and not (pki / "custody.old").exists()
    # The old secret no longer opens the root key (openssl), and the old words are another set's.
    out = openssl("pkey", "-in", str(pki / "root-key.pem"), "-passin", f"pass:{old_pw}", "-noout", check=False)
    assert out.returncode != 0
    from airgap.errors import InvalidInput
    from airgap.offline import custody

    with pytest.raises(InvalidInput, match="another set"):
        custody.open_root_passphrase(pki, [], typed=[("old words", w) for w in old_words.values()])
    # Two custodians were enough before; now three are needed.
    before = tree(pki)
    r = run_cli(
        "ca", "issue", "c1", "--dir", pki, *EC, "--no-passphrase", *_shares(people, "alice", "bob"), *_log(people)
    )
    assert r.code == 3
    one_error_line(r, "2 distinct share(s)", "3 of 5 needed: 1 more")
    assert tree(pki) == before
    r = run_cli(
        "ca", "issue", "c1", "--dir", pki, *EC, "--no-passphrase", *_shares(people, "erin", "dan", "bob"), *_log(people)
    )
    assert r.code == 0, r.err
    assert next(e for e in _entries(pki) if e["act"] == "issue")["params"]["custody"]["shares"] == [2, 4, 5]  # type: ignore[index]
    r = run_cli("ca", "custody", "status", "--dir", pki, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert (doc["threshold"], doc["count"]) == (3, 5) and {s["state"] for s in doc["shares"]} == {"intact"}
    assert doc["protects"] == "root-key.pem" and doc["rekey_interrupted"] is False
    assert json.loads((pki / "inventory.json").read_bytes())["custody"]["identifier"] == doc["identifier"]
    assert run_cli("audit", "verify", pki, "--trust", people / "officer.pub").code == 0


def test_rekey_refused_with_too_few_shares_nothing_written(pki: Path, people: Path) -> None:
    before = tree(pki)
    shares_before = {p.name: p.read_bytes() for p in (pki / "custody").iterdir()}
    r = run_cli(
        "ca",
        "custody",
        "rekey",
        "--dir",
        pki,
        *_shares(people, "alice"),
        "--custody",
        "2-of-2",
        *_custodians(people, "dan", "erin"),
        *_log(people),
    )
    assert r.code == 3
    one_error_line(r, "1 more")
    assert tree(pki) == before
    assert {p.name: p.read_bytes() for p in (pki / "custody").iterdir()} == shares_before


def test_passphrase_protected_custodian(tmp_path: Path, people: Path) -> None:
    d = tmp_path / "pki"
    r = run_cli("ca", "init", "--dir", d, *EC, "--custody", "2-of-2", *_custodians(people, "guarded", "bob"))
    assert r.code == 0, r.err
    r = run_cli("ca", "issue", "c1", "--dir", d, *EC, "--no-passphrase", *_shares(people, "guarded", "bob"))
    assert r.code == 3
    one_error_line(r, "guarded.key", "passphrase-protected", "--share-passphrase-file")
    r = run_cli(
        "ca",
        "issue",
        "c1",
        "--dir",
        d,
        *EC,
        "--no-passphrase",
        *_shares(people, "guarded", "bob"),
        "--share-passphrase-file",
        people / "guarded-pass.txt",
    )
    assert r.code == 0, r.err


def test_crl_revoke_rotate_and_root_rotation_with_shares(pki: Path, people: Path) -> None:
    sh = _shares(people, "alice", "bob")
    assert run_cli("ca", "issue", "c1", "--dir", pki, *EC, "--no-passphrase", *sh, *_log(people)).code == 0
    r = run_cli("ca", "crl", "--dir", pki, *_shares(people, "alice"), *_log(people))
    assert r.code == 3
    one_error_line(r, "1 more")
    r = run_cli("ca", "crl", "--dir", pki, *sh, *_log(people))
    assert r.code == 0, r.err
    r = run_cli("ca", "revoke", "c1", "--reason", "superseded", "--dir", pki, *sh, *_log(people))
    assert r.code == 0, r.err
    r = run_cli("ca", "rotate", "c1", "--dir", pki, "--no-passphrase", *_shares(people, "carol", "bob"), *_log(people))
    assert r.code == 0, r.err
    r = run_cli("ca", "rotate-root", "--dir", pki, *EC, *sh, *_log(people))
    assert r.code == 0, r.err
    r = run_cli(
        "ca",
        "custody",
        "rekey",
        "--dir",
        pki,
        *sh,
        "--custody",
        "2-of-2",
        *_custodians(people, "dan", "erin"),
        *_log(people),
    )
    assert r.code == 4
    one_error_line(r, "root rotation is in progress")
    r = run_cli("ca", "rotate", "c1", "--dir", pki, "--no-passphrase", *sh, *_log(people))
    assert r.code == 0, r.err
    r = run_cli("ca", "rotate-root", "--dir", pki, "--finish", *sh, *_log(people))
    assert r.code == 0, r.err
    # after the root rotation the new root key opens with the same shares
    r = run_cli(
        "ca", "issue", "c2", "--dir", pki, *EC, "--no-passphrase", *_shares(people, "carol", "alice"), *_log(people)
    )
    assert r.code == 0, r.err
    acts = {e["act"]: e["params"] for e in _entries(pki)}
    for act in ("crl", "revoke", "rotate", "root-rotation-begin", "root-rotation-finish", "issue"):
        matching = [e for e in _entries(pki) if e["act"] == act]
        assert matching, (act, sorted(acts))
        assert all("shares" in e["params"]["custody"] for e in matching), act  # type: ignore[index, operator]
    assert run_cli("audit", "verify", pki, "--trust", people / "officer.pub").code == 0


def _on_tty(argv: list[str], answers: list[bytes], timeout: float = 60) -> tuple[int, bytes]:
    """Run ``python -m airgap ARGV`` on a pty, typing one answer at each prompt (a line ending ': ')."""
    import os
    import pty
    import select
    import sys
    import time

    from tests.helpers import REPO

    env = {k: v for k, v in os.environ.items() if k != "AIRGAP_PASSPHRASE"}
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-m", "airgap", *argv], env)
    screen, pending = b"", list(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            screen += data
            if pending and screen.endswith(b": "):
                os.write(fd, pending.pop(0) + b"\n")
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), screen


def test_typed_share_words_on_a_terminal(pki: Path, people: Path) -> None:
    """Carol has only her paper: she types the words (not echoed); Alice brings her identity file."""
    words = _words(pki / "custody" / "share-3.age", people / "carol.key").strip()
    argv = [
        "ca",
        "issue",
        "c1",
        "--dir",
        str(pki),
        *EC,
        "--no-passphrase",
        "--share",
        str(people / "alice.key"),
        "--type-share",
        "--log-key",
        str(people / "officer.key"),
    ]
    code, screen = _on_tty(argv, [words.encode()])
    assert code == 0, screen
    assert b"words of one share (1/1): " in screen and words.split()[4].encode() not in screen
    assert next(e for e in _entries(pki) if e["act"] == "issue")["params"]["custody"]["shares"] == [1, 3]  # type: ignore[index]
    # a mistyped word is refused by the SLIP-39 checksum, nothing written
    bad = words.split()
    bad[7] = "academic" if bad[7] != "academic" else "acid"
    argv[2] = "c2"
    code, screen = _on_tty(argv, [" ".join(bad).encode()])
    assert code == 3 and b"typed share 1: not a valid SLIP-39 share" in screen
    assert not (pki / "c2").exists()


def test_type_share_needs_a_terminal(pki: Path, people: Path) -> None:
    r = run_cli("ca", "issue", "c1", "--dir", pki, *EC, "--no-passphrase", *_shares(people, "alice"), "--type-share")
    assert r.code == 3
    one_error_line(r, "--type-share needs a terminal")
    assert not (pki / "c1").exists()


def test_rekey_killed_at_every_write_leaves_one_working_set(tmp_path: Path, _template: Path, people: Path) -> None:
    """SIGKILL at the N-th publish of 'ca custody rekey' (N = 1, 2, … until it completes): afterwards
    exactly one of the old set (alice+bob) and the new set (dan+erin) opens the root, and the log verifies."""
    from tests.helpers import run_proc

    rekey = [
        "ca",
        "custody",
        "rekey",
        "--custody",
        "2-of-2",
        *_custodians(people, "dan", "erin"),
        *_shares(people, "alice", "bob"),
        *_log(people),
    ]
    outcomes = []
    for n in range(1, 40):
        pki = tmp_path / f"pki-{n}"
        shutil.copytree(_template, pki)
        r = run_proc(*rekey, "--dir", pki, env={"AIRGAP_TEST_KILL_AT_WRITE": str(n)})
        if r.code == 0:
            outcomes.append("completed")
            break
        assert r.code == -9, (n, r.err)
        old = run_cli("ca", "crl", "--dir", pki, *_shares(people, "alice", "bob"), *_log(people))
        new = run_cli("ca", "crl", "--dir", pki, *_shares(people, "dan", "erin"), *_log(people))
        assert sorted([old.code, new.code]) == [0, 3], (n, old.err, new.err)
        outcomes.append("old" if old.code == 0 else "new")
        assert not (pki / "custody.next").exists() and not (pki / "custody.old").exists()
        assert run_cli("ca", "custody", "status", "--dir", pki).code == 0
        assert run_cli("audit", "verify", pki, "--trust", people / "officer.pub").code == 0, n
    assert outcomes[-1] == "completed" and "old" in outcomes and "new" in outcomes, outcomes


def test_pkcs11_root_pin_under_custody(tmp_path: Path, people: Path, softhsm: SoftHSM) -> None:
    """A token-held root: its user PIN becomes the custody secret; the old PIN stops working."""
    from airgap.errors import InvalidInput
    from airgap.offline.pkcs11 import TokenRef, open_key
    from tests.softhsm import CUSTODY_TOKEN

    d = tmp_path / "pki"
    label = softhsm.key_label()
    token = ("--pkcs11-module", str(softhsm.module), "--token-label", CUSTODY_TOKEN, "--key-label", label)
    ref = TokenRef(str(softhsm.module), CUSTODY_TOKEN, label)
    # Refused after the PIN was changed (a custody/ folder is left from elsewhere): the PIN is
    # changed back and the key destroyed, so the token is as it was.
    (d / "custody").mkdir(parents=True)
    r = run_cli(
        "ca",
        "init",
        "--dir",
        d,
        *EC,
        *token,
        "--pin-file",
        softhsm.pin_file,
        "--custody",
        "2-of-2",
        *_custodians(people, "alice", "bob"),
    )
    assert r.code == 4
    one_error_line(r, "custody", "already exists")
    with pytest.raises(InvalidInput, match="no such private key"), open_key(ref, softhsm.pin):
        pass  # the old PIN still logs in (else: 'wrong PIN'), and the key is gone
    (d / "custody").rmdir()
    r = run_cli(
        "ca",
        "init",
        "--dir",
        d,
        *EC,
        *token,
        "--pin-file",
        softhsm.pin_file,
        "--custody",
        "2-of-3",
        *_custodians(people, "alice", "bob", "carol"),
        *_log(people),
    )
    assert r.code == 0, r.err
    assert "its user PIN under split custody: 2 of 3" in r.out
    assert not (d / "root-key.pem").exists() and (d / "root-key.pkcs11.json").exists()
    with pytest.raises(InvalidInput, match="wrong PIN"), open_key(ref, softhsm.pin):
        pass
    words = [
        _words(d / "custody" / f"share-{k}.age", people / f"{n}.key").strip() for k, n in ((1, "alice"), (2, "bob"))
    ]
    with open_key(ref, derive_passphrase(shamir_mnemonic.combine_mnemonics(words)).decode()) as key:
        assert key.key_id  # the PIN the shares recover logs in
    r = run_cli(
        "ca", "issue", "c1", "--dir", d, *EC, "--no-passphrase", *_shares(people, "alice", "carol"), *_log(people)
    )
    assert r.code == 0, r.err
    assert next(e for e in _entries(d) if e["act"] == "issue")["params"]["custody"]["shares"] == [1, 3]  # type: ignore[index]
    before = tree(d)
    r = run_cli("ca", "crl", "--dir", d, *_shares(people, "bob"), *_log(people))
    assert r.code == 3
    one_error_line(r, "1 more")
    r = run_cli(
        "ca", "crl", "--dir", d, *_shares(people, "bob", "carol"), "--pin-file", softhsm.pin_file, *_log(people)
    )
    assert r.code == 3
    one_error_line(r, "--pin-file", "comes from the shares")
    assert tree(d) == before
    r = run_cli("ca", "crl", "--dir", d, *_shares(people, "bob", "carol"), *_log(people))
    assert r.code == 0, r.err
    r = run_cli(
        "ca",
        "custody",
        "rekey",
        "--dir",
        d,
        *_shares(people, "bob", "carol"),
        "--custody",
        "2-of-2",
        *_custodians(people, "dan", "erin"),
        *_log(people),
    )
    assert r.code == 4
    one_error_line(r, "PKCS#11", "not supported yet")
    r = run_cli("ca", "custody", "status", "--dir", d, "--json")
    assert r.code == 0 and json.loads(r.out)["protects"] == "pkcs11-user-pin"
    assert run_cli("audit", "verify", d, "--trust", people / "officer.pub").code == 0


def test_ca_sign_a_csr_with_shares(pki: Path, people: Path, tmp_path: Path) -> None:
    """ca sign (a key held elsewhere) uses the root too: M shares, named in the log."""
    key, csr = tmp_path / "c7.key", tmp_path / "c7.csr"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            "/CN=c7",
        ],
        check=True,
        capture_output=True,
    )
    before = tree(pki)
    r = run_cli(
        "ca",
        "sign",
        csr,
        "--cluster",
        "c7",
        "--dir",
        pki,
        "--out",
        tmp_path / "out",
        *_shares(people, "carol"),
        *_log(people),
    )
    assert r.code == 3
    one_error_line(r, "1 more")
    assert tree(pki) == before and not (tmp_path / "out").exists()
    r = run_cli(
        "ca",
        "sign",
        csr,
        "--cluster",
        "c7",
        "--dir",
        pki,
        "--out",
        tmp_path / "out",
        *_shares(people, "carol", "bob"),
        *_log(people),
    )
    assert r.code == 0, r.err
    signed = [e for e in _entries(pki) if e["params"].get("cluster") == "c7"]  # type: ignore[union-attr]
    assert signed and all(e["params"]["custody"]["shares"] == [2, 3] for e in signed)  # type: ignore[index]


def test_removed_custody_folder(pki: Path, people: Path, passfile: Path) -> None:
    shutil.rmtree(pki / "custody")
    before = tree(pki)
    r = run_cli("ca", "issue", "c1", "--dir", pki, *EC, "--passphrase-file", passfile, *_log(people))
    assert r.code == 1
    one_error_line(r, "custody: missing, but the inventory records split custody")
    assert tree(pki) == before
