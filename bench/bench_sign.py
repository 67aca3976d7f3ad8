"""Sign N EC P-256 CSRs: one `airgap ca sign` (lint gate, inventory, files) vs a loop of `openssl x509 -req`.

Same run, same machine, one after the other. The openssl side is the signing step of Istio's
Makefile.selfsigned.mk per cluster (`openssl x509 -req ... -extensions req_ext -extfile ...`, then
the chain cat and root copy), with its extensions; the CSRs are made beforehand and are the same
files for both sides. The airgap side is one `python -m airgap ca sign` process for all N,
start-up included, with the pkilint gate on every certificate. Reported as airgap / openssl.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_ca import INTERMEDIATE_CONF, REPO, RESULTS, _run

TARGET_RATIO = 0.5


def make_csrs(work: Path, n: int) -> list[Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = []
    for i in range(n):
        k = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "Intermediate CA"),
                          x509.NameAttribute(NameOID.LOCALITY_NAME, f"cluster{i}")])  # fmt: skip
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(k, hashes.SHA256())
        p = work / f"cluster{i}.csr"
        p.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        out.append(p)
    return out


def openssl_loop(work: Path, csrs: list[Path], root_key: Path, root_cert: Path) -> float:
    t0 = time.perf_counter()
    for i, csr in enumerate(csrs):
        d = work / f"cluster{i}"
        d.mkdir()
        conf = d / "intermediate.conf"
        conf.write_text(INTERMEDIATE_CONF.format(cluster=f"cluster{i}"))
        _run(["openssl", "x509", "-req", "-days", "730", "-CA", str(root_cert), "-CAkey", str(root_key),
              "-CAcreateserial", "-extensions", "req_ext", "-extfile", str(conf), "-in", str(csr),
              "-out", str(d / "ca-cert.pem")])  # fmt: skip
        (d / "cert-chain.pem").write_bytes((d / "ca-cert.pem").read_bytes() + root_cert.read_bytes())
        shutil.copy(root_cert, d / "root-cert.pem")
    return time.perf_counter() - t0


def airgap_sign(work: Path, csrs: list[Path], log: list[str]) -> float:
    args: list[str] = [str(csr) for csr in csrs]
    for i in range(len(csrs)):
        args += ["--cluster", f"cluster{i}"]
    t0 = time.perf_counter()
    _run([sys.executable, "-m", "airgap", "ca", "sign", *args, "--dir", str(work / "pki"), "--out",
          str(work / "signed"), "--no-passphrase", *log], cwd=REPO)  # fmt: skip
    return time.perf_counter() - t0


def compare(n: int, *, logged: bool) -> dict[str, object]:
    """``logged``: the PKI keeps a ceremony log (the recommended set-up): every act is a signed entry."""
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, tempfile.TemporaryDirectory() as c:
        csr_dir, ours_dir, theirs_dir = Path(a), Path(b), Path(c)
        csrs = make_csrs(csr_dir, n)
        log: list[str] = []
        if logged:
            _run([sys.executable, "-m", "airgap", "keys", "new", "officer", "--out", str(ours_dir),
                  "--no-passphrase"], cwd=REPO)  # fmt: skip
            log = ["--log-key", str(ours_dir / "officer.key")]
        _run([sys.executable, "-m", "airgap", "ca", "init", "--dir", str(ours_dir / "pki"), "--key-type",
              "ecdsa-p256", "--no-passphrase", *log], cwd=REPO)  # fmt: skip
        # the same root for openssl (its key unencrypted, as the Makefile keeps it)
        root_key, root_cert = theirs_dir / "root-key.pem", theirs_dir / "root-cert.pem"
        shutil.copy(ours_dir / "pki" / "root-key.pem", root_key)
        shutil.copy(ours_dir / "pki" / "root-cert.pem", root_cert)
        theirs = openssl_loop(theirs_dir, csrs, root_key, root_cert)
        ours = airgap_sign(ours_dir, csrs, log)
        signed = len(list((ours_dir / "signed").iterdir()))
    return {
        "case": f"sign {n} x ecdsa-p256 CSRs" + (", ceremony log kept" if logged else ", no log"),
        "airgap_s": round(ours, 3),
        "openssl_loop_s": round(theirs, 3),
        "ratio": round(ours / theirs, 3),
        "target_ratio": TARGET_RATIO,
        "signed": signed,
        "cores": os.cpu_count(),
    }


def main() -> list[dict[str, object]]:
    rows = [compare(200, logged=False), compare(200, logged=True)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sign.json").write_text(json.dumps(rows, indent=2) + "\n")
    for r in rows:
        print(json.dumps(r))
    return rows


if __name__ == "__main__":
    main()
