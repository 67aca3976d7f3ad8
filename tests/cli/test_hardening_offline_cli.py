"""Issue 23, the offline faults: one named test per fault (``test_fault_<N>_...``), through the CLI.

Each test reproduces the issue's steps against the real tools (openssl) and checks the exit code,
the one stderr line a user sees, and that nothing was half-written.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import one_error_line, openssl, run_cli, tree


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
        r = run_cli("ca", "rotate", "c2", "--csr", csr, *pw)
        assert r.code == 4, r.err
        one_error_line(r, where)
    assert tree(pki) == before and not (tmp_path / "out").exists()
    # an inventory from before key_ids existed: the ids come from the certificates on disk (archive too)
    doc = json.loads((pki / "inventory.json").read_bytes())
    assert doc["key_ids"], "acts record the key ids in the inventory"
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
