"""The keyless path through the CLI: request (jump host) → sign (root) → keyless bundle → import --key.

The CA key is made on the jump host and never leaves it; the bundle carries certificates only
(format 3, no key member, no recipients, bound to the key's SPKI and the request id).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from airgap.core.bundle import open_bundle
from airgap.core.keys import load_public_key, spki_sha256
from tests.conftest import PASSPHRASE
from tests.connected.kubehelpers import FAST_ENV
from tests.helpers import one_error_line, openssl, run_cli, tree
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster

EC = ("--key-type", "ecdsa-p256")


@pytest.fixture
def keyless(pki: Path, tmp_path: Path, passfile: Path) -> dict[str, Path]:
    """PKI with c3 signed from a jump-host request, and its keyless bundle."""
    keys = tmp_path / "keys"
    for who in ("officer", "operator"):
        assert run_cli("keys", "new", who, "--out", keys, "--no-passphrase").code == 0
    jump = tmp_path / "jump"
    req = tmp_path / "c3.request"
    r = run_cli("ca", "request", "c3", "--dir", jump, "--sign-key", keys / "operator.key", "--out", req, *EC,
                "--passphrase-file", passfile)  # fmt: skip
    assert r.code == 0, r.err
    r = run_cli("ca", "sign", req, "--trust", keys / "operator.pub", "--dir", pki, "--out", tmp_path / "signed",
                "--passphrase-file", passfile)  # fmt: skip
    assert r.code == 0, r.err
    bundle = tmp_path / "c3.bundle"
    r = run_cli("bundle", "create", "c3", "--dir", pki, "--sign-key", keys / "officer.key", "--out", bundle)
    assert r.code == 0, r.err
    assert "not carried: held elsewhere" in r.out
    return {"keys": keys, "jump": jump, "bundle": bundle, "key": jump / "c3" / "ca-key.pem", "request": req}


def test_keyless_bundle_carries_no_key_and_is_bound_to_it(keyless: dict[str, Path], passfile: Path) -> None:
    b = open_bundle(keyless["bundle"], [load_public_key(keyless["keys"] / "officer.pub")])
    m = b.manifest
    assert m.format_version == 3 and m.recipients == ()
    assert [x.path for x in m.members] == ["cacerts/ca-cert.pem", "cacerts/cert-chain.pem", "cacerts/root-cert.pem"]
    local = serialization.load_pem_private_key(keyless["key"].read_bytes(), PASSPHRASE)
    assert m.held_key is not None and m.held_key.key_id == spki_sha256(local)  # type: ignore[arg-type]
    assert m.held_key.request_id is not None and len(m.held_key.request_id) == 32
    assert b"PRIVATE KEY" not in keyless["bundle"].read_bytes()
    r = run_cli("bundle", "verify", keyless["bundle"], "--trust", keyless["keys"] / "officer.pub")
    assert r.code == 0, r.err


def test_import_with_the_local_key_to_a_folder(keyless: dict[str, Path], passfile: Path, tmp_path: Path) -> None:
    out, state = tmp_path / "out", tmp_path / "state"
    r = run_cli("bundle", "import", keyless["bundle"], "--trust", keyless["keys"] / "officer.pub", "--key",
                keyless["key"], "--key-passphrase-file", passfile, "--cluster", "c3", "--output-dir", out,
                "--plaintext-secrets",
                env={"AIRGAP_STATE_DIR": str(state)})  # fmt: skip
    assert r.code == 0, r.err
    docs = [yaml.safe_load(p.read_text()) for p in sorted(out.iterdir())]
    secret = next(d for d in docs if d["kind"] == "Secret")
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert sorted(data) == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
    cert = x509.load_pem_x509_certificate(data["ca-cert.pem"])
    key = serialization.load_pem_private_key(data["ca-key.pem"], None)  # istiod reads it unencrypted
    local = serialization.load_pem_private_key(keyless["key"].read_bytes(), PASSPHRASE)
    assert key.public_key() == cert.public_key() == local.public_key()


def test_import_refusals(keyless: dict[str, Path], pki: Path, passfile: Path, tmp_path: Path) -> None:
    officer = keyless["keys"] / "officer.pub"
    other_key = tmp_path / "jump" / "c1-other" / "ca-key.pem"
    r = run_cli("ca", "request", "c1-other", "--dir", tmp_path / "jump", "--sign-key", keyless["keys"] / "operator.key",
                "--out", tmp_path / "other.request", *EC, "--no-passphrase")  # fmt: skip
    assert r.code == 0, r.err
    keyed = tmp_path / "c1.bundle"
    r = run_cli("bundle", "create", "c1", "--dir", pki, "--sign-key", keyless["keys"] / "officer.key", "--no-encrypt",
                "--passphrase-file", passfile, "--out", keyed)  # fmt: skip
    assert r.code == 0, r.err
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    b = keyless["bundle"]
    cases: list[tuple[tuple[str | Path, ...], int, tuple[str, ...]]] = [
        ((b, "--cluster", "c3"), 3, ("carries no CA key (held elsewhere)", "--key")),
        ((b, "--cluster", "c3", "--key", other_key), 1, ("is not the key the bundle was issued for",)),
        ((b, "--cluster", "c3", "--key", keyless["key"], "--key-passphrase-file", wrong), 3, ("wrong passphrase",)),
        ((b, "--cluster", "c3", "--key", tmp_path / "missing.pem"), 3, ("not found",)),
        ((b, "--cluster", "c1", "--key", keyless["key"], "--key-passphrase-file", passfile), 4, ("not 'c1'",)),
        ((keyed, "--cluster", "c1", "--key", keyless["key"], "--key-passphrase-file", passfile), 3,
         ("--key is only for keyless bundles",)),
    ]  # fmt: skip
    for args, code, needles in cases:
        out, state = tmp_path / "out", tmp_path / "state"
        r = run_cli("bundle", "import", *args, "--trust", officer, "--output-dir", out, "--plaintext-secrets",
                    env={"AIRGAP_STATE_DIR": str(state)})  # fmt: skip
        assert r.code == code, (args, r.err)
        one_error_line(r, *needles)
        assert not out.exists() and tree(state) == [], args


def test_create_refusals(keyless: dict[str, Path], pki: Path, tmp_path: Path) -> None:
    keys = keyless["keys"]
    r = run_cli("keys", "new", "--kind", "recipient", "op", "--out", keys, "--no-passphrase")
    assert r.code == 0, r.err
    seq = (pki / "state" / "sequence.json").read_bytes()
    r = run_cli("bundle", "create", "c3", "--dir", pki, "--sign-key", keys / "officer.key", "--recipient",
                keys / "op.pub", "--out", tmp_path / "x.bundle")  # fmt: skip
    assert r.code == 3
    one_error_line(r, "held elsewhere", "give no --recipient")
    assert not (tmp_path / "x.bundle").exists() and (pki / "state" / "sequence.json").read_bytes() == seq
    # a certificate swapped under the inventory's record: the bundle is refused
    for name in ("ca-cert.pem", "cert-chain.pem"):
        (pki / "c3" / name).write_bytes((pki / "c1" / name).read_bytes())
    r = run_cli("bundle", "create", "c3", "--dir", pki, "--sign-key", keys / "officer.key", "--out", tmp_path / "y")
    assert r.code == 4, r.err
    one_error_line(r, "is not the certificate the inventory records for the key held elsewhere")
    assert not (tmp_path / "y").exists()


def test_import_into_a_cluster(keyless: dict[str, Path], passfile: Path, tmp_path: Path, kube_cluster: Cluster) -> None:
    env = {**kube_cluster.env, **FAST_ENV, "AIRGAP_STATE_DIR": str(tmp_path / "state")}
    r = run_cli("bundle", "import", keyless["bundle"], "--trust", keyless["keys"] / "officer.pub", "--key",
                keyless["key"], "--key-passphrase-file", passfile, "--cluster", "c3", "--context", "test",
                env=env)  # fmt: skip
    assert r.code == 0, r.err
    emu = kube_cluster.emu()
    secret = emu.get("secrets", "istio-system", "cacerts")
    assert secret is not None
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    key = serialization.load_pem_private_key(data["ca-key.pem"], None)
    assert key.public_key() == x509.load_pem_x509_certificate(data["ca-cert.pem"]).public_key()
    accepted = json.loads((tmp_path / "state" / "accepted.json").read_text())["accepted"]
    assert [a["sequence"] for a in accepted.values()] == [1]


def test_rotate_a_cluster_whose_key_is_held_elsewhere(
    keyless: dict[str, Path], pki: Path, passfile: Path, tmp_path: Path
) -> None:
    keys, pf = keyless["keys"], ("--passphrase-file", passfile)
    before = tree(pki)
    r = run_cli("ca", "rotate", "c3", "--dir", pki, *pf)
    assert r.code == 4
    one_error_line(r, "cluster c3's CA key is held elsewhere", "--csr")
    assert tree(pki) == before
    # the same request again: its key is certified already
    r = run_cli("ca", "rotate", "c3", "--dir", pki, "--csr", keyless["request"], "--trust", keys / "operator.pub", *pf)
    assert r.code == 4
    one_error_line(r, "already certified for cluster c3")
    assert tree(pki) == before
    # a new key on the jump host, a new request, the rotation
    jump2 = tmp_path / "jump-next"
    nxt = tmp_path / "c3-next.request"
    r = run_cli("ca", "request", "c3", "--dir", jump2, "--sign-key", keys / "operator.key", "--out", nxt, *EC, *pf)
    assert r.code == 0, r.err
    r = run_cli("ca", "rotate", "c3", "--dir", pki, "--csr", nxt, "--trust", keys / "operator.pub", *pf)
    assert r.code == 0, r.err
    assert not (pki / "c3" / "ca-key.pem").exists()
    inv = json.loads((pki / "inventory.json").read_bytes())["intermediates"]
    cur = [i for i in inv if i["cluster"] == "c3"][-1]
    new_key = serialization.load_pem_private_key((jump2 / "c3" / "ca-key.pem").read_bytes(), PASSPHRASE)
    assert cur["key_held"] == "elsewhere" and cur["key_id"] == spki_sha256(new_key)  # type: ignore[arg-type]
    cert = x509.load_pem_x509_certificate((pki / "c3" / "ca-cert.pem").read_bytes())
    assert cert.public_key() == new_key.public_key()
    # the keyless bundle of the new intermediate takes the new key, not the old one
    bundle = tmp_path / "c3-next.bundle"
    r = run_cli("bundle", "create", "c3", "--dir", pki, "--sign-key", keys / "officer.key", "--out", bundle)
    assert r.code == 0, r.err
    state = {"AIRGAP_STATE_DIR": str(tmp_path / "state")}
    base = ("bundle", "import", bundle, "--trust", keys / "officer.pub", "--cluster", "c3", "--key-passphrase-file",
            passfile)  # fmt: skip
    r = run_cli(*base, "--key", keyless["key"], "--output-dir", tmp_path / "o1", "--plaintext-secrets", env=state)
    assert r.code == 1
    one_error_line(r, "is not the key the bundle was issued for")
    r = run_cli(
        *base, "--key", jump2 / "c3" / "ca-key.pem", "--output-dir", tmp_path / "o2", "--plaintext-secrets", env=state
    )
    assert r.code == 0, r.err
    # a cluster that had its key in the PKI may move to a key held elsewhere
    k = tmp_path / "c1.key"
    csr = tmp_path / "c1.csr"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes", "-keyout", k,
            "-out", csr, "-subj", "/CN=c1")  # fmt: skip
    r = run_cli("ca", "rotate", "c1", "--dir", pki, "--csr", csr, *pf)
    assert r.code == 0, r.err
    assert not (pki / "c1" / "ca-key.pem").exists()
    assert openssl("verify", "-CAfile", pki / "root-cert.pem", pki / "c1" / "ca-cert.pem").returncode == 0
