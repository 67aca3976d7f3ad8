"""`airgap ca sign CSR` through the CLI, against real openssl: only the public key is taken.

Every refusal: its exit code, its one stderr line, and nothing written (PKI folder unchanged, no --out).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from airgap.offline.ca import CAStore
from tests.helpers import Result, one_error_line, openssl, run_cli, run_proc, tree

EVIL_SUBJECT = "/CN=Root CA/O=Evil Corp/L=c1/OU=\\x1b[31mred"


def openssl_csr(tmp: Path, name: str, *newkey: str, der: bool = False) -> tuple[Path, Path]:
    """A CSR from `openssl req` asking for everything the profile forbids: CA pathlen:5, SANs, a subject."""
    key, csr = tmp / f"{name}.key", tmp / f"{name}.csr"
    openssl(
        "req", "-new", *(newkey or ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")), "-nodes",
        "-keyout", key, "-out", csr, "-subj", EVIL_SUBJECT,
        "-addext", "basicConstraints=critical,CA:true,pathlen:5",
        "-addext", "subjectAltName=DNS:evil.example,URI:spiffe://evil/ns/default/sa/x,IP:10.0.0.1",
        "-addext", "keyUsage=critical,digitalSignature,keyCertSign,cRLSign,keyAgreement",
        "-addext", "extendedKeyUsage=serverAuth,clientAuth",
        "-addext", "nameConstraints=critical,permitted;DNS:evil.example",
        *(("-outform", "DER") if der else ()),
    )  # fmt: skip
    return key, csr


def sign(pki: Path, csr: Path, out: Path, passfile: Path, *extra: str | Path, cluster: str = "c3") -> Result:
    return run_cli("ca", "sign", csr, "--cluster", cluster, "--dir", pki, "--out", out, "--passphrase-file", passfile,
                   *extra)  # fmt: skip


@pytest.mark.parametrize("der", [False, True], ids=["pem", "der"])
def test_openssl_csr_comes_back_with_exactly_the_profile(pki: Path, tmp_path: Path, passfile: Path, der: bool) -> None:
    key, csr = openssl_csr(tmp_path, "c3", der=der)
    out = tmp_path / "signed"
    r = run_cli("ca", "sign", csr, "--cluster", "c3", "--dir", pki, "--out", out, "--passphrase-file", passfile)
    assert r.code == 0, r.err
    assert "held elsewhere" in r.out
    cert = x509.load_pem_x509_certificate((out / "ca-cert.pem").read_bytes())
    # the subject is the profile's, the CSR's is ignored
    assert cert.subject.rfc4514_string() == "CN=Intermediate CA,L=c3,O=Istio"
    # exactly the five profile extensions, with the profile's values
    oids = {e.oid for e in cert.extensions}
    assert oids == {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == []
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.key_agreement and not ku.key_encipherment
    # the key is the CSR's
    k = serialization.load_pem_private_key(key.read_bytes(), None)
    assert cert.public_key() == k.public_key()
    # openssl verifies it against the root; the files are the Istio layout, no key anywhere
    r2 = openssl("verify", "-CAfile", pki / "root-cert.pem", out / "ca-cert.pem")
    assert r2.stdout.decode().strip().endswith(": OK")
    assert sorted(p.name for p in out.iterdir()) == ["ca-cert.pem", "cert-chain.pem", "root-cert.pem"]
    assert sorted(p.name for p in (pki / "c3").iterdir()) == ["ca-cert.pem", "cert-chain.pem", "root-cert.pem"]
    assert (out / "cert-chain.pem").read_bytes() == (pki / "c3" / "cert-chain.pem").read_bytes()
    inv = json.loads((pki / "inventory.json").read_bytes())
    rec = inv["intermediates"][-1]
    assert rec["cluster"] == "c3" and rec["key_held"] == "elsewhere"
    spki = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert rec["key_id"] == hashes_hex(spki)
    csr_der = openssl("req", "-in", csr, "-inform", "DER" if der else "PEM", "-outform", "DER").stdout
    assert rec["csr_sha256"] == hashes_hex(csr_der)
    # the records of `ca issue` keep their old form
    assert "key_held" not in inv["intermediates"][0]
    # ca list: the key check says where the key is
    r3 = run_cli("ca", "list", "--dir", pki, "--json", "--passphrase-file", passfile)
    rows = {i["cluster"]: i for i in json.loads(r3.out)["intermediates"]}
    assert rows["c3"]["key_check"] == "held-elsewhere" and rows["c3"]["problems"] == []
    assert rows["c1"]["key_check"] == "passed"


def hashes_hex(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_workload_cert_from_the_jump_host_key_verifies_to_the_root(pki: Path, tmp_path: Path, passfile: Path) -> None:
    key, csr = openssl_csr(tmp_path, "c3")
    out = tmp_path / "signed"
    assert sign(pki, csr, out, passfile).code == 0
    # the jump host signs a workload cert with its own key, as istiod would
    wl_key, wl_csr, wl_crt = tmp_path / "wl.key", tmp_path / "wl.csr", tmp_path / "wl.crt"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", wl_key,
            "-out", wl_csr, "-subj", "/O=cluster.local")  # fmt: skip
    ext = tmp_path / "wl.ext"
    ext.write_text("subjectAltName=URI:spiffe://cluster.local/ns/default/sa/app\nbasicConstraints=critical,CA:false\n")
    openssl("x509", "-req", "-in", wl_csr, "-CA", out / "ca-cert.pem", "-CAkey", key, "-CAcreateserial",
            "-days", "1", "-extfile", ext, "-out", wl_crt)  # fmt: skip
    r = openssl("verify", "-CAfile", out / "root-cert.pem", "-untrusted", out / "cert-chain.pem", wl_crt)
    assert r.stdout.decode().strip().endswith(": OK")
    # and not without the intermediate
    assert openssl("verify", "-CAfile", out / "root-cert.pem", wl_crt, check=False).returncode != 0


def _tampered(csr: Path, tmp: Path) -> Path:
    der = bytearray(openssl("req", "-in", csr, "-outform", "DER").stdout)
    der[-3] ^= 0x01  # inside the signature
    p = tmp / "tampered.der"
    p.write_bytes(bytes(der))
    return p


def _csr_with(tmp: Path, key: object, name: str) -> Path:
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
    csr = b.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    p = tmp / f"{name}.csr"
    p.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return p


def test_refusals_exit_code_one_line_nothing_written(pki: Path, tmp_path: Path, passfile: Path) -> None:
    _, good = openssl_csr(tmp_path, "good")
    garbage = tmp_path / "garbage.csr"
    garbage.write_bytes(
        b"-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3NyIGF0IGFsbA==\n-----END CERTIFICATE REQUEST-----\n"
    )
    two = tmp_path / "two.csr"
    two.write_bytes(good.read_bytes() * 2)
    huge = tmp_path / "huge.csr"
    huge.write_bytes(b"0" * (64 * 1024 + 1))
    empty = tmp_path / "empty.csr"
    empty.write_bytes(b"")
    cert_not_csr = pki / "c1" / "ca-cert.pem"
    rsa2048 = _csr_with(tmp_path, rsa.generate_private_key(65537, 2048), "rsa2048")
    p521 = _csr_with(tmp_path, ec.generate_private_key(ec.SECP521R1()), "p521")
    k1 = _csr_with(tmp_path, ec.generate_private_key(ec.SECP256K1()), "k1")
    ed = _csr_with(tmp_path, ed25519.Ed25519PrivateKey.generate(), "ed25519")
    # the key of an existing cluster, in a fresh CSR
    c1_key = serialization.load_pem_private_key(
        (pki / "c1" / "ca-key.pem").read_bytes(), b"correct horse battery staple"
    )
    reused = _csr_with(tmp_path, c1_key, "reused")
    cases: list[tuple[tuple[str | Path, ...], int, tuple[str, ...]]] = [
        ((garbage, "--cluster", "c3"), 3, ("not a valid PEM certificate request",)),
        ((two, "--cluster", "c3"), 3, ("one CERTIFICATE REQUEST block",)),
        ((huge, "--cluster", "c3"), 3, ("too large",)),
        ((empty, "--cluster", "c3"), 3, ("empty",)),
        ((cert_not_csr, "--cluster", "c3"), 3, ("not a PEM certificate request",)),
        ((tmp_path / "missing.csr", "--cluster", "c3"), 3, ("not found",)),
        ((_tampered(good, tmp_path), "--cluster", "c3"), 1, ("signature",)),
        ((rsa2048, "--cluster", "c3"), 3, ("RSA key of 2048 bits", "3072")),
        ((p521, "--cluster", "c3"), 3, ("secp521r1", "P-256 or P-384")),
        ((k1, "--cluster", "c3"), 3, ("secp256k1",)),
        ((ed, "--cluster", "c3"), 3, ("not allowed",)),
        ((good, "--cluster", "c1"), 4, ("already has an intermediate",)),
        ((reused, "--cluster", "c3"), 4, ("already certified for cluster c1",)),
        ((good, "--cluster", "c3", "--days", "4000"), 4, ("outlive the root",)),
        ((good, "--cluster", "bad/name"), 3, ("cluster name",)),
        ((good,), 3, ("--cluster NAME is required",)),
        ((good, "--cluster", "c3", "--days", "0"), 3, ("--days must be positive",)),
        ((good, "--cluster", "c3", "--san", "bogus"), 3, ("--san",)),
    ]
    before = tree(pki)
    inv = (pki / "inventory.json").read_bytes()
    for args, code, needles in cases:
        out = tmp_path / "out"
        r = run_cli("ca", "sign", *args, "--dir", pki, "--out", out, "--passphrase-file", passfile)
        assert r.code == code, (args, r.err)
        one_error_line(r.err, *needles)
        assert tree(pki) == before, args
        assert (pki / "inventory.json").read_bytes() == inv
        assert not out.exists(), args


def test_wrong_passphrase_and_existing_out(pki: Path, tmp_path: Path, passfile: Path) -> None:
    _, good = openssl_csr(tmp_path, "good")
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    before = tree(pki)
    r = run_cli(
        "ca", "sign", good, "--cluster", "c3", "--dir", pki, "--out", tmp_path / "o", "--passphrase-file", wrong
    )
    assert r.code == 3
    one_error_line(r.err, "wrong passphrase")
    (tmp_path / "exists").mkdir()
    r = sign(pki, good, tmp_path / "exists", passfile)
    assert r.code == 4
    one_error_line(r, "exists", "refusing to overwrite")
    assert tree(pki) == before and not (tmp_path / "o").exists()
    assert list((tmp_path / "exists").iterdir()) == []


def test_rsa_3072_csr_and_json(pki: Path, tmp_path: Path, passfile: Path) -> None:
    _, csr = openssl_csr(tmp_path, "rsa", "-newkey", "rsa:3072")
    r = sign(pki, csr, tmp_path / "o", passfile, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)["signed"][0]
    assert doc["cluster"] == "c3" and doc["key_held"] == "elsewhere" and len(doc["csr_sha256"]) == 64
    cert = x509.load_pem_x509_certificate((tmp_path / "o" / "ca-cert.pem").read_bytes())
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_encipherment  # the profile's RSA key usage, as `ca issue` gives it


def test_signed_csr_is_a_logged_act(tmp_path: Path, passfile: Path) -> None:
    pki, keys = tmp_path / "pki", tmp_path / "keys"
    pf = ("--passphrase-file", passfile)
    assert run_cli("keys", "new", "officer", "--out", keys, *pf).code == 0
    lk = ("--log-key", keys / "officer.key")
    assert run_cli("ca", "init", "--dir", pki, "--key-type", "ecdsa-p256", *pf, *lk).code == 0
    _, csr = openssl_csr(tmp_path, "c3")
    # a logged PKI refuses an unlogged act
    before = tree(pki)
    r = sign(pki, csr, tmp_path / "o", passfile)
    assert r.code == 4
    one_error_line(r, "keeps a ceremony log", "--log-key")
    assert tree(pki) == before and not (tmp_path / "o").exists()
    r = sign(pki, csr, tmp_path / "o", passfile, *lk)
    assert r.code == 0, r.err
    entries = [json.loads(line) for line in (pki / "ceremony.log").read_text().splitlines()]
    last = entries[-1]
    assert last["act"] == "sign" and last["params"]["cluster"] == "c3"
    assert last["params"]["key_held"] == "elsewhere"
    der = openssl("req", "-in", csr, "-outform", "DER").stdout
    assert last["params"]["csr_sha256"] == hashes_hex(der)
    cert = x509.load_pem_x509_certificate((pki / "c3" / "ca-cert.pem").read_bytes())
    assert last["params"]["key_id"] == hashes_hex(
        cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    r = run_cli("audit", "verify", pki, "--trust", keys / "officer.pub")
    assert r.code == 0, r.err


def test_a_real_process_prints_no_traceback(pki: Path, tmp_path: Path, passfile: Path) -> None:
    bad = tmp_path / "bad.csr"
    bad.write_bytes(b"\x30\x03\x02\x01\x00")
    r = run_proc("ca", "sign", bad, "--cluster", "c3", "--dir", pki, "--out", tmp_path / "o", "--passphrase-file",
                 passfile)  # fmt: skip
    assert r.code == 3
    one_error_line(r, "not a certificate request")


def test_a_batch_is_signed_whole_or_not_at_all(pki: Path, tmp_path: Path, passfile: Path) -> None:
    csrs = [openssl_csr(tmp_path, f"b{i}")[1] for i in range(3)]
    # the last one would overwrite c1: nothing at all is signed
    before = tree(pki)
    r = run_cli("ca", "sign", *csrs, "--cluster", "b0", "--cluster", "b1", "--cluster", "c1", "--dir", pki,
                "--out", tmp_path / "o", "--passphrase-file", passfile)  # fmt: skip
    assert r.code == 4
    one_error_line(r, "cluster c1 already has an intermediate")
    assert tree(pki) == before and not (tmp_path / "o").exists()
    # one --cluster per CSR, no cluster twice, no key twice
    for clusters, needle in (
        (("b0", "b1"), "--cluster NAME is required for each CSR (3 CSR(s), 2 --cluster)"),
        (("b0", "b1", "b0"), "cluster named twice: b0"),
    ):
        args = [a for c in clusters for a in ("--cluster", c)]
        r = run_cli("ca", "sign", *csrs, *args, "--dir", pki, "--out", tmp_path / "o", "--passphrase-file", passfile)
        assert r.code == 3
        one_error_line(r, needle)
    r = run_cli("ca", "sign", csrs[0], csrs[0], "--cluster", "x", "--cluster", "y", "--dir", pki, "--out",
                tmp_path / "o", "--passphrase-file", passfile)  # fmt: skip
    assert r.code == 3
    one_error_line(r, "the same key is in two of the requests")
    assert tree(pki) == before
    r = run_cli("ca", "sign", *csrs, "--cluster", "b0", "--cluster", "b1", "--cluster", "b2", "--dir", pki,
                "--out", tmp_path / "o", "--passphrase-file", passfile)  # fmt: skip
    assert r.code == 0, r.err
    for i in range(3):
        assert sorted(p.name for p in (tmp_path / "o" / f"b{i}").iterdir()) == [
            "ca-cert.pem", "cert-chain.pem", "root-cert.pem"
        ]  # fmt: skip
        cert = x509.load_pem_x509_certificate((tmp_path / "o" / f"b{i}" / "ca-cert.pem").read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.LOCALITY_NAME)[0].value == f"b{i}"


def test_skip_existing_finishes_an_interrupted_batch_and_only_for_the_same_key(
    pki: Path, tmp_path: Path, passfile: Path
) -> None:
    csrs = [openssl_csr(tmp_path, f"b{i}")[1] for i in range(3)]
    args = ["--cluster", "b0", "--cluster", "b1", "--cluster", "b2", "--dir", pki, "--passphrase-file", passfile]
    assert sign(pki, csrs[0], tmp_path / "first", passfile, cluster="b0").code == 0  # the run that was cut short
    signed_b0 = (pki / "b0" / "ca-cert.pem").read_bytes()
    # the re-run of the whole batch: refused without --skip-existing, naming it
    r = run_cli("ca", "sign", *csrs, *args, "--out", tmp_path / "o")
    assert r.code == 4 and not (tmp_path / "o").exists()
    one_error_line(r, "--skip-existing")
    # with it: b0 is copied as it is, b1 and b2 are signed; b0 is not certified a second time
    r = run_cli("ca", "sign", *csrs, *args, "--out", tmp_path / "o", "--skip-existing", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["skipped"] == ["b0"] and [s["cluster"] for s in doc["signed"]] == ["b1", "b2"]
    assert (
        (tmp_path / "o" / "b0" / "ca-cert.pem").read_bytes() == signed_b0 == (pki / "b0" / "ca-cert.pem").read_bytes()
    )
    assert (tmp_path / "o" / "b0" / "cert-chain.pem").read_bytes() == (pki / "b0" / "cert-chain.pem").read_bytes()
    for c in ("b1", "b2"):
        assert (tmp_path / "o" / c / "ca-cert.pem").read_bytes() == (pki / c / "ca-cert.pem").read_bytes()
    assert [r.cluster for r in CAStore(pki).read_inventory().intermediates].count("b0") == 1
    # another key for an existing cluster is still refused, --skip-existing or not
    other = openssl_csr(tmp_path, "other")[1]
    before = tree(pki)
    r = sign(pki, other, tmp_path / "o2", passfile, "--skip-existing", cluster="b1")
    assert r.code == 4 and tree(pki) == before and not (tmp_path / "o2").exists()
    one_error_line(r, "cluster b1 already has an intermediate")
