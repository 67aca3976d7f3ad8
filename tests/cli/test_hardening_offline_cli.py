"""Issue 23, the offline faults: one named test per fault (``test_fault_<N>_...``), through the CLI.

Each test reproduces the issue's steps against the real tools (openssl) and checks the exit code,
the one stderr line a user sees, and that nothing was half-written.
"""

# ruff: noqa: F811  (the bkeys fixture is imported from tests.bundle_fixtures)

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from airgap.core.csr import verify_csr
from tests.bundle_fixtures import Keys, bkeys, make_bundle  # noqa: F401
from tests.helpers import one_error_line, openssl, run_cli, tree
from tests.pki_fixtures import MAKEFILE_EXTS, fill, openssl_leaf, openssl_root, openssl_verifies, small_tmpfs


def csr_from_key(key: Path, out: Path, passfile: Path | None = None) -> Path:
    """A CSR (openssl req) for an existing private key: what a hostile requester would send."""
    pw = ("-passin", f"file:{passfile}") if passfile is not None else ()
    openssl("req", "-new", "-key", key, *pw, "-subj", "/CN=again", "-out", out)
    return out


def test_fault_1_a_key_airgap_ever_certified_or_holds_is_never_certified_again(
    pki: Path, tmp_path: Path, passfile: Path
) -> None:
    pw = ("--dir", pki, "--passphrase-file", passfile)
    # the issue's steps: c1's key is compromised, c1 rotates, the archived key comes back in a CSR
    assert run_cli("ca", "revoke", "c1", "--reason", "keyCompromise", *pw).code == 0
    assert run_cli("ca", "rotate", "c1", *pw).code == 0
    (archived,) = (pki / "archive" / "c1").iterdir()
    old = csr_from_key(archived / "ca-key.pem", tmp_path / "old.csr", passfile)
    root = csr_from_key(pki / "root-key.pem", tmp_path / "root.csr", passfile)
    c2 = csr_from_key(pki / "c2" / "ca-key.pem", tmp_path / "c2.csr", passfile)
    before = tree(pki)
    serial = archived.name
    cases = [
        (old, f"already certified for cluster c1 (intermediate serial {serial})"),
        (root, "already certified for the root (serial "),
        (c2, "already certified for cluster c2 (intermediate serial "),
    ]
    for csr, where in cases:
        r = run_cli("ca", "sign", csr, "--cluster", "other", "--out", tmp_path / "out", *pw)
        assert r.code == 4, r.err
        one_error_line(r, "the request's key", where, "airgap never certifies a key twice")
        key_id = verify_csr(csr.read_bytes(), source="csr").key_id
        if csr == old:  # the exact line the user sees
            assert r.err == (
                f"airgap: error: the request's key {key_id} is already certified for cluster c1 (intermediate "
                f"serial {serial}); airgap never certifies a key twice: make a new key and request\n"
            )
        r = run_cli("ca", "rotate", "c2", "--csr", csr, *pw)
        assert r.code == 4, r.err
        one_error_line(r, where)
    assert tree(pki) == before and not (tmp_path / "out").exists()
    # a tampered key_ids field is a corrupt inventory (exit 3), never a smaller set of known keys
    doc = json.loads((pki / "inventory.json").read_bytes())
    assert doc["key_ids"], "acts record the key ids in the inventory"
    for bad in ({"XYZ": "cluster c1"}, {"0" * 64: 1}, ["0" * 64], "none"):
        (pki / "inventory.json").write_text(json.dumps({**doc, "key_ids": bad}))
        r = run_cli("ca", "sign", old, "--cluster", "other", "--out", tmp_path / "out", *pw)
        assert r.code == 3, (bad, r.err)
        one_error_line(r, "inventory.json: inventory is corrupt")
    # an inventory from before key_ids existed: the ids come from the certificates on disk (archive too)
    del doc["key_ids"]
    (pki / "inventory.json").write_text(json.dumps(doc))
    r = run_cli("ca", "sign", old, "--cluster", "other", "--out", tmp_path / "out", *pw)
    assert r.code == 4 and "already certified for cluster c1 (archived intermediate serial" in r.err, r.err
    # the next root's key, during a root rotation
    assert run_cli("ca", "rotate-root", *pw).code == 0
    nxt = csr_from_key(pki / "next-root" / "root-key.pem", tmp_path / "next.csr", passfile)
    r = run_cli("ca", "sign", nxt, "--cluster", "other", "--out", tmp_path / "out", *pw)
    assert r.code == 4 and "already certified for the next root (serial" in r.err, r.err
    # a fresh key is still signed
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", tmp_path / "new.key")
    fresh = csr_from_key(tmp_path / "new.key", tmp_path / "new.csr")
    r = run_cli("ca", "sign", fresh, "--cluster", "other", "--out", tmp_path / "out", *pw)
    assert r.code == 0, r.err


