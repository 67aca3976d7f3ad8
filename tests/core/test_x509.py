"""check_ca_material: the istiod-style checks that bundle import and ca list rely on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from airgap.core import x509 as cx
from airgap.core.keys import load_private_key
from airgap.errors import VerificationError
from tests.conftest import PASSPHRASE


def _files(pki: Path, cluster: str = "c1") -> dict[str, bytes]:
    d = pki / cluster
    return {n: (d / n).read_bytes() for n in ("ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem")}


def _check(pki: Path, f: dict[str, bytes], key_cluster: str = "c1", at: dt.datetime | None = None) -> cx.CAMaterial:
    return cx.check_ca_material(
        ca_cert_pem=f["ca-cert.pem"],
        ca_key=load_private_key(pki / key_cluster / "ca-key.pem", PASSPHRASE),
        ca_key_pem=f["ca-key.pem"],
        cert_chain_pem=f["cert-chain.pem"],
        root_cert_pem=f["root-cert.pem"],
        at=at,
    )


def test_good_material_passes_and_repr_hides_the_key(pki: Path) -> None:
    m = _check(pki, _files(pki))
    assert m.fingerprint == cx.fingerprint(x509.load_pem_x509_certificate(_files(pki)["ca-cert.pem"]))
    assert b"PRIVATE KEY" not in repr(m).encode() and "ca_key_pem" not in repr(m)


def test_key_of_another_cluster(pki: Path) -> None:
    with pytest.raises(VerificationError, match="does not match"):
        _check(pki, _files(pki), key_cluster="c2")


def test_chain_must_start_with_ca_cert(pki: Path) -> None:
    f = _files(pki)
    f["cert-chain.pem"] = f["root-cert.pem"] + f["ca-cert.pem"]
    with pytest.raises(VerificationError, match=r"does not start with ca-cert\.pem"):
        _check(pki, f)


def test_foreign_root(pki: Path, tmp_path: Path) -> None:
    from airgap.offline.ca import CAStore

    other = CAStore(tmp_path / "o")
    other.init_root(key_type="ecdsa-p256", days=10, org="Istio", cn="Root CA", passphrase=None)
    f = _files(pki)
    f["root-cert.pem"] = (tmp_path / "o" / "root-cert.pem").read_bytes()
    with pytest.raises(VerificationError, match=r"does not verify to root-cert\.pem"):
        _check(pki, f)


def test_root_cert_not_a_ca(pki: Path) -> None:
    f = _files(pki)
    f["ca-cert.pem"] = f["root-cert.pem"]
    f["cert-chain.pem"] = f["root-cert.pem"]
    with pytest.raises(VerificationError):
        _check(pki, f)


def test_expired(pki: Path) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=800)
    with pytest.raises(VerificationError, match="expired on"):
        _check(pki, _files(pki), at=later)


def test_status_thresholds(pki: Path) -> None:
    cert = x509.load_pem_x509_certificate(_files(pki)["ca-cert.pem"])
    end = cert.not_valid_after_utc
    assert cx.status_of(cert, at=end - dt.timedelta(days=91)) == "valid"
    assert cx.status_of(cert, at=end - dt.timedelta(days=89)) == "expiring"
    assert cx.status_of(cert, at=end) == "expired"
