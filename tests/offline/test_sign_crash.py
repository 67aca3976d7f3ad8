"""``ca sign`` killed (SIGKILL) at every atomic write: the log stays true and the next act recovers.

The same harness as the other acts (tests/offline/test_act.py): a fresh copy of a logged PKI per
kill point, killed at write 1, 2, ... until the command completes.
"""

# ruff: noqa: F811  (fixtures imported from tests.act_fixtures)
from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.core.csr import verify_csr
from airgap.offline.ca import CAStore
from airgap.offline.ceremony import read_entries, verify_log
from airgap.offline.sign import SignItem, sign_csrs
from tests.act_fixtures import (  # noqa: F401
    Logged,
    _acts,
    _common,
    _kill_at_every_write,
    _logged_template,
    _next_act_works,
    logged,
)
from tests.conftest import PASSPHRASE


def test_sigkill_at_every_write_of_ca_sign(logged: Logged, tmp_path: Path, passfile: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "c3")])
    csr = tmp_path / "c3.csr"
    csr.write_bytes(
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    args = ["ca", "sign", str(csr), "--cluster", "c3", "--out", "{pki}.out", *_common(logged, passfile)]
    for n, lg in _kill_at_every_write(logged, tmp_path, args):
        out = Path(f"{lg.pki}.out")
        verify_log(lg.pki, [lg.officer.key.public_key()])  # every published certificate has its entry
        if out.exists():  # --out is published last: only ever for a recorded, published certificate
            assert (lg.pki / "c3" / "ca-cert.pem").read_bytes() == (out / "ca-cert.pem").read_bytes(), n
            assert "sign" in _acts(lg.pki), n
        _next_act_works(lg, "c4")
        rec = CAStore(lg.pki).read_inventory().current("c3")
        assert (lg.pki / "c3").exists() == (rec is not None), n
        assert not (lg.pki / "c3" / "ca-key.pem").exists()
        if rec is not None:
            assert rec.held_elsewhere, n


def _csr_file(tmp: Path, name: str) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    p = tmp / f"{name}.csr"
    p.write_bytes(
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    return p


def test_sigkill_at_every_write_of_a_ca_sign_batch_keeps_folder_and_record_together(
    logged: Logged, tmp_path: Path, passfile: Path
) -> None:
    names = ["s1", "s2", "s3"]
    args = ["ca", "sign"]
    for name in names:
        args += [str(_csr_file(tmp_path, name)), "--cluster", name]
    args += ["--out", "{pki}.out", *_common(logged, passfile)]
    shapes = set()
    for n, lg in _kill_at_every_write(logged, tmp_path, args):
        verify_log(lg.pki, [lg.officer.key.public_key()])
        published = tuple((lg.pki / c).exists() for c in names)
        shapes.add(published)
        assert not Path(f"{lg.pki}.out").exists() or all(published), n  # --out only after the whole batch
        _next_act_works(lg, "c4")
        inv = CAStore(lg.pki).read_inventory()
        for c in names:
            assert (lg.pki / c).exists() == (inv.current(c) is not None), (n, c)
        entries = [e for e in read_entries(lg.pki) if e.act == "recover" and e.params.get("interrupted") == "issue"]
        if any(published) and not all(published):  # one recover entry per cluster of the batch
            assert sorted(str(e.params["cluster"]) for e in entries) == names, n
    assert (True, False, False) in shapes and (True, True, False) in shapes, shapes


def test_a_batch_writes_the_inventory_once(pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airgap.offline import act as act_mod

    writes = []
    real = act_mod.write_inventory
    monkeypatch.setattr(
        act_mod, "write_inventory", lambda p, inv: (writes.append(len(inv.intermediates)), real(p, inv))
    )
    before = len(CAStore(pki).read_inventory().intermediates)
    items = [SignItem(verify_csr(_csr_file(tmp_path, f"b{i}").read_bytes(), source="csr"), f"b{i}") for i in range(20)]
    sign_csrs(pki, items, out=tmp_path / "out", days=30, passphrase=PASSPHRASE, notify=None)
    assert writes == [before + 20]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"b{i}" for i in range(20))
