"""The root-signed CRL: openssl verifies it and lists the revoked serial; pkilint finds no error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from airgap.errors import InvalidInput, Refused
from airgap.offline.ca import CAStore
from airgap.offline.crl import parse_reason, read_state, refresh_crl, revoke
from tests.conftest import PASSPHRASE
from tests.helpers import openssl, tree

LINT_CRL = Path(sys.executable).parent / "lint_crl"


def _serial(pki: Path, cluster: str) -> str:
    return format(x509.load_pem_x509_certificate((pki / cluster / "ca-cert.pem").read_bytes()).serial_number, "X")


def test_revoke_writes_a_crl_openssl_verifies_and_lists_the_serial(pki: Path) -> None:
    serial = _serial(pki, "c1")
    rev, rec = revoke(pki, "c1", reason="keyCompromise", passphrase=PASSPHRASE)
    assert rev.serial.upper() == serial and rec.crl_number == 1
    crl = pki / "ca-crl.pem"
    r = openssl("crl", "-in", crl, "-CAfile", pki / "root-cert.pem", "-verify", "-noout", "-text")
    text = r.stdout.decode() + r.stderr.decode()
    assert "verify OK" in text
    listed = [int(ln.split(":", 1)[1], 16) for ln in text.splitlines() if ln.strip().startswith("Serial Number:")]
    assert listed == [int(serial, 16)]
    assert "Key Compromise" in text and "X509v3 CRL Number" in text and "Authority Key Identifier" in text
    # every cluster folder carries the same CRL, for the cacerts Secret and bundles
    for c in ("c1", "c2"):
        assert (pki / c / "ca-crl.pem").read_bytes() == crl.read_bytes()
    # a CRL signed by another root does not verify
    other = pki.parent / "other"
    CAStore(other).init_root(key_type="ecdsa-p256", days=10, org="X", cn="Other", passphrase=None)
    bad = openssl("crl", "-in", crl, "-CAfile", other / "root-cert.pem", "-verify", "-noout", check=False)
    assert "verify OK" not in (bad.stdout + bad.stderr).decode()


def _lint_crl(path: Path, kind: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_CRL), "lint", "-t", kind, "-p", "PKIX", str(path)], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("kind", ["CRL", "ARL"])  # it lists CA certificates only, so it is also an ARL
def test_pkilint_reports_no_error_on_the_crl(pki: Path, kind: str) -> None:
    revoke(pki, "c1", reason="superseded", passphrase=PASSPHRASE)
    revoke(pki, "c2", reason="unspecified", passphrase=PASSPHRASE)
    r = _lint_crl(pki / "ca-crl.pem", kind)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr


def test_pkilint_would_catch_a_bad_crl(pki: Path) -> None:
    """The linter is live: a CRL without a CRL number or authority key identifier is reported."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes, serialization

    from airgap.core.keys import load_private_key

    root = x509.load_pem_x509_certificate((pki / "root-cert.pem").read_bytes())
    key = load_private_key(pki / "root-key.pem", PASSPHRASE)
    now = dt.datetime.now(dt.UTC)
    bad = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    f = pki / "bad-crl.pem"
    f.write_bytes(bad.public_bytes(serialization.Encoding.PEM))
    r = _lint_crl(f, "CRL")
    assert r.returncode != 0 and "ERROR" in r.stdout, r.stdout


def test_refresh_increments_the_number_and_keeps_entries(pki: Path) -> None:
    revoke(pki, "c1", reason="cessation-of-operation", passphrase=PASSPHRASE)
    rec = refresh_crl(pki, passphrase=PASSPHRASE, next_update_days=7)
    assert rec.crl_number == 2 and len(rec.revoked_serials) == 1
    crl = x509.load_pem_x509_crl((pki / "ca-crl.pem").read_bytes())
    assert crl.next_update_utc is not None
    assert (crl.next_update_utc - crl.last_update_utc).days == 7
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert read_state(pki).crl_number == 2


def test_an_empty_crl_is_valid(pki: Path) -> None:
    rec = refresh_crl(pki, passphrase=PASSPHRASE)
    assert rec.revoked_serials == ()
    r = openssl("crl", "-in", pki / "ca-crl.pem", "-CAfile", pki / "root-cert.pem", "-verify", "-noout")
    assert "verify OK" in (r.stdout + r.stderr).decode()


def test_refusals_change_nothing(pki: Path) -> None:
    revoke(pki, "c1", reason="keyCompromise", passphrase=PASSPHRASE)
    before = {p: (pki / p).read_bytes() for p in tree(pki) if (pki / p).is_file()}
    with pytest.raises(Refused, match="already revoked"):
        revoke(pki, "c1", reason="keyCompromise", passphrase=PASSPHRASE)
    with pytest.raises(InvalidInput, match="unknown revocation reason"):
        revoke(pki, "c2", reason="bored", passphrase=PASSPHRASE)
    with pytest.raises(Refused, match="no intermediate for cluster c9"):
        revoke(pki, "c9", reason="superseded", passphrase=PASSPHRASE)
    with pytest.raises(InvalidInput, match="wrong passphrase"):
        revoke(pki, "c2", reason="superseded", passphrase=b"nope")
    with pytest.raises(Refused, match="has serial"):
        revoke(pki, "c2", reason="superseded", passphrase=PASSPHRASE, serial="abc")
    after = {p: (pki / p).read_bytes() for p in tree(pki) if (pki / p).is_file()}
    assert after == before


def test_ca_list_marks_a_revoked_intermediate(pki: Path) -> None:
    revoke(pki, "c2", reason="keyCompromise", passphrase=PASSPHRASE)
    rows = {r.cluster: r for r in CAStore(pki).status(None)}
    assert rows["c2"].status == "revoked" and any("revoked" in p for p in rows["c2"].problems)
    assert rows["c1"].status == "valid"


@pytest.mark.parametrize(
    ("given", "name"),
    [("keyCompromise", "keyCompromise"), ("key-compromise", "keyCompromise"), ("CA_COMPROMISE", "cACompromise")],
)
def test_reason_names(given: str, name: str) -> None:
    assert parse_reason(given) == name
