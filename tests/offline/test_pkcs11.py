"""Root keys in a PKCS#11 token (SoftHSM2): made in and never leaving it, signing everything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from airgap.core.keys import sign, spki_sha256
from airgap.core.signatures import verify_bytes
from airgap.errors import InvalidInput, Refused
from airgap.offline.ca import CAStore
from airgap.offline.crl import revoke
from airgap.offline.pkcs11 import TokenRef, generate_key, open_key
from tests.helpers import openssl, run_cli, tree
from tests.softhsm import SoftHSM

EC = ("--key-type", "ecdsa-p256")


def _ref(hsm: SoftHSM, label: str) -> TokenRef:
    return TokenRef(str(hsm.module), hsm.token_label, label)


def _ok(r: object) -> None:
    assert getattr(r, "code") == 0, getattr(r, "err")  # noqa: B009


def test_root_in_token_issues_intermediates_that_openssl_verifies(
    softhsm: SoftHSM,
    tmp_path: Path,
    passfile: Path,
) -> None:
    pki = tmp_path / "pki"
    label = softhsm.key_label()
    r = run_cli("ca", "init", "--dir", pki, *EC, *softhsm.options(label), "--passphrase-file", passfile)
    _ok(r)
    assert "not extractable" in r.out
    assert not (pki / "root-key.pem").exists()
    ref = json.loads((pki / "root-key.pkcs11.json").read_text())
    assert ref["key_label"] == label and ref["token_label"] == softhsm.token_label
    assert softhsm.pin not in (pki / "root-key.pkcs11.json").read_text()
    root = x509.load_pem_x509_certificate((pki / "root-cert.pem").read_bytes())
    assert ref["key_id"] == spki_sha256(root.public_key())  # type: ignore[arg-type]
    # ca issue finds the token from the record; only the PIN is needed
    r = run_cli(
        "ca", "issue", "c1", "c2", "--dir", pki, *EC, "--passphrase-file", passfile, "--pin-file", softhsm.pin_file
    )
    _ok(r)
    for c in ("c1", "c2"):
        v = openssl("verify", "-CAfile", pki / "root-cert.pem", pki / c / "ca-cert.pem")
        assert v.stdout.decode().strip().endswith(": OK")
    v = openssl("verify", "-CAfile", pki / "root-cert.pem", pki / "root-cert.pem")
    assert v.stdout.decode().strip().endswith(": OK")
    r = run_cli("ca", "list", "--dir", pki, "--json")
    assert json.loads(r.out)["root_key"] == "pkcs11"


def test_rsa_root_in_token_signs_certificates_and_crls(softhsm: SoftHSM, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    ref = _ref(softhsm, softhsm.key_label("rsa"))
    store = CAStore(pki)
    with generate_key(ref, softhsm.pin, "rsa-3072") as key:
        store.init_root(
            key_type="rsa-3072", days=365, org="Istio", cn="Root CA", passphrase=None, root_key=key, key_record=b"{}\n"
        )
    with open_key(ref, softhsm.pin) as key:
        store.issue(
            ["c1"],
            key_type="ecdsa-p256",
            days=30,
            org="Istio",
            cn="Intermediate CA",
            sans=["DNS:istiod.istio-system.svc"],
            passphrase=None,
            key_passphrase=None,
            workers=1,
            root_key=key,
        )
        revoke(store.path, "c1", reason="keyCompromise", passphrase=None, root_key=key)
    text = openssl("x509", "-in", pki / "root-cert.pem", "-noout", "-text").stdout.decode()
    assert "sha256WithRSAEncryption" in text and "Public-Key: (3072 bit)" in text
    v = openssl("verify", "-CAfile", pki / "root-cert.pem", pki / "c1" / "ca-cert.pem")
    assert v.stdout.decode().strip().endswith(": OK")
    c = openssl("crl", "-in", pki / "ca-crl.pem", "-CAfile", pki / "root-cert.pem", "-verify", "-noout")
    assert "verify OK" in (c.stdout + c.stderr).decode()


def test_token_key_makes_detached_signatures(softhsm: SoftHSM) -> None:
    """What bundle signing uses (keys.sign): a token key signs, the public key verifies."""
    ref = _ref(softhsm, softhsm.key_label("sig"))
    with generate_key(ref, softhsm.pin, "ecdsa-p384") as key:
        sig = sign(key, b"manifest bytes")
        verify_bytes(key.public_key(), b"manifest bytes", sig)
        from airgap.errors import VerificationError

        with pytest.raises(VerificationError):
            verify_bytes(key.public_key(), b"other bytes", sig)


def test_private_key_is_not_extractable(softhsm: SoftHSM) -> None:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.exceptions import AttributeSensitive

    label = softhsm.key_label()
    ref = _ref(softhsm, label)
    with generate_key(ref, softhsm.pin, "ecdsa-p256") as key:
        with pytest.raises(Refused, match="cannot be exported"):
            key.private_bytes(None, None, None)  # type: ignore[arg-type]
        with pytest.raises(Refused, match="cannot be exported"):
            key.private_numbers()
    lib = pkcs11.lib(str(softhsm.module))
    with lib.get_token(token_label=softhsm.token_label).open(user_pin=softhsm.pin) as session:
        priv = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        assert priv[Attribute.SENSITIVE] is True
        assert priv[Attribute.EXTRACTABLE] is False
        assert priv[Attribute.NEVER_EXTRACTABLE] is True and priv[Attribute.ALWAYS_SENSITIVE] is True
        with pytest.raises(AttributeSensitive):
            priv[Attribute.VALUE]


def test_wrong_pin_is_exit_3_and_writes_nothing(softhsm: SoftHSM, tmp_path: Path, passfile: Path) -> None:
    pki = tmp_path / "pki"
    label = softhsm.key_label()
    _ok(run_cli("ca", "init", "--dir", pki, *EC, *softhsm.options(label)))
    bad = tmp_path / "bad-pin.txt"
    bad.write_text("0000\n")
    before = tree(pki)
    r = run_cli("ca", "issue", "c1", "--dir", pki, *EC, "--passphrase-file", passfile, "--pin-file", bad)
    assert r.code == 3, r.err
    assert r.err.strip() == f"airgap: error: token {softhsm.token_label!r} key {label!r} ({softhsm.module}): wrong PIN"
    assert "0000" not in r.err
    assert tree(pki) == before
    other = tmp_path / "other"
    r = run_cli("ca", "init", "--dir", other, *EC, *softhsm.options(softhsm.key_label())[:-1], bad)
    assert r.code == 3 and "wrong PIN" in r.err
    assert tree(other) == []


def test_pin_from_environment(softhsm: SoftHSM, tmp_path: Path, passfile: Path) -> None:
    pki = tmp_path / "pki"
    opts = softhsm.options(softhsm.key_label())[:-2]  # no --pin-file
    r = run_cli("ca", "init", "--dir", pki, *EC, *opts, env={"AIRGAP_PKCS11_PIN": softhsm.pin})
    _ok(r)
    r = run_cli("ca", "issue", "c1", "--dir", pki, *EC, "--passphrase-file", passfile, env={"AIRGAP_PKCS11_PIN": ""})
    assert r.code == 3 and "no token PIN" in r.err


def test_token_refusals(softhsm: SoftHSM, tmp_path: Path) -> None:
    label = softhsm.key_label()
    with generate_key(_ref(softhsm, label), softhsm.pin, "ecdsa-p256"):
        pass
    # an existing label is never replaced (exit 4)
    r = run_cli("ca", "init", "--dir", tmp_path / "a", *EC, *softhsm.options(label))
    assert r.code == 4 and "refusing to replace" in r.err
    assert tree(tmp_path / "a") == []
    # no such token, no such module (exit 3)
    opts = list(softhsm.options(softhsm.key_label()))
    opts[3] = "no-such-token"
    r = run_cli("ca", "init", "--dir", tmp_path / "b", *EC, *opts)
    assert r.code == 3 and "no token labelled 'no-such-token'" in r.err
    opts = list(softhsm.options(softhsm.key_label()))
    opts[1] = str(tmp_path / "missing.so")
    r = run_cli("ca", "init", "--dir", tmp_path / "c", *EC, *opts)
    assert r.code == 3 and "PKCS#11 module not found" in r.err
    with pytest.raises(InvalidInput, match="no such private key"), open_key(_ref(softhsm, "absent"), softhsm.pin):
        pass


def test_failed_init_leaves_no_key_in_the_token(softhsm: SoftHSM, tmp_path: Path) -> None:
    """An init refused after the key was made (another officer's log) removes that key again."""
    import pkcs11
    from cryptography.hazmat.primitives.asymmetric import ec
    from pkcs11 import Attribute

    from airgap.offline import ceremony

    pki = tmp_path / "pki"
    pki.mkdir()
    ceremony.record(
        pki, "note", {"text": "opened by officer A"}, ceremony.Officer.from_key(ec.generate_private_key(ec.SECP256R1()))
    )
    keys = tmp_path / "keys"
    _ok(run_cli("keys", "new", "b", "--out", keys, "--no-passphrase"))
    before = tree(pki)
    label = softhsm.key_label()
    r = run_cli("ca", "init", "--dir", pki, *EC, *softhsm.options(label), "--log-key", keys / "b.key")
    assert r.code == 4 and "is not the officer key registered" in r.err, r.err
    assert [x for x in tree(pki) if x != ".lock"] == before
    lib = pkcs11.lib(str(softhsm.module))
    with lib.get_token(token_label=softhsm.token_label).open(user_pin=softhsm.pin) as session:
        assert list(session.get_objects({Attribute.LABEL: label})) == []


def test_ceremony_log_records_the_token_key_without_the_pin(
    softhsm: SoftHSM,
    tmp_path: Path,
    passfile: Path,
) -> None:
    pki = tmp_path / "pki"
    keys = tmp_path / "keys"
    _ok(run_cli("keys", "new", "officer", "--out", keys, "--passphrase-file", passfile))
    label = softhsm.key_label()
    r = run_cli(
        "ca", "init", "--dir", pki, *EC, *softhsm.options(label), "--log-key", keys / "officer.key",
        "--log-key-passphrase-file", passfile,
    )  # fmt: skip
    _ok(r)
    log = (pki / "ceremony.log").read_text()
    assert softhsm.pin not in log
    entries = [json.loads(x) for x in log.splitlines()]
    assert [e["act"] for e in entries] == ["log-start", "key-create", "init"]
    assert entries[1]["params"]["storage"] == "pkcs11" and entries[1]["params"]["key_label"] == label
    r = run_cli("audit", "verify", pki, "--trust", keys / "officer.pub")
    _ok(r)


def test_root_rotation_into_the_token(softhsm: SoftHSM, tmp_path: Path, passfile: Path) -> None:
    """A file root replaced by a token root: the next root, rotations and --finish find the token."""
    pki = tmp_path / "pki"
    pf = ("--passphrase-file", passfile)
    _ok(run_cli("ca", "init", "--dir", pki, *EC, *pf))
    _ok(run_cli("ca", "issue", "c1", "--dir", pki, *EC, *pf))
    label = softhsm.key_label("next")
    _ok(run_cli("ca", "rotate-root", "--dir", pki, *EC, "--cn", "Root CA 2", *softhsm.options(label), *pf))
    assert (pki / "next-root" / "root-key.pkcs11.json").exists() and not (pki / "next-root" / "root-key.pem").exists()
    r = run_cli("ca", "rotate", "c1", "--dir", pki, *pf, "--pin-file", softhsm.pin_file)
    _ok(r)
    assert "NEXT root" in r.out
    _ok(run_cli("ca", "rotate-root", "--dir", pki, "--finish", *pf, "--pin-file", softhsm.pin_file))
    assert (pki / "root-key.pkcs11.json").exists() and not (pki / "root-key.pem").exists()
    _ok(run_cli("ca", "issue", "c2", "--dir", pki, *EC, *pf, "--pin-file", softhsm.pin_file))
    for c in ("c1", "c2"):
        v = openssl("verify", "-CAfile", pki / "root-cert.pem", pki / c / "ca-cert.pem")
        assert v.stdout.decode().strip().endswith(": OK")
    root = x509.load_pem_x509_certificate((pki / "root-cert.pem").read_bytes())
    assert "Root CA 2" in root.subject.rfc4514_string()
