"""``mesh connect`` of 30 emulated clusters (870 remote secrets): ``--parallel 8`` against ``--parallel 1``.

The clusters are the test Kubernetes API emulator (``python -m tests.kubeapi --mesh-root``), in
their own process, over HTTPS on loopback, with ``LATENCY`` seconds added to every request to
stand in for the round trip to a real API server. Each run gets fresh clusters, seeded as
``mesh install`` and ``bundle import`` leave them (istio-system with network, clusterName and
meshID; cacerts with one shared root). What is timed is :func:`airgap.connected.remote_secrets.connect_mesh`:
facts, the fleet check, a reader and token in every cluster, and 29 remote secrets in each.
Target: the parallel run takes at most 0.2x the serial one.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench._clusters import start_clusters

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CLUSTERS = 30
LATENCY = 0.02


def _root(tmp: Path) -> Path:
    from airgap.offline.ca import CAStore

    CAStore(tmp / "pki").init_root(key_type="ecdsa-p256", days=3650, org="Istio", cn="Root CA", passphrase=None)
    return tmp / "pki" / "root-cert.pem"


def run(parallel: int, root: Path, tmp: Path) -> float:
    from airgap.connected.kube import RetryPolicy
    from airgap.connected.remote_secrets import connect_mesh

    kubeconfig = tmp / f"kubeconfig-{parallel}"
    proc = start_clusters(kubeconfig, CLUSTERS, LATENCY, "--mesh-root", str(root))
    try:
        contexts = [f"emu-{i}" for i in range(1, CLUSTERS + 1)]
        t0 = time.perf_counter()
        result = connect_mesh(
            contexts, kubeconfig=kubeconfig, parallel=parallel, policy=RetryPolicy(backoff=0.05), poll=0.05
        )
        elapsed = time.perf_counter() - t0
        made = [s for s in result.secrets if s["action"] == "created"]
        if len(made) != CLUSTERS * (CLUSTERS - 1):
            raise RuntimeError(f"expected {CLUSTERS * (CLUSTERS - 1)} remote secrets, made {len(made)}")
        return elapsed
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="bench-connect-") as d:
        tmp = Path(d)
        root = _root(tmp)
        serial = run(1, root, tmp)
        parallel = run(8, root, tmp)
    rows: list[dict[str, object]] = [
        {
            "case": f"mesh connect of {CLUSTERS} emulated clusters, {CLUSTERS * (CLUSTERS - 1)} remote secrets "
            f"({LATENCY * 1000:.0f} ms per request)",
            "parallel_1_s": round(serial, 3),
            "parallel_8_s": round(parallel, 3),
            "ratio": round(parallel / serial, 3),
            "target_ratio": 0.2,
        }
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "connect.json").write_text(json.dumps(rows, indent=2) + "\n")
    for r in rows:
        print(json.dumps(r))
    return rows


if __name__ == "__main__":
    main()