BAD_ROOTS = {
    "pathlen0": (
        ("basicConstraints = critical, CA:true, pathlen:0", "keyUsage = critical, keyCertSign, cRLSign"),
        "basicConstraints pathlen:0 allows no intermediate",
    ),
    "no-keyCertSign": (
        ("basicConstraints = critical, CA:true", "keyUsage = critical, digitalSignature, cRLSign"),
        "keyUsage lacks keyCertSign",
    ),
    "no-keyUsage": (("basicConstraints = critical, CA:true",), "keyUsage is missing"),
    "nc-excludes-istiod": (
        (*MAKEFILE_EXTS, "nameConstraints = critical, excluded;DNS:istio-system.svc"),
        "excluded name constraint matched SAN",
    ),
    "nc-permits-other": (
        (*MAKEFILE_EXTS, "nameConstraints = critical, permitted;DNS:example.com"),
        "no permitted name constraints matched SAN",
    ),
    "eku-codeSigning": (
        (*MAKEFILE_EXTS, "extendedKeyUsage = codeSigning"),
        "extendedKeyUsage lacks serverAuth, clientAuth",
    ),
    "eku-any-only": (  # Go would take it; OpenSSL does not count anyExtendedKeyUsage for a CA
        (*MAKEFILE_EXTS, "extendedKeyUsage = anyExtendedKeyUsage"),
        "extendedKeyUsage lacks serverAuth, clientAuth",
    ),
    "eku-serverAuth-only": ((*MAKEFILE_EXTS, "extendedKeyUsage = serverAuth"), "extendedKeyUsage lacks clientAuth"),
}


def test_fault_4_adoption_refuses_roots_that_cannot_sign_a_validating_chain(tmp_path: Path, passfile: Path) -> None:
    pw = ("--passphrase-file", passfile)
    for name, (exts, reason) in BAD_ROOTS.items():
        cert, key = openssl_root(tmp_path / name, exts)
        pki = tmp_path / f"pki-{name}"
        r = run_cli("ca", "init", "--dir", pki, "--adopt-cert", cert, "--adopt-key", key, *pw)
        assert r.code == 4, (name, r.err)
        one_error_line(r, f"{cert}: the root cannot sign a chain that validates: ", reason)
        assert not pki.exists(), name
        if name == "pathlen0":  # the exact line the user sees
            assert r.err == (
                f"airgap: error: {cert}: the root cannot sign a chain that validates: basicConstraints pathlen:0 "
                "allows no intermediate (airgap issues one per cluster: pathlen must be absent or at least 1)\n"
            )
    cert, key = openssl_root(tmp_path / "sha1", MAKEFILE_EXTS, md="sha1")
    r = run_cli("ca", "init", "--dir", tmp_path / "pki-sha1", "--adopt-cert", cert, "--adopt-key", key, *pw)
    assert r.code == 4 and "SHA-1/MD5" in r.err, r.err
    # accepted: Istio's Makefile root (no cRLSign) and a root whose EKU allows both ways; both oracles agree
    for name, exts in (
        ("makefile", MAKEFILE_EXTS),
        ("eku-both", (*MAKEFILE_EXTS, "extendedKeyUsage = serverAuth, clientAuth")),
    ):
        cert, key = openssl_root(tmp_path / name, exts)
        pki = tmp_path / f"pki-{name}"
        assert run_cli("ca", "init", "--dir", pki, "--adopt-cert", cert, "--adopt-key", key, *pw).code == 0
        r = run_cli("ca", "issue", "c1", "--dir", pki, "--key-type", "ecdsa-p256", *pw)
        assert r.code == 0, r.err
        r = run_cli("ca", "list", "--dir", pki, *pw)
        assert r.code == 0, r.err
        assert "lacks cRLSign: it cannot sign a CRL" in r.err, r.err  # both are Makefile roots: a warning
        leaf = openssl_leaf(tmp_path / name, pki / "c1" / "ca-cert.pem", pki / "c1" / "ca-key.pem", passfile)
        assert openssl_verifies(cert, pki / "c1" / "ca-cert.pem", leaf), name
    # the Makefile root has no cRLSign: it cannot sign a CRL, and says so before anything is written
    before = tree(tmp_path / "pki-makefile")
    r = run_cli("ca", "revoke", "c1", "--reason", "keyCompromise", "--dir", tmp_path / "pki-makefile", *pw)
    assert r.code == 4, r.err
    one_error_line(r, "has a keyUsage without cRLSign: a CRL it signs would be rejected; rotate the root")
    assert tree(tmp_path / "pki-makefile") == before


