"""Import one CA bundle's cacerts into 50 emulated clusters: ``--parallel 8`` against ``--parallel 1``.

The clusters are the test Kubernetes API emulator (``python -m tests.kubeapi``), run in their own
process, over HTTPS on loopback, with ``LATENCY`` seconds added to every request to stand in for
the round trip to a real API server (a loopback emulator answers in microseconds, which would
measure nothing but Python). Each run gets fresh clusters. What is timed is the cluster side of
``bundle import`` (:func:`airgap.connected.cacerts.import_to_fleet`: connect, create
``istio-system``, create ``cacerts``); the bundle's verification happens once per run and is
not part of it. Target: the parallel run takes at most 0.3x the serial one.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._clusters import start_clusters

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CLUSTERS = 50
LATENCY = 0.02


class _Prepared:
    """The two manifests a verified bundle import hands to the cluster writer."""

    sequence = 1

    def __init__(self, secret: dict[str, Any]) -> None:
        self.secret = secret

    def namespace_manifest(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}

    def cacerts_secret_manifest(self) -> dict[str, Any]:
        return self.secret


def _secret(tmp: Path) -> dict[str, Any]:
    from tests.helpers import make_pki

    make_pki(tmp / "pki", ["bench"], passphrase=None, key_passphrase=None)
    folder = tmp / "pki" / "bench"
    keys = ("ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cacerts", "namespace": "istio-system", "annotations": {"airgap.dev/sequence": "1"}},
        "type": "Opaque",
        "data": {k: base64.b64encode((folder / k).read_bytes()).decode() for k in keys},
    }


def run(parallel: int, prepared: _Prepared, tmp: Path) -> float:
    from airgap.connected.cacerts import import_to_fleet
    from airgap.connected.kube import RetryPolicy

    kubeconfig = tmp / f"kubeconfig-{parallel}"
    proc = start_clusters(kubeconfig, CLUSTERS, LATENCY)
    try:
        contexts = [f"emu-{i}" for i in range(1, CLUSTERS + 1)]
        t0 = time.perf_counter()
        report = import_to_fleet(
            prepared,
            contexts,
            parallel=parallel,
            kubeconfig=kubeconfig,
            policy=RetryPolicy(backoff=0.05),
            record=lambda _p: None,
        )
        elapsed = time.perf_counter() - t0
        bad = report.failed
        if bad or any(o.result != "created" for o in report.outcomes):
            raise RuntimeError(f"fleet import failed: {report.table()}")
        return elapsed
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as d:
        tmp = Path(d)
        prepared = _Prepared(_secret(tmp))
        serial = run(1, prepared, tmp)
        parallel = run(8, prepared, tmp)
    rows: list[dict[str, object]] = [
        {
            "case": f"bundle import into {CLUSTERS} emulated clusters ({LATENCY * 1000:.0f} ms per request)",
            "parallel_1_s": round(serial, 3),
            "parallel_8_s": round(parallel, 3),
            "ratio": round(parallel / serial, 3),
            "target_ratio": 0.3,
        }
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fleet.json").write_text(json.dumps(rows, indent=2) + "\n")
    for r in rows:
        print(json.dumps(r))
    return rows


if __name__ == "__main__":
    main()
