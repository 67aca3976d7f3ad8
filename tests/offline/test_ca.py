"""The offline CA, checked with the real openssl CLI and pkilint."""

from __future__ import annotations

import datetime as dt
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from airgap.core import x509 as cx
from airgap.errors import InvalidInput, Refused
from airgap.offline.ca import CAStore, check_cluster_name
from tests.conftest import PASSPHRASE
from tests.helpers import openssl

LINT_BIN = Path(sys.executable).parent


def test_openssl_verifies_each_intermediate(pki: Path) -> None:
    for c in ("c1", "c2"):
        r = openssl("verify", "-CAfile", pki / "root-cert.pem", pki / c / "ca-cert.pem")
        assert r.stdout.decode().strip().endswith(": OK")


def test_cert_chain_is_intermediate_then_root(pki: Path) -> None:
    chain = x509.load_pem_x509_certificates((pki / "c1" / "cert-chain.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((pki / "c1" / "ca-cert.pem").read_bytes())
    root = x509.load_pem_x509_certificate((pki / "root-cert.pem").read_bytes())
    assert chain == [ca, root]
    assert (pki / "c1" / "root-cert.pem").read_bytes() == (pki / "root-cert.pem").read_bytes()


def test_openssl_text_shows_istio_profile(pki: Path) -> None:
    text = openssl("x509", "-in", pki / "c1" / "ca-cert.pem", "-noout", "-text").stdout.decode()
    assert "CA:TRUE, pathlen:0" in text
    assert "Certificate Sign" in text and "CRL Sign" in text
    assert "DNS:istiod.istio-system.svc" in text
    assert "L = c1" in text and "O = Istio" in text and "CN = Intermediate CA" in text
    assert "X509v3 Subject Key Identifier" in text and "X509v3 Authority Key Identifier" in text
    assert "ecdsa-with-SHA256" in text and "SHA1" not in text.upper().replace("SHA1-", "")
    root_text = openssl("x509", "-in", pki / "root-cert.pem", "-noout", "-text").stdout.decode()
    assert "CA:TRUE" in root_text and "pathlen" not in root_text
    assert "Subject: O = Istio, CN = Root CA" in root_text


def test_key_matches_cert_via_openssl(pki: Path, passfile: Path) -> None:
    cert_pub = openssl("x509", "-in", pki / "c1" / "ca-cert.pem", "-noout", "-pubkey").stdout
    key_pub = openssl("pkey", "-in", pki / "c1" / "ca-key.pem", "-passin", f"file:{passfile}", "-pubout").stdout
    assert cert_pub == key_pub
    other = openssl("pkey", "-in", pki / "c2" / "ca-key.pem", "-passin", f"file:{passfile}", "-pubout").stdout
    assert other != cert_pub


def test_openssl_signed_workload_cert_verifies_to_root(pki: Path, passfile: Path, tmp_path: Path) -> None:
    """What istiod does: sign a workload cert (SPIFFE URI SAN) with the intermediate."""
    key = tmp_path / "wl.key"
    csr = tmp_path / "wl.csr"
    crt = tmp_path / "wl.crt"
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=URI:spiffe://cluster.local/ns/default/sa/bookinfo\nbasicConstraints=CA:FALSE\n")
    openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-subj",
        "/O=cluster.local",
        "-out",
        csr,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        pki / "c1" / "ca-cert.pem",
        "-CAkey",
        pki / "c1" / "ca-key.pem",
        "-passin",
        f"file:{passfile}",
        "-CAcreateserial",
        "-days",
        "1",
        "-sha256",
        "-extfile",
        ext,
        "-out",
        crt,
    )
    r = openssl("verify", "-CAfile", pki / "root-cert.pem", "-untrusted", pki / "c1" / "cert-chain.pem", crt)
    assert r.stdout.decode().strip().endswith(": OK")
    # and not to a foreign root
    r2 = openssl("verify", "-CAfile", pki / "c2" / "ca-cert.pem", crt, check=False)
    assert r2.returncode != 0


def test_keys_are_0600_and_encrypted(pki: Path) -> None:
    for p in (pki / "root-key.pem", pki / "c1" / "ca-key.pem"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert p.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")


def _pkilint(tool: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_BIN / tool), "lint", "-s", "WARNING", *map(str, files)], capture_output=True, text=True
    )


