"""Issue 23, "Also": roots and CSRs from random combinations of extensions.

Whatever combination airgap accepts (``ca init --adopt-cert``, then ``ca sign`` of the CSR) must
yield a chain that both oracles accept: ``openssl verify`` (with the TLS purposes, which check the
CAs' EKUs as Go nests them) and ``cryptography.x509.verification`` (client and server verifiers),
for a workload certificate (SPIFFE ID, clientAuth) and istiod's serving certificate (its DNS name,
serverAuth) that the intermediate's key signs, as istiod would.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification as v
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from airgap.errors import AirgapError
from tests.helpers import openssl

ISTIOD = "istiod.istio-system.svc"
SPIFFE = "spiffe://cluster.local/ns/default/sa/default"


@dataclass(frozen=True)
class RootShape:
    """The extensions of a hostile or odd root (None: the extension is absent)."""

    basic: tuple[bool, int | None, bool] | None  # (ca, pathlen, critical)
    key_usage: tuple[bool, bool, bool] | None  # (keyCertSign, cRLSign, digitalSignature)
    eku: tuple[str, ...] | None
    name_constraints: tuple[str, str] | None  # ("permitted" | "excluded", DNS name)
    ski: bool
    aki: bool
    digest: str


EKUS = {"serverAuth": EKU.SERVER_AUTH, "clientAuth": EKU.CLIENT_AUTH, "codeSigning": EKU.CODE_SIGNING,
        "any": EKU.ANY_EXTENDED_KEY_USAGE}  # fmt: skip


def _mostly(good: object, other: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """``good`` about two times in three: most roots are then accepted, so both oracles run often."""
    return st.one_of(st.just(good), st.just(good), other)


roots = st.builds(
    RootShape,
    basic=_mostly(
        (True, None, True), st.none() | st.tuples(st.booleans(), st.none() | st.integers(0, 2), st.booleans())
    ),
    key_usage=_mostly((True, True, False), st.none() | st.tuples(st.booleans(), st.booleans(), st.booleans())),
    eku=_mostly(None, st.lists(st.sampled_from(sorted(EKUS)), min_size=1, max_size=3, unique=True).map(tuple)),
    name_constraints=_mostly(
        None,
        st.tuples(
            st.sampled_from(["permitted", "excluded"]), st.sampled_from(["istio-system.svc", ISTIOD, "example.com"])
        ),
    ),
    ski=st.booleans(),
    aki=st.booleans(),
    digest=st.sampled_from(["sha256", "sha384"]),
)
# What a requester may put in a CSR (airgap must ignore all of it but the key), and the --san values.
csr_extras = st.lists(st.sampled_from(["ca", "san", "ku", "eku", "nc"]), unique=True)
sans = st.sampled_from(
    [(f"DNS:{ISTIOD}",), (f"DNS:{ISTIOD}", f"URI:{SPIFFE}"), ("DNS:example.com",), (f"URI:{SPIFFE}",)]
)

GOOD = RootShape((True, None, True), (True, True, True), None, None, True, True, "sha256")
# pathlen 1, no cRLSign (Istio's Makefile roots), both EKUs, a permitted subtree, no SKI/AKI, SHA-384
ODD_BUT_FINE = RootShape(
    (True, 1, True), (True, False, False), ("clientAuth", "serverAuth"), ("permitted", "istio-system.svc"),
    False, False, "sha384",
)  # fmt: skip


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _root(shape: RootShape, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder().subject_name(_name("Root CA")).issuer_name(_name("Root CA"))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=365))
    )  # fmt: skip
    if shape.basic is not None:
        ca, pathlen, critical = shape.basic
        b = b.add_extension(x509.BasicConstraints(ca, pathlen if ca else None), critical)
    if shape.key_usage is not None:
        cert_sign, crl_sign, digital = shape.key_usage
        b = b.add_extension(
            x509.KeyUsage(digital, False, False, False, False, cert_sign, crl_sign, False, False), critical=True
        )
    if shape.eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage([EKUS[e] for e in shape.eku]), critical=False)
    if shape.name_constraints is not None:
        kind, dns = shape.name_constraints
        names = [x509.DNSName(dns)]
        nc = x509.NameConstraints(names, None) if kind == "permitted" else x509.NameConstraints(None, names)
        b = b.add_extension(nc, critical=True)
    if shape.ski:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if shape.aki:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    return b.sign(key, hashes.SHA256() if shape.digest == "sha256" else hashes.SHA384())


def _csr(key: ec.EllipticCurvePrivateKey, extras: list[str]) -> bytes:
    b = x509.CertificateSigningRequestBuilder().subject_name(_name("evil"))
    if "ca" in extras:
        b = b.add_extension(x509.BasicConstraints(True, 5), critical=True)
    if "san" in extras:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), critical=False)
    if "ku" in extras:
        b = b.add_extension(x509.KeyUsage(True, True, True, True, True, True, True, False, False), critical=True)
    if "eku" in extras:
        b = b.add_extension(x509.ExtendedKeyUsage([EKU.CODE_SIGNING]), critical=False)
    if "nc" in extras:
        b = b.add_extension(x509.NameConstraints([x509.DNSName("evil.example")], None), critical=True)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _leaf(
    inter: x509.Certificate, key: ec.EllipticCurvePrivateKey, san: x509.GeneralName, usage: x509.ObjectIdentifier
) -> x509.Certificate:
    """A certificate as istiod signs them with the intermediate's key: a workload's or its own."""
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(inter.subject)
        .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(False, None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName([san]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip


def _pem(folder: Path, name: str, cert: x509.Certificate) -> Path:
    p = folder / name
    p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return p


def _both_oracles_accept(
    folder: Path, root: x509.Certificate, inter: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    store = v.Store([root])
    workload = _leaf(inter, key, x509.UniformResourceIdentifier(SPIFFE), EKU.CLIENT_AUTH)
    v.PolicyBuilder().store(store).build_client_verifier().verify(workload, [inter])
    paths = [_pem(folder, n, c) for n, c in (("root.pem", root), ("inter.pem", inter), ("workload.pem", workload))]
    r = openssl("verify", "-purpose", "sslclient", "-CAfile", paths[0], "-untrusted", paths[1], paths[2], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    san = inter.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if ISTIOD in san.get_values_for_type(x509.DNSName):  # istiod's serving certificate, when its name is allowed
        serving = _leaf(inter, key, x509.DNSName(ISTIOD), EKU.SERVER_AUTH)
        v.PolicyBuilder().store(store).build_server_verifier(x509.DNSName(ISTIOD)).verify(serving, [inter])
        p = _pem(folder, "serving.pem", serving)
        r = openssl("verify", "-purpose", "sslserver", "-CAfile", paths[0], "-untrusted", paths[1], p, check=False)
        assert r.returncode == 0, r.stdout + r.stderr


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=roots, extras=csr_extras, san=sans, by=st.sampled_from(["sign", "issue"]))
@example(shape=GOOD, extras=["ca", "san", "ku", "eku", "nc"], san=(f"DNS:{ISTIOD}", f"URI:{SPIFFE}"), by="sign")
@example(shape=ODD_BUT_FINE, extras=[], san=(f"DNS:{ISTIOD}",), by="issue")
def test_every_chain_airgap_accepts_validates_with_openssl_and_cryptography(
    shape: RootShape, extras: list[str], san: tuple[str, ...], by: str
) -> None:
    """``by``: the intermediate is ``ca sign``'s (a CSR with random extensions) or ``ca issue``'s."""
    from airgap.core.csr import verify_csr
    from airgap.core.keys import load_private_key
    from airgap.offline.adopt import adopt_root
    from airgap.offline.issue import issue_intermediates
    from airgap.offline.sign import sign_csr

    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = _root(shape, root_key)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        cert_path = _pem(folder, "adopt-cert.pem", root)
        key_path = folder / "adopt-key.pem"
        key_path.write_bytes(
            root_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        pki = folder / "pki"
        try:
            adopt_root(pki, cert_path=cert_path, key_path=key_path, key_passphrase=None, passphrase=None, notify=None)
            if by == "sign":
                csr = verify_csr(_csr(inter_key, extras), source="csr")
                sign_csr(pki, csr, "c1", out=folder / "out", days=30, passphrase=None, sans=san, notify=None)
            else:
                issue_intermediates(pki, ["c1"], key_type="ecdsa-p256", days=30, org="Istio", cn="Intermediate CA",
                                    sans=san, passphrase=None, key_passphrase=None, notify=None, workers=1)  # fmt: skip
                inter_key = load_private_key(pki / "c1" / "ca-key.pem", None)  # type: ignore[assignment]
        except AirgapError as exc:
            event(f"refused (exit {exc.exit_code})")
            return  # refused: nothing to prove about a chain airgap did not make
        event(f"accepted ({by}): both oracles checked")
        inter = x509.load_pem_x509_certificate((pki / "c1" / "ca-cert.pem").read_bytes())
        assert inter.public_key() == inter_key.public_key()
        _both_oracles_accept(folder, root, inter, inter_key)
