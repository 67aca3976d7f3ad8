"""`ca init --adopt-cert --adopt-key`: a root made with openssl (as Istio's Makefile does) moves to airgap."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tests.conftest import PASSPHRASE
from tests.helpers import one_error_line, openssl, run_cli, tree

ROOT_CONF = """[ req ]
encrypt_key = no
prompt = no
utf8 = yes
default_md = sha256
req_extensions = req_ext
x509_extensions = req_ext
distinguished_name = req_dn
[ req_ext ]
subjectKeyIdentifier = hash
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign
[ req_dn ]
O = Istio
CN = Root CA
"""


def makefile_root(tmp: Path, *, ca: bool = True, days: int = 3650) -> tuple[Path, Path]:
    """root-key.pem and root-cert.pem the way Makefile.selfsigned.mk makes them (EC P-256 here, for speed)."""
    key, cert, conf = tmp / "root-key.pem", tmp / "root-cert.pem", tmp / "root-ca.conf"
    conf.write_text(ROOT_CONF if ca else ROOT_CONF.replace("CA:true", "CA:false").replace(", keyCertSign", ""))
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    openssl("req", "-new", "-key", key, "-config", conf, "-out", tmp / "root-cert.csr")
    openssl("x509", "-req", "-days", str(days), "-signkey", key, "-extensions", "req_ext", "-extfile", conf,
            "-in", tmp / "root-cert.csr", "-out", cert)  # fmt: skip
    return cert, key


def test_adopt_an_openssl_root_then_issue_and_sign(tmp_path: Path, passfile: Path) -> None:
    cert, key = makefile_root(tmp_path)
    pki = tmp_path / "pki"
    keys = tmp_path / "keys"
    assert run_cli("keys", "new", "officer", "--out", keys, "--passphrase-file", passfile).code == 0
    r = run_cli("ca", "init", "--dir", pki, "--adopt-cert", cert, "--adopt-key", key, "--passphrase-file", passfile,
                "--log-key", keys / "officer.key")  # fmt: skip
    assert r.code == 0, r.err
    assert "adopted" in r.out
    stored = pki / "root-key.pem"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stored.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    k = serialization.load_pem_private_key(stored.read_bytes(), PASSPHRASE)
    orig = serialization.load_pem_private_key(key.read_bytes(), None)
    assert k.public_key() == orig.public_key()
    assert (
        openssl("x509", "-in", pki / "root-cert.pem", "-noout", "-fingerprint").stdout
        == openssl("x509", "-in", cert, "-noout", "-fingerprint").stdout
    )
    log = [json.loads(line) for line in (pki / "ceremony.log").read_text().splitlines()]
    assert [e["act"] for e in log] == ["log-start", "adopt"]
    # the adopted root signs: issue and verify with openssl against the original certificate
    pf = ("--passphrase-file", passfile, "--log-key", keys / "officer.key")
    r = run_cli("ca", "issue", "c1", "--dir", pki, "--key-type", "ecdsa-p256", *pf)
    assert r.code == 0, r.err
    assert openssl("verify", "-CAfile", cert, pki / "c1" / "ca-cert.pem").returncode == 0
    assert run_cli("audit", "verify", pki, "--trust", keys / "officer.pub").code == 0


def test_adopt_refusals(tmp_path: Path, passfile: Path) -> None:
    (tmp_path / "good").mkdir()
    good_cert, good_key = makefile_root(tmp_path / "good")
    (tmp_path / "leaf").mkdir()
    leaf_cert, leaf_key = makefile_root(tmp_path / "leaf", ca=False)
    (tmp_path / "other").mkdir()
    _, other_key = makefile_root(tmp_path / "other")
    weak = tmp_path / "weak.key"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", weak)
    existing = tmp_path / "existing"
    assert run_cli("ca", "init", "--dir", existing, "--key-type", "ecdsa-p256", "--no-passphrase").code == 0
    cases: list[tuple[Path, tuple[str | Path, ...], int, tuple[str, ...]]] = [
        (tmp_path / "p1", ("--adopt-cert", good_cert, "--adopt-key", other_key), 1, ("is not the key of",)),
        (tmp_path / "p2", ("--adopt-cert", leaf_cert, "--adopt-key", leaf_key), 4, ("not a CA certificate",)),
        (tmp_path / "p3", ("--adopt-cert", good_cert, "--adopt-key", weak), 3, ("RSA key of 2048 bits",)),
        (tmp_path / "p4", ("--adopt-cert", good_key, "--adopt-key", good_key), 3, ("not a valid PEM certificate",)),
        (tmp_path / "p5", ("--adopt-cert", good_cert), 3, ("--adopt-cert and --adopt-key go together",)),
        (existing, ("--adopt-cert", good_cert, "--adopt-key", good_key), 4, ("already exists",)),
    ]
    for pki, args, code, needles in cases:
        before = tree(pki)
        r = run_cli("ca", "init", "--dir", pki, *args, "--passphrase-file", passfile)
        assert r.code == code, (args, r.err)
        one_error_line(r, *needles)
        assert tree(pki) == before, args


def test_an_adopted_subject_with_terminal_controls_is_shown_escaped(tmp_path: Path, passfile: Path) -> None:
    """The subject of a root made elsewhere is untrusted text: ESC, BEL, a newline and a bidi override
    in it reach the terminal escaped, as 'ca list' shows them."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil\x1b]0;pwned\x07\x1b[31mRED"),
        x509.NameAttribute(NameOID.COMMON_NAME, "root \u202egnp.exe\n2nd line"),
    ])  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
        .sign(k, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "root.pem", tmp_path / "root.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pki = tmp_path / "pki"
    r = run_cli("ca", "init", "--dir", pki, "--adopt-cert", cert_path, "--adopt-key", key_path,
                "--passphrase-file", passfile)  # fmt: skip
    assert r.code == 0, r.err
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in r.out
    subject = next(line for line in r.out.splitlines() if line.lstrip().startswith("subject"))
    assert "\\x1b]0" in subject and "\\u202e" in subject and "\\x0a2nd line" in subject