@pytest.mark.parametrize("kt", ["ecdsa-p256", "ecdsa-p384", "rsa-3072"])
def test_pkilint_reports_no_errors(tmp_path: Path, kt: str) -> None:
    store = CAStore(tmp_path / "pki")
    store.init_root(key_type=kt, days=3650, org="Istio", cn="Root CA", passphrase=None)  # type: ignore[arg-type]
    store.issue(
        ["c1"],
        key_type=kt,
        days=730,
        org="Istio",
        cn="Intermediate CA",  # type: ignore[arg-type]
        sans=[cx.ISTIOD_SAN],
        passphrase=None,
        key_passphrase=None,
    )
    root, inter = tmp_path / "pki" / "root-cert.pem", tmp_path / "pki" / "c1" / "ca-cert.pem"
    for f in (root, inter):
        r = _pkilint("lint_pkix_cert", f)
        assert r.returncode == 0, r.stdout
    r = _pkilint("lint_pkix_signer_signee_cert_chain", root, inter)
    assert r.returncode == 0, r.stdout


def test_pkilint_would_catch_a_bad_profile(tmp_path: Path) -> None:
    """The linter is live: keyEncipherment on an EC key is an error it reports."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x")])
    now = dt.datetime.now(dt.UTC)
    ku = x509.KeyUsage(True, False, True, False, False, True, True, False, False)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(k.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ku, critical=True)
        .sign(k, hashes.SHA256())
    )
    f = tmp_path / "bad.pem"
    f.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    assert _pkilint("lint_pkix_cert", f).returncode != 0


@pytest.mark.slow
def test_default_root_is_rsa_4096(tmp_path: Path) -> None:
    store = CAStore(tmp_path / "pki")
    store.init_root(key_type="rsa-4096", days=3650, org="Istio", cn="Root CA", passphrase=b"pw")
    text = openssl("x509", "-in", tmp_path / "pki" / "root-cert.pem", "-noout", "-text").stdout.decode()
    assert "Public-Key: (4096 bit)" in text and "sha256WithRSAEncryption" in text
    assert "Key Encipherment" in text  # Istio's profile for RSA


def test_p384_signs_with_sha384(tmp_path: Path) -> None:
    store = CAStore(tmp_path / "pki")
    store.init_root(key_type="ecdsa-p384", days=3650, org="Istio", cn="Root CA", passphrase=None)
    text = openssl("x509", "-in", tmp_path / "pki" / "root-cert.pem", "-noout", "-text").stdout.decode()
    assert "ecdsa-with-SHA384" in text


def test_serials_are_random_and_positive(pki: Path) -> None:
    serials = {
        x509.load_pem_x509_certificate((pki / c / "ca-cert.pem").read_bytes()).serial_number for c in ("c1", "c2")
    }
    assert len(serials) == 2 and all(s > 2**63 for s in serials)


def test_intermediate_may_not_outlive_root(tmp_path: Path) -> None:
    store = CAStore(tmp_path / "pki")
    store.init_root(key_type="ecdsa-p256", days=100, org="Istio", cn="Root CA", passphrase=None)
    with pytest.raises(Refused, match="would outlive the root"):
        store.issue(
            ["c1"], key_type="ecdsa-p256", days=730, org="Istio", cn="I", sans=[], passphrase=None, key_passphrase=None
        )
    assert not (tmp_path / "pki" / "c1").exists()
    store.issue(
        ["c1"], key_type="ecdsa-p256", days=99, org="Istio", cn="I", sans=[], passphrase=None, key_passphrase=None
    )
    inter = x509.load_pem_x509_certificate((tmp_path / "pki" / "c1" / "ca-cert.pem").read_bytes())
    root = x509.load_pem_x509_certificate((tmp_path / "pki" / "root-cert.pem").read_bytes())
    assert inter.not_valid_after_utc <= root.not_valid_after_utc


def test_inventory_records_each_issue(pki: Path) -> None:
    doc = json.loads((pki / "inventory.json").read_text())
    assert doc["root"]["key_type"] == "ecdsa-p256"
    clusters = {i["cluster"]: i for i in doc["intermediates"]}
    assert set(clusters) == {"c1", "c2"}
    c1 = x509.load_pem_x509_certificate((pki / "c1" / "ca-cert.pem").read_bytes())
    assert clusters["c1"]["fingerprint"] == cx.fingerprint(c1)
    assert clusters["c1"]["serial"] == format(c1.serial_number, "x")


def test_status_checks_key_with_and_without_passphrase(pki: Path) -> None:
    store = CAStore(pki)
    rows = {r.cluster: r for r in store.status(None)}
    assert rows["c1"].key_check == "skipped" and rows["c1"].chains_to_root and rows["c1"].status == "valid"
    rows = {r.cluster: r for r in store.status(PASSPHRASE)}
    assert rows["c1"].key_check == "passed"
    # swap c2's key into c1: the check must fail, naming the problem
    (pki / "c1" / "ca-key.pem").unlink()
    (pki / "c1" / "ca-key.pem").write_bytes((pki / "c2" / "ca-key.pem").read_bytes())
    rows = {r.cluster: r for r in store.status(PASSPHRASE)}
    assert rows["c1"].key_check == "failed" and "does not match" in rows["c1"].problems[0]


def test_status_expiring_and_expired(pki: Path) -> None:
    store = CAStore(pki)
    cert = x509.load_pem_x509_certificate((pki / "c1" / "ca-cert.pem").read_bytes())
    end = cert.not_valid_after_utc
    assert {r.status for r in store.status(None, at=end - dt.timedelta(days=30))} == {"expiring"}
    assert {r.status for r in store.status(None, at=end + dt.timedelta(days=1))} == {"expired"}


def test_status_flags_foreign_intermediate(pki: Path, tmp_path: Path) -> None:
    other = CAStore(tmp_path / "other")
    other.init_root(key_type="ecdsa-p256", days=3650, org="Istio", cn="Root CA", passphrase=None)
    other.issue(
        ["c9"], key_type="ecdsa-p256", days=10, org="Istio", cn="I", sans=[], passphrase=None, key_passphrase=None
    )
    import shutil

    shutil.copytree(tmp_path / "other" / "c9", pki / "c9")
    rows = {r.cluster: r for r in CAStore(pki).status(None)}
    assert rows["c9"].chains_to_root is False and "does not chain to the root" in rows["c9"].problems


@pytest.mark.parametrize("name", ["", "-a", "a-", "a/b", "..", "A" * 64, "a b", "état", "root-cert.pem", "state"])
def test_bad_cluster_names(name: str) -> None:
    with pytest.raises(InvalidInput, match="not valid"):
        check_cluster_name(name)


@pytest.mark.parametrize("name", ["cluster1", "c", "prod-eu.west_1", "A" * 63])
def test_good_cluster_names(name: str) -> None:
    assert check_cluster_name(name) == name


def test_parallel_issue_uses_a_pool(tmp_path: Path) -> None:
    store = CAStore(tmp_path / "pki")
    store.init_root(key_type="ecdsa-p256", days=3650, org="Istio", cn="Root CA", passphrase=PASSPHRASE)
    names = [f"c{i}" for i in range(6)]
    recs = store.issue(
        names,
        key_type="ecdsa-p256",
        days=30,
        org="Istio",
        cn="I",
        sans=[cx.ISTIOD_SAN],
        passphrase=PASSPHRASE,
        key_passphrase=PASSPHRASE,
        workers=2,
    )
    assert [r.cluster for r in recs] == names
    assert len({r.fingerprint for r in recs}) == 6
    for r in store.status(PASSPHRASE):
        assert r.key_check == "passed"