def test_fault_4_ca_list_and_the_lint_gate_use_a_path_validator(
    tmp_path: Path, passfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pathlen:0 root adopted by an older airgap: the gate refuses to issue under it, ``ca list`` says
    the chain does not validate (exit 1), and openssl agrees on a workload certificate."""
    pw = ("--passphrase-file", passfile)
    cert, key = openssl_root(tmp_path / "r", BAD_ROOTS["pathlen0"][0])
    pki = tmp_path / "pki"
    with monkeypatch.context() as m:  # an older airgap: no adoption check
        m.setattr("airgap.offline.adopt.check_root_can_sign", lambda *a, **k: None)
        assert run_cli("ca", "init", "--dir", pki, "--adopt-cert", cert, "--adopt-key", key, *pw).code == 0
    before = tree(pki)
    r = run_cli("ca", "issue", "c1", "--dir", pki, "--key-type", "ecdsa-p256", *pw)
    assert r.code == 4, r.err
    one_error_line(
        r, "cluster c1: the lint gate refused the chain: it does not validate: the root basicConstraints pathlen:0"
    )
    assert tree(pki) == before
    with monkeypatch.context() as m:  # an older airgap: no path validation in the gate
        m.setattr("airgap.offline.lint.check_path", lambda *a, **k: None)
        assert run_cli("ca", "issue", "c1", "--dir", pki, "--key-type", "ecdsa-p256", *pw).code == 0
    r = run_cli("ca", "list", "--dir", pki, *pw)
    assert r.code == 1, r.out + r.err
    assert "the chain does not validate: the root basicConstraints pathlen:0" in r.out + r.err
    leaf = openssl_leaf(tmp_path, pki / "c1" / "ca-cert.pem", pki / "c1" / "ca-key.pem", passfile)
    assert not openssl_verifies(cert, pki / "c1" / "ca-cert.pem", leaf)


def test_fault_5_a_root_without_subject_key_identifier_signs_with_an_aki_from_its_key(
    tmp_path: Path, passfile: Path
) -> None:
    pw = ("--passphrase-file", passfile)
    exts = (
        "subjectKeyIdentifier = none",
        "authorityKeyIdentifier = none",
        "basicConstraints = critical, CA:true",
        "keyUsage = critical, keyCertSign, cRLSign",
    )
    cert, key = openssl_root(tmp_path / "r", exts)
    root = x509.load_pem_x509_certificate(cert.read_bytes())
    with pytest.raises(x509.ExtensionNotFound):
        root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    pki = tmp_path / "pki"
    assert run_cli("ca", "init", "--dir", pki, "--adopt-cert", cert, "--adopt-key", key, *pw).code == 0
    r = run_cli("ca", "issue", "c1", "--dir", pki, "--key-type", "ecdsa-p256", *pw)
    assert r.code == 0, r.err
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", tmp_path / "c2.key")
    csr = csr_from_key(tmp_path / "c2.key", tmp_path / "c2.csr")
    r = run_cli("ca", "sign", csr, "--cluster", "c2", "--dir", pki, "--out", tmp_path / "c2", *pw)
    assert r.code == 0, r.err
    assert run_cli("ca", "list", "--dir", pki, *pw).code == 0
    assert run_cli("ca", "revoke", "c1", "--reason", "superseded", "--dir", pki, *pw).code == 0
    want = x509.AuthorityKeyIdentifier.from_issuer_public_key(root.public_key()).key_identifier  # type: ignore[arg-type]
    for name in ("c1", "c2"):
        issued = x509.load_pem_x509_certificate((pki / name / "ca-cert.pem").read_bytes())
        assert issued.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == want
        assert openssl("verify", "-CAfile", cert, pki / name / "ca-cert.pem").returncode == 0
    crl = x509.load_pem_x509_crl((pki / "ca-crl.pem").read_bytes())
    assert crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == want
    assert openssl("crl", "-in", pki / "ca-crl.pem", "-CAfile", cert, "-noout").returncode == 0


def test_fault_6_non_ascii_dns_sans_become_a_labels_and_spiffe_ids_pass_the_gate(
    pki: Path, tmp_path: Path, passfile: Path
) -> None:
    pw = ("--dir", pki, "--passphrase-file", passfile)
    spiffe = "URI:spiffe://cluster.local/ns/istio-system/sa/istiod-service-account"
    r = run_cli("ca", "issue", "c3", "--key-type", "ecdsa-p256", "--san", "DNS:ünï.com", "--san", spiffe, *pw)
    assert r.code == 0, r.err
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", tmp_path / "c4.key")
    csr = csr_from_key(tmp_path / "c4.key", tmp_path / "c4.csr")
    r = run_cli(
        "ca", "sign", csr, "--cluster", "c4", "--out", tmp_path / "c4", "--san", "DNS:ÜNÏ.com", "--san", spiffe, *pw
    )
    assert r.code == 0, r.err
    for name in ("c3", "c4"):
        text = openssl("x509", "-in", pki / name / "ca-cert.pem", "-noout", "-ext", "subjectAltName").stdout.decode()
        assert "DNS:xn--n-nga1b.com" in text and spiffe in text, text
        assert openssl("verify", "-CAfile", pki / "root-cert.pem", pki / name / "ca-cert.pem").returncode == 0
    before = tree(pki)
    refused = [
        ("DNS:ü_.com", "not a valid internationalised domain name"),
        ("DNS:a..b", "not a valid DNS name"),
        ("DNS:bad name.svc", "not a valid DNS name"),
        ("URI:spiffe://Cluster.local/ns/x", "not a valid SPIFFE ID"),
        ("URI:spiffe://cluster.local/ns/../sa/x", "not a valid SPIFFE ID"),
        ("URI:spiffe://cluster.local/ns/x?q=1", "not a valid SPIFFE ID"),
    ]
    for san, reason in refused:
        for cmd in (
            ("ca", "issue", "c5", "--key-type", "ecdsa-p256"),
            ("ca", "sign", csr, "--cluster", "c5", "--out", tmp_path / "o"),
        ):
            r = run_cli(*cmd, "--san", san, *pw)
            assert r.code == 3, (san, r.err)
            one_error_line(r, f"--san {san!r}: {reason}")
    # the SPIFFE exception is exactly that: any other URI pkilint finds invalid is still refused (exit 4)
    r = run_cli("ca", "issue", "c5", "--key-type", "ecdsa-p256", "--san", "URI:notascheme://x y", *pw)
    assert r.code == 4, r.err
    one_error_line(r, "the lint gate refused to sign: pkix.invalid_uri_syntax")
    assert tree(pki) == before and not (tmp_path / "o").exists()


HOSTILE_FIELDS = {  # field: (offset, bytes an attacker writes there)
    "mode": (100, b"0000666\0"),
    "uid": (108, b"0001750\0"),
    "gid": (116, b"0001750\0"),
    "mtime": (136, b"14000000000\0"),
    "typeflag": (156, b"\0"),
    "linkname": (157, b"/etc/passwd"),
    "version": (263, b" \0"),
    "uname": (265, b"root"),
    "gname": (297, b"root"),
    "devmajor": (329, b"0000001\0"),
    "devminor": (337, b"0000001\0"),
    "prefix": (345, b"../../etc"),
    "the header's last 12 bytes": (500, b"x"),
}


def _fixed_checksum(header: bytearray) -> None:
    header[148:156] = b" " * 8
    header[148:156] = format(sum(header), "o").zfill(6).encode() + b"\0 "


def test_fault_3_every_header_byte_of_every_member_is_checked(
    pki: Path, tmp_path: Path, bkeys: Keys, passfile: Path
) -> None:
    from airgap.core.bundle import scan_archive
    from airgap.core.limits import DEFAULT_LIMITS

    bundle, signer_pub, _, _ = make_bundle(pki, tmp_path, keys=bkeys, no_encrypt=True)
    assert run_cli("bundle", "verify", bundle, "--trust", signer_pub).code == 0
    raw = bundle.read_bytes()
    with open(bundle, "rb") as fh:
        entries = scan_archive(fh, len(raw), limits=DEFAULT_LIMITS, source=str(bundle))
    assert "cacerts/ca-key.pem" in [e.name for e in entries]
    bad = tmp_path / "bad.bundle"
    for e in entries:
        at = e.offset - 512
        cases = dict(HOSTILE_FIELDS)
        if e.name == "cacerts/ca-key.pem":  # the case: tar xf would write the key world-readable
            cases["mode"] = (100, b"0000644\0")
        for field, (off, value) in cases.items():
            header = bytearray(raw[at : at + 512])
            header[off : off + len(value)] = value
            _fixed_checksum(header)
            bad.write_bytes(raw[:at] + bytes(header) + raw[at + 512 :])
            r = run_cli("bundle", "verify", bad, "--trust", signer_pub)
            assert r.code == 1, (e.name, field, r.err)
            one_error_line(r, f"member {e.name!a}: tar header field {field} (at offset {at}) differs")
            if e.name == "cacerts/ca-key.pem" and field == "mode":  # the exact line the user sees
                assert r.err == (
                    f"airgap: error: {bad}: member 'cacerts/ca-key.pem': tar header field mode (at offset {at}) "
                    "differs from what the bundle writer makes; header bytes are not signed, so no byte of them "
                    "may change\n"
                )
            r = run_cli(
                "bundle",
                "import",
                bad,
                "--cluster",
                "c1",
                "--trust",
                signer_pub,
                "--output-dir",
                tmp_path / "out",
                "--plaintext-secrets",
            )
            assert r.code == 1 and not (tmp_path / "out").exists(), (e.name, field, r.err)


def _logged_cli_pki(tmp_path: Path) -> tuple[Path, tuple[str | Path, ...], Path]:
    """An unencrypted PKI that keeps a ceremony log (officer key unencrypted): (pki, act options, officer.pub)."""
    keys, pki = tmp_path / "keys", tmp_path / "pki"
    assert run_cli("keys", "new", "officer", "--out", keys, "--no-passphrase").code == 0
    acts = ("--dir", pki, "--no-passphrase", "--log-key", keys / "officer.key")
    assert run_cli("ca", "init", "--key-type", "ecdsa-p256", *acts).code == 0
    return pki, acts, keys / "officer.pub"


def test_fault_7_a_lost_or_replaced_certificate_fails_ca_list_and_audit_verify(tmp_path: Path) -> None:
    import shutil

    pki, acts, officer = _logged_cli_pki(tmp_path)
    assert run_cli("ca", "issue", "c1", "c2", "c3", "--key-type", "ecdsa-p256", *acts).code == 0
    assert run_cli("ca", "rotate", "c2", *acts).code == 0
    saved = tmp_path / "saved"
    shutil.copytree(pki, saved)
    assert run_cli("ca", "list", "--dir", pki).code == 0
    assert run_cli("audit", "verify", pki, "--trust", officer).code == 0
    # the steps: rm -rf pki/c3 (no passphrase is needed to notice)
    c3_fp = json.loads((pki / "inventory.json").read_bytes())["intermediates"][2]["fingerprint"]
    shutil.rmtree(pki / "c3")
    r = run_cli("ca", "list", "--dir", pki)
    assert r.code == 1, r.out
    assert r.err == (
        f"airgap: error: cluster c3's intermediate (sha256 {c3_fp}) is recorded in inventory.json, "
        f"but {pki}/c3/ca-cert.pem is missing\n"
    )
    one_error_line(
        r,
        "cluster c3's intermediate (sha256 ",
        f"is recorded in inventory.json, but {pki / 'c3' / 'ca-cert.pem'} is missing",
    )
    doc = json.loads(run_cli("ca", "list", "--dir", pki, "--json").out)
    assert len(doc["recorded_problems"]) == 1 and "c3" in doc["recorded_problems"][0]
    r = run_cli("audit", "verify", pki, "--trust", officer)
    assert r.code == 1, r.out
    one_error_line(
        r, f"records {pki / 'c3' / 'ca-cert.pem'} (sha256 ", "as cluster c3's current intermediate, but it is missing"
    )
    # c2's certificate copied over c1's: c1 is not "ok" any more, without a passphrase
    shutil.rmtree(pki)
    shutil.copytree(saved, pki)
    (pki / "c1" / "ca-cert.pem").write_bytes((pki / "c2" / "ca-cert.pem").read_bytes())
    r = run_cli("ca", "list", "--dir", pki)
    assert r.code == 1
    one_error_line(r, "c1 (", "ca-cert.pem is not the certificate inventory.json records (sha256 ")
    assert json.loads(run_cli("ca", "list", "--dir", pki, "--json").out)["intermediates"][0]["recorded"] is False
    r = run_cli("audit", "verify", pki, "--trust", officer)
    assert r.code == 1
    one_error_line(r, "as cluster c1's current intermediate, but", "c1/ca-cert.pem is sha256 ")
    # with c2's key too, the folder is consistent, but it is not c1's: bundle create refuses to ship it as c1
    (pki / "c1" / "ca-key.pem").write_bytes((pki / "c2" / "ca-key.pem").read_bytes())
    (pki / "c1" / "cert-chain.pem").write_bytes((pki / "c2" / "cert-chain.pem").read_bytes())
    out = tmp_path / "c1.bundle"
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", officer.with_suffix(".key"), "--no-encrypt", "--out", out
    )
    assert r.code == 4, r.err
    one_error_line(r, "c1: ca-cert.pem (sha256 ", "is not the intermediate the inventory records for cluster c1")
    assert not out.exists()
    # an archived intermediate lost
    shutil.rmtree(pki)
    shutil.copytree(saved, pki)
    shutil.rmtree(pki / "archive" / "c2")
    for r in (run_cli("ca", "list", "--dir", pki), run_cli("audit", "verify", pki, "--trust", officer)):
        assert r.code == 1
        one_error_line(
            r, "cluster c2's archived intermediate (serial ", "is recorded in inventory.json, but", "is missing"
        )
    # the next root of a rotation in progress, lost: the log records it
    shutil.rmtree(pki)
    shutil.copytree(saved, pki)
    assert run_cli("ca", "rotate-root", *acts).code == 0
    assert run_cli("audit", "verify", pki, "--trust", officer).code == 0
    shutil.rmtree(pki / "next-root")
    r = run_cli("audit", "verify", pki, "--trust", officer)
    assert r.code == 1
    one_error_line(r, "as the next root, but", "next-root/root-cert.pem is missing")


def test_fault_12_expiry_is_a_failed_check_and_expiring_soon_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    pki = tmp_path / "pki"
    pw = ("--dir", pki, "--no-passphrase")
    assert run_cli("ca", "init", "--key-type", "ecdsa-p256", "--days", "400", *pw).code == 0
    assert run_cli("ca", "issue", "c1", "--key-type", "ecdsa-p256", "--days", "100", *pw).code == 0
    root = x509.load_pem_x509_certificate((pki / "root-cert.pem").read_bytes())
    inter = x509.load_pem_x509_certificate((pki / "c1" / "ca-cert.pem").read_bytes())

    def at(t: dt.datetime) -> None:
        monkeypatch.setattr("airgap.core.x509.now", lambda: t.replace(microsecond=0))

    # c1 expires in 10 days: a warning with the days left, exit 0
    at(inter.not_valid_after_utc - dt.timedelta(days=10, hours=1))
    r = run_cli("ca", "list", "--dir", pki)
    assert r.code == 0, r.err
    assert "airgap: warning: cluster c1's intermediate expires on" in r.err and "(10 days left)" in r.err
    # c1 expired: exit 1
    at(inter.not_valid_after_utc + dt.timedelta(hours=1))
    r = run_cli("ca", "list", "--dir", pki)
    assert r.code == 1
    one_error_line(r, "c1 (expired on ", "run 'airgap ca rotate c1'", alone=False)
    # the root expires today: ca issue says so (no "--days 0"), ca list warns with the days left
    at(root.not_valid_after_utc - dt.timedelta(hours=2))
    r = run_cli("ca", "issue", "c2", "--key-type", "ecdsa-p256", "--days", "1", *pw)
    assert r.code == 4
    one_error_line(r, "(0 days left: it expires today)", "the root must be rotated ('airgap ca rotate-root')")
    assert "--days 0" not in r.err
    r = run_cli("ca", "list", "--dir", pki)
    assert "airgap: warning: the root expires on" in r.err and "0 days left: it expires today" in r.err
    assert "it must be rotated" in r.err
    # 5 days left: the hint is the days that fit, and that the root must be rotated soon
    at(root.not_valid_after_utc - dt.timedelta(days=5, hours=2))
    r = run_cli("ca", "issue", "c2", "--key-type", "ecdsa-p256", "--days", "30", *pw)
    assert r.code == 4
    one_error_line(r, "5 days left); use --days 5 or less; the root itself must be rotated soon")
    # the root expired: exit 1 whatever the intermediates
    at(root.not_valid_after_utc + dt.timedelta(hours=1))
    r = run_cli("ca", "list", "--dir", pki, "--json")
    assert r.code == 1
    assert json.loads(r.out)["root_problems"] == [
        f"the root expired on {root.not_valid_after_utc:%Y-%m-%d}; it must be rotated ('airgap ca rotate-root')"
    ]


def _clusters_on_disk(pki: Path) -> set[str]:
    return {p.name for p in pki.iterdir() if (p / "ca-cert.pem").is_file()}


def _current_in_inventory(pki: Path) -> set[str]:
    return {r["cluster"] for r in json.loads((pki / "inventory.json").read_bytes())["intermediates"]}


def test_fault_8_a_full_disk_mid_batch_names_the_file_and_records_nothing_that_is_not_on_disk(
    tmp_path: Path,
) -> None:
    import shutil

    template, acts, officer = _logged_cli_pki(tmp_path)
    assert run_cli("ca", "issue", "f1", "--key-type", "ecdsa-p256", *acts).code == 0
    mnt = tmp_path / "mnt"
    batch = ("f2", "g2", "h2")
    shapes = set()
    with small_tmpfs(mnt, 1024 * 1024):
        for pages in range(0, 64):
            for child in mnt.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            pki = mnt / "pki"
            shutil.copytree(template, pki)
            filler = fill(mnt, pages)
            r = run_cli("ca", "issue", *batch, "--key-type", "ecdsa-p256", "--dir", pki, *acts[2:])
            published = tuple((pki / c / "ca-cert.pem").is_file() for c in batch)
            shapes.add(published)
            if r.code == 0:
                assert all(published)
                break
            assert r.code == 3, (pages, r.err)
            line = one_error_line(r, "No space left on device")
            assert f"{mnt}/" in line and "output:" not in line, line  # the file is named
            journal = pki / ".journal.json"
            if not journal.exists():  # settled at once: the unpublished part left the inventory and the log
                assert _current_in_inventory(pki) == _clusters_on_disk(pki), (pages, published)
            filler.unlink()  # space again: nothing recorded is missing, and the next act settles what is left
            lr = run_cli("ca", "list", "--dir", pki)
            assert lr.code == 0, (pages, lr.out, lr.err)
            assert (journal.exists()) == ("interrupted act" in lr.err), (pages, lr.err)
            assert run_cli("audit", "verify", pki, "--trust", officer).code == 0, pages
            assert run_cli("ca", "crl", "--dir", pki, *acts[2:]).code == 0, pages
            assert not journal.exists()
            assert _current_in_inventory(pki) == _clusters_on_disk(pki), (pages, published)
            assert run_cli("audit", "verify", pki, "--trust", officer).code == 0, pages
            entries = json.loads(run_cli("audit", "show", pki, "--json").out)["entries"]
            for c, done in zip(batch, published, strict=True):
                acts_of_c = [e["act"] for e in entries if e["params"].get("cluster") == c]
                if not done and "issue" in acts_of_c:  # the log says why the recorded issue has no folder
                    assert acts_of_c[acts_of_c.index("issue") :][:2] == ["issue", "recover"], (pages, c, acts_of_c)
        else:
            pytest.fail("the batch never succeeded: make the tmpfs larger")
    assert any(any(s) and not all(s) for s in shapes), shapes  # the disk filled up mid-batch at least once


def test_fault_11_bundle_create_of_an_expired_intermediate_is_refused_exit_4(
    pki: Path, tmp_path: Path, bkeys: Keys, passfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    inter = x509.load_pem_x509_certificate((pki / "c1" / "ca-cert.pem").read_bytes())
    monkeypatch.setattr("airgap.core.x509.now", lambda: inter.not_valid_after_utc + dt.timedelta(days=1))
    before = tree(pki)
    out = tmp_path / "c1.bundle"
    base = ("bundle", "create", "c1", "--dir", pki, "--sign-key", bkeys.signer, "--passphrase-file", passfile)
    for extra in (("--recipient", bkeys.recipient_pub), ("--no-encrypt",)):
        r = run_cli(*base, *extra, "--out", out)
        assert r.code == 4, r.err
        one_error_line(r, "expired on", "a bundle is never sealed with it: run 'airgap ca rotate c1")
        assert r.err == (
            f"airgap: error: {pki}/c1: certificate CN=Intermediate CA,L=c1,O=Istio expired on "
            f"{inter.not_valid_after_utc:%Y-%m-%d}; a bundle is never sealed with it: run 'airgap ca rotate c1 "
            f"--dir {pki}' (or 'airgap ca rotate-root' for an expired root) and bundle the replacement\n"
        )
        assert not out.exists() and tree(pki) == before
    # a keyless cluster (its key held elsewhere) the same
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", tmp_path / "k.key")
    csr = csr_from_key(tmp_path / "k.key", tmp_path / "k.csr")
    monkeypatch.undo()
    r = run_cli("ca", "sign", csr, "--cluster", "c9", "--dir", pki, "--out", tmp_path / "c9", "--days", "10",
                "--passphrase-file", passfile)  # fmt: skip
    assert r.code == 0, r.err
    monkeypatch.setattr("airgap.core.x509.now", lambda: inter.not_valid_after_utc + dt.timedelta(days=1))
    r = run_cli("bundle", "create", "c9", "--dir", pki, "--sign-key", bkeys.signer, "--passphrase-file", passfile,
                "--out", out)  # fmt: skip
    assert r.code == 4, r.err
    one_error_line(r, "expired on", "run 'airgap ca rotate c9")
    assert not out.exists()


def test_fault_8_ca_rotate_on_a_full_disk_is_settled_at_once_and_never_loses_the_cluster(tmp_path: Path) -> None:
    import shutil

    template, acts, officer = _logged_cli_pki(tmp_path)
    assert run_cli("ca", "issue", "c1", "--key-type", "ecdsa-p256", *acts).code == 0
    mnt = tmp_path / "mnt"
    settled = 0
    with small_tmpfs(mnt, 1024 * 1024):
        for pages in range(0, 64):
            for child in mnt.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            pki = mnt / "pki"
            shutil.copytree(template, pki)
            filler = fill(mnt, pages)
            r = run_cli("ca", "rotate", "c1", "--dir", pki, *acts[2:])
            assert (pki / "c1" / "ca-cert.pem").is_file(), pages  # the cluster never vanishes
            if r.code == 0:
                break
            assert r.code == 3, (pages, r.err)
            line = one_error_line(r, "No space left on device")
            assert f"{mnt}/" in line and "output:" not in line, line
            inv = json.loads((pki / "inventory.json").read_bytes())
            on_disk = x509.load_pem_x509_certificate((pki / "c1" / "ca-cert.pem").read_bytes())
            if not (pki / ".journal.json").exists():  # settled at once: the record is what is on disk
                settled += 1
                current = [i for i in inv["intermediates"] if i["cluster"] == "c1"][-1]
                assert current["fingerprint"] == on_disk.fingerprint(hashes.SHA256()).hex(), pages
                assert not list(pki.glob(".rotate-*")), pages
            filler.unlink()
            assert run_cli("ca", "list", "--dir", pki).code == 0, pages
            assert run_cli("audit", "verify", pki, "--trust", officer).code == 0, pages
            assert run_cli("ca", "crl", "--dir", pki, *acts[2:]).code == 0, pages
            assert run_cli("audit", "verify", pki, "--trust", officer).code == 0, pages
            assert run_cli("ca", "list", "--dir", pki).code == 0, pages
        else:
            pytest.fail("the rotation never succeeded: make the tmpfs larger")
    assert settled > 0, "no failure was settled at once"


def test_fault_8_ca_init_on_a_full_disk_leaves_nothing_half_made(tmp_path: Path) -> None:
    import shutil

    keys = tmp_path / "keys"
    assert run_cli("keys", "new", "officer", "--out", keys, "--no-passphrase").code == 0
    mnt = tmp_path / "mnt"
    failed = 0
    with small_tmpfs(mnt, 1024 * 1024):
        for pages in range(0, 64):
            for child in mnt.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            pki = mnt / "pki"
            filler = fill(mnt, pages)
            args = ("ca", "init", "--dir", pki, "--key-type", "ecdsa-p256", "--no-passphrase", "--log-key",
                    keys / "officer.key")  # fmt: skip
            r = run_cli(*args)
            if r.code == 0:
                break
            failed += 1
            assert r.code == 3, (pages, r.err)
            one_error_line(r, "No space left on device")
            assert not pki.exists() or tree(pki) == [], (pages, tree(pki))  # nothing half-made
            filler.unlink()
            r = run_cli(*args)  # with space again, init simply runs
            assert r.code == 0, (pages, r.err)
            assert run_cli("audit", "verify", pki, "--trust", keys / "officer.pub").code == 0, pages
        else:
            pytest.fail("ca init never succeeded: make the tmpfs larger")
    assert failed > 2, failed
