"""`airgap ca request` (jump host) and `airgap ca sign REQUEST --trust PUB` (root host), through the CLI."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.connected.key_request import build_csr
from airgap.core.request_file import write_request
from tests.conftest import PASSPHRASE
from tests.helpers import one_error_line, openssl, run_cli, tree

EC = ("--key-type", "ecdsa-p256")


@pytest.fixture
def operator(tmp_path: Path) -> tuple[Path, Path]:
    keys = tmp_path / "opkeys"
    r = run_cli("keys", "new", "operator", "--out", keys, "--no-passphrase")
    assert r.code == 0, r.err
    return keys / "operator.key", keys / "operator.pub"


def _request(tmp_path: Path, operator: tuple[Path, Path], passfile: Path, cluster: str = "c3") -> Path:
    out = tmp_path / f"{cluster}.request"
    r = run_cli("ca", "request", cluster, "--dir", tmp_path / "jump", "--sign-key", operator[0], "--out", out, *EC,
                "--passphrase-file", passfile)  # fmt: skip
    assert r.code == 0, r.err
    return out


def test_round_trip_request_sign(pki: Path, tmp_path: Path, passfile: Path, operator: tuple[Path, Path]) -> None:
    req = _request(tmp_path, operator, passfile)
    key = tmp_path / "jump" / "c3" / "ca-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert b"PRIVATE KEY" not in req.read_bytes()
    out = tmp_path / "signed"
    r = run_cli("ca", "sign", req, "--trust", operator[1], "--dir", pki, "--out", out, "--passphrase-file", passfile,
                "--json")  # fmt: skip
    assert r.code == 0, r.err
    doc = json.loads(r.out)["signed"][0]
    assert doc["cluster"] == "c3" and len(doc["request_id"]) == 32
    cert = x509.load_pem_x509_certificate((out / "ca-cert.pem").read_bytes())
    jump_key = serialization.load_pem_private_key(key.read_bytes(), PASSPHRASE)
    assert cert.public_key() == jump_key.public_key()
    assert openssl("verify", "-CAfile", pki / "root-cert.pem", out / "ca-cert.pem").returncode == 0
    rec = json.loads((pki / "inventory.json").read_bytes())["intermediates"][-1]
    assert rec["request_id"] == doc["request_id"] and rec["key_held"] == "elsewhere"
    # the same request again: refused (the cluster has its intermediate now)
    r = run_cli("ca", "sign", req, "--trust", operator[1], "--dir", pki, "--out", tmp_path / "again",
                "--passphrase-file", passfile)  # fmt: skip
    assert r.code == 4
    one_error_line(r, "already has an intermediate")


def _edit(path: Path, old: bytes, new: bytes, tmp: Path) -> Path:
    """The request with ``old`` replaced by ``new`` (same length: the archive stays well-formed)."""
    assert len(old) == len(new) and path.read_bytes().count(old) == 1
    p = tmp / f"edited-{old[:8].hex()}.request"
    p.write_bytes(path.read_bytes().replace(old, new))
    return p


def test_request_refusals(pki: Path, tmp_path: Path, passfile: Path, operator: tuple[Path, Path]) -> None:
    req = _request(tmp_path, operator, passfile)
    stranger = tmp_path / "stranger"
    assert run_cli("keys", "new", "stranger", "--out", stranger, "--no-passphrase").code == 0
    sign_key = serialization.load_pem_private_key(operator[0].read_bytes(), None)
    assert isinstance(sign_key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC)

    def crafted(name: str, cluster: str, *, created: dt.datetime = now, days: int = 30, rid: str | None = None) -> Path:
        k = ec.generate_private_key(ec.SECP256R1())
        p = tmp_path / f"{name}.request"
        p.write_bytes(write_request(build_csr(k, cluster), cluster=cluster, sign_key=sign_key, created=created,
                                    days=days, request_id=rid))  # fmt: skip
        return p

    expired = crafted("expired", "c4", created=now - dt.timedelta(days=40))
    # a request id that was already signed (in the inventory), reused with a fresh key for a new cluster
    first = crafted("first", "c5", rid="ab" * 16)
    r = run_cli("ca", "sign", first, "--trust", operator[1], "--dir", pki, "--out", tmp_path / "first-out",
                "--passphrase-file", passfile)  # fmt: skip
    assert r.code == 0, r.err
    replayed = crafted("replayed", "c6", rid="ab" * 16)
    rsa_pub = tmp_path / "rsa.pub"
    rsa_pub.write_bytes(openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048").stdout)
    rsa_pub.write_bytes(openssl("pkey", "-pubout", input=rsa_pub.read_bytes()).stdout)
    bare_csr = tmp_path / "bare.csr"
    bare_csr.write_bytes(build_csr(ec.generate_private_key(ec.SECP256R1()), "c7"))
    cases: list[tuple[tuple[str | Path, ...], int, tuple[str, ...]]] = [
        ((req, "--trust", stranger / "stranger.pub"), 1, ("which is not a --trust key",)),
        ((expired, "--trust", operator[1]), 4, ("request expired at",)),
        ((replayed, "--trust", operator[1]), 4, (f"request {'ab' * 16} was already signed",)),
        ((req, "--trust", operator[1], "--cluster", "c9"), 4, ("the request is for cluster c3, not c9",)),
        (
            (_edit(req, b"BEGIN CERTIFICATE REQUEST", b"BEGIN CERTIFICATE REQUESU", tmp_path), "--trust", operator[1]),
            1,
            ("request/csr.pem does not match its SHA-256",),
        ),
        (
            (_edit(req, b'"cluster":"c3"', b'"cluster":"c2"', tmp_path), "--trust", operator[1]),
            1,
            ("request signature does not verify",),
        ),
        ((req,), 3, ("is a signed request file; give the operator's key with --trust",)),
        ((bare_csr, "--trust", operator[1]), 3, ("not a signed request file",)),
        ((req, "--trust", rsa_pub), 3, ("ECDSA P-256 or P-384",)),
    ]
    before = tree(pki)
    inv = (pki / "inventory.json").read_bytes()
    for args, code, needles in cases:
        out = tmp_path / "out"
        r = run_cli("ca", "sign", *args, "--dir", pki, "--out", out, "--passphrase-file", passfile)
        assert r.code == code, (args, r.err)
        one_error_line(r, *needles)
        assert tree(pki) == before and (pki / "inventory.json").read_bytes() == inv, args
        assert not out.exists()


def test_ca_request_refusals(tmp_path: Path, passfile: Path, operator: tuple[Path, Path]) -> None:
    req = _request(tmp_path, operator, passfile)
    jump = tmp_path / "jump"
    before = tree(jump)
    rsa_key = tmp_path / "rsa.key"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa_key)
    cases: list[tuple[tuple[str | Path, ...], int, tuple[str, ...]]] = [
        (("c3", "--sign-key", operator[0], "--out", tmp_path / "new.request"), 4, ("ca-key.pem: already exists",)),
        (("c8", "--sign-key", operator[0], "--out", req), 4, ("already exists",)),
        (("c8", "--sign-key", rsa_key, "--out", tmp_path / "x.request"), 3, ("ECDSA P-256 or P-384",)),
        (("bad/name", "--sign-key", operator[0], "--out", tmp_path / "x.request"), 3, ("cluster name",)),
        (("c8", "--sign-key", operator[0], "--out", tmp_path / "x.request", "--expires", "400"), 3, ("365",)),
        (("c8", "--sign-key", tmp_path / "nope.key", "--out", tmp_path / "x.request"), 3, ("not found",)),
    ]
    for args, code, needles in cases:
        r = run_cli("ca", "request", *args, "--dir", jump, *EC, "--passphrase-file", passfile)
        assert r.code == code, (args, r.err)
        one_error_line(r, *needles)
        assert tree(jump) == before, args
        assert not (tmp_path / "x.request").exists() and not (tmp_path / "new.request").exists()
