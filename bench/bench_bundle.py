"""`bundle create` and `bundle verify` of a bundle carrying a 1 GiB --include, against `sha256sum`.

Each operation has to read and hash every byte once; `sha256sum` of the same file is the floor.
All three run as real processes (`python -m airgap ...`, start-up included) on a warm page cache,
three times each; the medians are compared. Size: ``AIRGAP_BENCH_BUNDLE_MIB`` (default 1024).
Target from the issue: each ≤ 1.5x sha256sum. ``openssl dgst -sha256`` is shown too: coreutils'
sha256sum may lack the SHA extensions that OpenSSL (and so Python's hashlib) uses, which makes it
the slower floor; bundle create also writes (and fsyncs) the 1 GiB bundle.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
RUNS = 3


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def _airgap(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "airgap", *map(str, args)]


def main() -> None:
    mib = int(os.environ.get("AIRGAP_BENCH_BUNDLE_MIB", "1024"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("AIRGAP_BENCH_TMP")) as tmp:
        work = Path(tmp)
        big = work / "istio-big-linux-amd64.tar.gz"
        block = os.urandom(1024 * 1024)
        with open(big, "wb") as fh:
            for i in range(mib):
                fh.write(block[:-8] + i.to_bytes(8, "big"))
        env = {**os.environ, "AIRGAP_STATE_DIR": str(work / "state")}
        pki = work / "pki"
        subprocess.run(
            _airgap("ca", "init", "--dir", pki, "--key-type", "ecdsa-p256", "--no-passphrase"),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            _airgap("ca", "issue", "c1", "--dir", pki, "--key-type", "ecdsa-p256", "--no-passphrase"),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            _airgap("keys", "new", "officer", "--out", work, "--no-passphrase"), check=True, capture_output=True
        )
        subprocess.run(
            _airgap("keys", "new", "op", "--kind", "recipient", "--out", work, "--no-passphrase"),
            check=True,
            capture_output=True,
        )
        subprocess.run(["sha256sum", str(big)], check=True, capture_output=True)  # warm the page cache

        sha, ossl, create, verify = [], [], [], []
        for i in range(RUNS):
            sha.append(_timed(["sha256sum", str(big)]))
            ossl.append(_timed(["openssl", "dgst", "-sha256", str(big)]))
            out = work / f"b{i}.bundle"
            create.append(
                _timed(
                    _airgap("bundle", "create", "c1", "--dir", pki, "--sign-key", work / "officer.key",
                            "--recipient", work / "op.pub", "--include", big, "--out", out),
                    env,
                )
            )  # fmt: skip
            verify.append(_timed(_airgap("bundle", "verify", out, "--trust", work / "officer.pub"), env))
            out.unlink()
        start = _timed(_airgap("--version"))

    m_sha, m_create, m_verify = statistics.median(sha), statistics.median(create), statistics.median(verify)
    m_ossl = statistics.median(ossl)
    doc = {
        "bench": "bundle",
        "size_mib": mib,
        "runs": RUNS,
        "sha256sum_s": round(m_sha, 3),
        "openssl_dgst_sha256_s": round(m_ossl, 3),
        "create_vs_openssl": round(m_create / m_ossl, 2),
        "verify_vs_openssl": round(m_verify / m_ossl, 2),
        "bundle_create_s": round(m_create, 3),
        "bundle_verify_s": round(m_verify, 3),
        "airgap_startup_s": round(start, 3),
        "create_ratio": round(m_create / m_sha, 2),
        "verify_ratio": round(m_verify / m_sha, 2),
        "create_plus_verify_ratio": round((m_create + m_verify) / (2 * m_sha), 2),
        "target_ratio": 1.5,
        "cpu_count": os.cpu_count(),
    }
    (RESULTS / "bundle.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"{'operation':<28}{'median s':>10}{'x sha256sum':>14}")
    print(f"{'sha256sum ' + str(mib) + ' MiB':<28}{m_sha:>10.2f}{1:>14.2f}")
    print(f"{'openssl dgst -sha256':<28}{m_ossl:>10.2f}{m_ossl / m_sha:>14.2f}")
    print(f"{'airgap bundle create':<28}{m_create:>10.2f}{m_create / m_sha:>14.2f}")
    print(f"{'airgap bundle verify':<28}{m_verify:>10.2f}{m_verify / m_sha:>14.2f}")
    print(f"(start-up of airgap: {start:.2f} s, included above; results in {RESULTS / 'bundle.json'})")


if __name__ == "__main__":
    main()
