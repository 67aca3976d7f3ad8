"""``airgap.core.pathcheck``: what the path validator and the root rules say, certificate by certificate."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from airgap.core import x509 as cx
from airgap.core.pathcheck import can_sign_crls, root_problems, validate_intermediate
from airgap.errors import VerificationError

KEY = ec.generate_private_key(ec.SECP256R1())


def _root(*extra: tuple[x509.ExtensionType, bool], bc: x509.BasicConstraints | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Root CA")])
    b = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(KEY.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(bc or x509.BasicConstraints(True, None), critical=True)
    )  # fmt: skip
    for ext, critical in extra:
        b = b.add_extension(ext, critical)
    return b.sign(KEY, hashes.SHA256())


def _ku(cert_sign: bool = True, crl_sign: bool = True) -> tuple[x509.KeyUsage, bool]:
    return x509.KeyUsage(True, False, False, False, False, cert_sign, crl_sign, False, False), True


def _inter(root: x509.Certificate, sans: list[str]) -> x509.Certificate:
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    b = cx.intermediate_builder(pub, cluster="c1", root_cert=root, org="Istio", cn="I", days=1, sans=sans)
    return b.sign(KEY, hashes.SHA256())


def test_a_good_root_has_no_problems_and_its_intermediate_validates() -> None:
    root = _root(_ku())
    assert root_problems(root) == [] and can_sign_crls(root)
    validate_intermediate(_inter(root, [cx.ISTIOD_SAN]), [root])
    validate_intermediate(_inter(root, ["URI:spiffe://cluster.local/ns/a/sa/b"]), [root])  # no DNS SAN: client only


@pytest.mark.parametrize(
    ("root", "problem"),
    [
        (_root(_ku(), bc=x509.BasicConstraints(True, 0)), "pathlen:0 allows no intermediate"),
        (_root(_ku(cert_sign=False)), "keyUsage lacks keyCertSign"),
        (_root(), "keyUsage is missing"),
        (_root(_ku(), (x509.ExtendedKeyUsage([EKU.ANY_EXTENDED_KEY_USAGE]), False)), "lacks serverAuth, clientAuth"),
        (_root(_ku(), (x509.ExtendedKeyUsage([EKU.CLIENT_AUTH]), False)), "lacks serverAuth:"),
    ],
    ids=["pathlen0", "no-keyCertSign", "no-keyUsage", "eku-any", "eku-client-only"],
)
def test_root_problems_name_the_rule(root: x509.Certificate, problem: str) -> None:
    (found,) = root_problems(root)
    assert problem in found
    with pytest.raises(VerificationError, match=problem.split(":")[0]):
        validate_intermediate(_inter(root, [cx.ISTIOD_SAN]), [root])


def test_name_constraints_are_checked_against_the_intermediates_sans() -> None:
    root = _root(_ku(), (x509.NameConstraints([x509.DNSName("istio-system.svc")], None), True))
    validate_intermediate(_inter(root, [cx.ISTIOD_SAN]), [root])
    with pytest.raises(VerificationError, match="no permitted name constraints matched SAN"):
        validate_intermediate(_inter(root, ["DNS:example.com"]), [root])


def test_a_root_without_crl_sign_is_a_root_but_signs_no_crl() -> None:
    root = _root(_ku(crl_sign=False))
    assert root_problems(root) == [] and not can_sign_crls(root)


def test_an_expired_chain_is_validated_inside_its_validity() -> None:
    """Expiry is ``ca list``'s own finding: the validator is asked about the chain's shape only."""
    root = _root(_ku())
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    validate_intermediate(_inter(root, [cx.ISTIOD_SAN]), [root], at=later)
