"""The lint gate: a bad profile is refused before the (token) root key signs; results are re-verified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.core import x509 as cx
from airgap.core.csr import verify_csr
from airgap.errors import Refused, VerificationError
from airgap.offline import lint
from airgap.offline.pkcs11 import TokenECKey
from airgap.offline.sign import sign_csr
from tests.helpers import one_error_line, openssl, run_cli, tree
from tests.softhsm import SoftHSM


def _csr(key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    k = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x")])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .sign(k, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def _bad_key_usage(subject_key: object) -> x509.KeyUsage:
    """A test-only profile override: keyEncipherment on an EC key (RFC 8813 forbids it; pkilint says ERROR)."""
    return x509.KeyUsage(True, True, True, False, False, True, True, False, False)


def test_the_profile_lints_clean_as_pre_and_final_certificate(tmp_path: Path) -> None:
    rk = ec.generate_private_key(ec.SECP384R1())
    root = cx.build_root(rk, org="Istio", cn="Root CA", days=100)
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    b = cx.intermediate_builder(pub, cluster="c1", root_cert=root, org="Istio", cn="I", days=10, sans=[cx.ISTIOD_SAN])
    cert = lint.sign_certificate(b, issuer_cert=root, issuer_key=rk, what="c1")
    assert lint.errors_of(lint.lint_certificate(cert.public_bytes(serialization.Encoding.DER))) == []
    cert.verify_directly_issued_by(root)
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha384"


def test_a_bad_profile_is_refused_before_signing(monkeypatch: pytest.MonkeyPatch) -> None:
    rk = ec.generate_private_key(ec.SECP256R1())
    root = cx.build_root(rk, org="Istio", cn="Root CA", days=100)
    monkeypatch.setattr(cx, "ca_key_usage", _bad_key_usage)
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    b = cx.intermediate_builder(pub, cluster="c1", root_cert=root, org="Istio", cn="I", days=10, sans=[cx.ISTIOD_SAN])
    with pytest.raises(
        Refused, match=r"lint gate refused to sign: pkix.key_usage_value_prohibited_for_ec \(ERROR\): .*keyEncipherment"
    ) as exc:
        lint.sign_certificate(b, issuer_cert=root, issuer_key=rk, what="cluster c1")
    assert exc.value.message.startswith("cluster c1: ")


def test_a_result_that_does_not_verify_is_never_returned() -> None:
    rk = ec.generate_private_key(ec.SECP256R1())
    root = cx.build_root(rk, org="Istio", cn="Root CA", days=100)
    other_root = cx.build_root(ec.generate_private_key(ec.SECP256R1()), org="Istio", cn="Root CA", days=100)
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    b = cx.intermediate_builder(pub, cluster="c1", root_cert=root, org="Istio", cn="I", days=10, sans=[cx.ISTIOD_SAN])
    with pytest.raises(VerificationError, match="does not verify with the issuer's key"):
        lint.sign_certificate(b, issuer_cert=other_root, issuer_key=rk, what="c1")


def test_a_linter_crash_or_finding_refuses_with_its_name(pki: Path, tmp_path: Path) -> None:

    before = tree(pki)

    def finds(der: bytes) -> list[lint.Finding]:
        return [lint.Finding("pkix.test_only_finding", "ERROR", "because the test says so")]

    with pytest.raises(Refused, match=r"pkix.test_only_finding \(ERROR\): because the test says so"):
        sign_csr(
            pki, verify_csr(_csr(), source="t"), "c3", out=tmp_path / "o", days=30,
            passphrase=b"correct horse battery staple", linter=finds,
        )  # fmt: skip
    assert tree(pki) == before and not (tmp_path / "o").exists()


EC = ("--key-type", "ecdsa-p256")


def test_token_root_signs_csrs_and_never_signs_a_bad_profile(
    softhsm: SoftHSM,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pki = tmp_path / "pki"
    label = softhsm.key_label()
    r = run_cli("ca", "init", "--dir", pki, *EC, *softhsm.options(label))
    assert r.code == 0, r.err
    csr = tmp_path / "c1.csr"
    csr.write_bytes(_csr())
    # a spy on the token key's sign: live for the good CSR, silent for the bad profile
    calls: list[bytes] = []
    real_sign = TokenECKey.sign

    def spy(self: TokenECKey, data: bytes, algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        calls.append(data)
        return real_sign(self, data, algorithm)

    monkeypatch.setattr(TokenECKey, "sign", spy)
    # HSM roots sign CSRs too (the token recorded in the PKI folder; PIN from a file)
    out = tmp_path / "signed"
    r = run_cli("ca", "sign", csr, "--cluster", "c1", "--dir", pki, "--out", out, "--pin-file", softhsm.pin_file)
    assert r.code == 0, r.err
    v = openssl("verify", "-CAfile", pki / "root-cert.pem", out / "ca-cert.pem")
    assert v.stdout.decode().strip().endswith(": OK")
    assert len(calls) == 1  # the real signature, once (the pre-certificate is signed by a throwaway key)
    calls.clear()
    # a bad profile: refused (exit 4, the finding named), and the token key is never asked to sign
    monkeypatch.setattr(cx, "ca_key_usage", _bad_key_usage)
    csr2 = tmp_path / "c2.csr"
    csr2.write_bytes(_csr())
    before = tree(pki)
    inv = (pki / "inventory.json").read_bytes()
    r = run_cli("ca", "sign", csr2, "--cluster", "c2", "--dir", pki, "--out", tmp_path / "o2",
                "--pin-file", softhsm.pin_file)  # fmt: skip
    assert r.code == 4, r.err
    one_error_line(
        r,
        "cluster c2: the lint gate refused to sign",
        "pkix.key_usage_value_prohibited_for_ec (ERROR)",
        "keyEncipherment",
    )
    assert calls == []
    assert tree(pki) == before and (pki / "inventory.json").read_bytes() == inv
    assert not (tmp_path / "o2").exists()
    assert json.loads(inv)["intermediates"][0]["key_held"] == "elsewhere"


def test_the_crl_gate_lints_before_the_key_signs_and_verifies_after() -> None:
    import datetime as dt

    rk = ec.generate_private_key(ec.SECP256R1())
    root = cx.build_root(rk, org="Istio", cn="Root CA", days=100)
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    now = cx.now()
    good = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=30))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    crl = lint.sign_crl(good, issuer_cert=root, issuer_key=rk)
    assert crl.is_signature_valid(root.public_key())
    # no CRL number, no AKI: RFC 5280 says MUST; pkilint reports ERROR and the key never signs
    bad = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=30))
    )
    with pytest.raises(Refused, match=r"CRL: the lint gate refused to sign: .* \(ERROR\)"):
        lint.sign_crl(bad, issuer_cert=root, issuer_key=rk)
    other = cx.build_root(ec.generate_private_key(ec.SECP256R1()), org="Istio", cn="Root CA", days=100)
    with pytest.raises(VerificationError):
        lint.sign_crl(good, issuer_cert=other, issuer_key=rk)


def test_ca_issue_and_init_pass_the_gate_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = tmp_path / "pki"
    assert run_cli("ca", "init", "--dir", pki, *EC, "--no-passphrase").code == 0
    monkeypatch.setattr(cx, "ca_key_usage", _bad_key_usage)
    r = run_cli("ca", "issue", "c1", "--dir", pki, *EC, "--no-passphrase")
    assert r.code == 4
    one_error_line(r, "cluster c1: the lint gate refused to sign", "pkix.key_usage_value_prohibited_for_ec")
    assert not (pki / "c1").exists()
    r = run_cli("ca", "init", "--dir", tmp_path / "pki2", *EC, "--no-passphrase")
    assert r.code == 4
    one_error_line(r, "root: the lint gate refused to sign")
    assert not (tmp_path / "pki2").exists()
