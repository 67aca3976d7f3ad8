"""``ca sign`` killed (SIGKILL) at every atomic write: the log stays true and the next act recovers.

The same harness as the other acts (tests/offline/test_act.py): a fresh copy of a logged PKI per
kill point, killed at write 1, 2, ... until the command completes.
"""

# ruff: noqa: F811  (fixtures imported from tests.offline.test_act)
from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.offline.ca import CAStore
from airgap.offline.ceremony import verify_log
from tests.offline.test_act import (  # noqa: F401
    Logged,
    _acts,
    _common,
    _kill_at_every_write,
    _logged_template,
    _next_act_works,
    logged,
)


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
