"""Issue N intermediates with airgap vs a loop of Istio's Makefile.selfsigned.mk openssl steps.

Both run in the same process of this benchmark, one after the other, on the same machine. The
openssl side runs what `make -f Makefile.selfsigned.mk <cluster>-cacerts` runs per cluster:
genrsa (or genpkey for EC), req -new, x509 -req with the intermediate extensions, cat chain.
Also: start-up time of `airgap --version`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"

INTERMEDIATE_CONF = """[ req ]
encrypt_key = no
prompt = no
utf8 = yes
default_md = sha256
default_bits = 4096
req_extensions = req_ext
x509_extensions = req_ext
distinguished_name = req_dn
[ req_ext ]
subjectKeyIdentifier = hash
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign
subjectAltName=@san
[ san ]
DNS.1 = istiod.istio-system.svc
[ req_dn ]
O = Istio
CN = Intermediate CA
L = {cluster}
"""


def _run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, capture_output=True, **kw)  # type: ignore[call-overload]


def openssl_makefile_loop(work: Path, clusters: list[str], key_type: str) -> float:
    """Istio's Makefile steps, one cluster after another (as `make` runs them by default)."""
    root_key, root_cert = work / "root-key.pem", work / "root-cert.pem"
    if key_type == "rsa-4096":
        _run(["openssl", "genrsa", "-out", str(root_key), "4096"])
    else:
        _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(root_key)])
    _run(
        [
            "openssl",
            "req",
            "-new",
            "-x509",
            "-key",
            str(root_key),
            "-subj",
            "/O=Istio/CN=Root CA",
            "-days",
            "3650",
            "-sha256",
            "-out",
            str(root_cert),
        ]
    )
    t0 = time.perf_counter()
    for c in clusters:
        d = work / c
        d.mkdir()
        conf = d / "intermediate.conf"
        conf.write_text(INTERMEDIATE_CONF.format(cluster=c))
        key = d / "ca-key.pem"
        if key_type == "rsa-4096":
            _run(["openssl", "genrsa", "-out", str(key), "4096"])
        else:
            _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)])
        _run(["openssl", "req", "-new", "-config", str(conf), "-key", str(key), "-out", str(d / "cluster-ca.csr")])
        _run(
            [
                "openssl",
                "x509",
                "-req",
                "-days",
                "730",
                "-CA",
                str(root_cert),
                "-CAkey",
                str(root_key),
                "-CAcreateserial",
                "-extensions",
                "req_ext",
                "-extfile",
                str(conf),
                "-in",
                str(d / "cluster-ca.csr"),
                "-out",
                str(d / "ca-cert.pem"),
            ]
        )
        (d / "cert-chain.pem").write_bytes((d / "ca-cert.pem").read_bytes() + root_cert.read_bytes())
        shutil.copy(root_cert, d / "root-cert.pem")
    return time.perf_counter() - t0


def airgap_issue(work: Path, clusters: list[str], key_type: str, passphrase: bool) -> float:
    airgap = [sys.executable, "-m", "airgap"]
    pw = work / "pass"
    pw.write_text("bench passphrase\n")
    pass_args = ["--passphrase-file", str(pw)] if passphrase else ["--no-passphrase"]
    _run([*airgap, "ca", "init", "--dir", str(work / "pki"), "--key-type", key_type, *pass_args], cwd=REPO)
    t0 = time.perf_counter()
    _run([*airgap, "ca", "issue", *clusters, "--dir", str(work / "pki"), "--key-type", key_type, *pass_args], cwd=REPO)
    return time.perf_counter() - t0


def startup(n: int = 15) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        _run([sys.executable, "-m", "airgap", "--version"], cwd=REPO)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare(key_type: str, n: int, rounds: int) -> dict[str, object]:
    clusters = [f"cluster{i}" for i in range(n)]
    ours, theirs = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            theirs.append(openssl_makefile_loop(Path(b), clusters, key_type))
            ours.append(airgap_issue(Path(a), clusters, key_type, passphrase=True))
    o, t = statistics.median(ours), statistics.median(theirs)
    return {
        "case": f"issue {n} x {key_type}",
        "airgap_s": round(o, 3),
        "openssl_loop_s": round(t, 3),
        "ratio": round(o / t, 3),
        "rounds": rounds,
        "cores": os.cpu_count(),
    }


def main() -> list[dict[str, object]]:
    rows = [compare("rsa-4096", 16, 3), compare("ecdsa-p256", 200, 1)]
    s = startup()
    rows.append({"case": "airgap --version start-up", "airgap_s": round(s, 3), "target_s": 0.25})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ca.json").write_text(json.dumps(rows, indent=2) + "\n")
    for r in rows:
        print(json.dumps(r))
    return rows


if __name__ == "__main__":
    main()
