"""``mesh trust`` over 50 emulated clusters: ``--parallel 8`` against ``--parallel 1``.

The clusters are the test Kubernetes API emulator (``python -m tests.kubeapi``) in its own process,
over HTTPS on loopback, with ``LATENCY`` seconds added to every request to stand in for the round
trip to a real API server. Each cluster holds a ``cacerts`` with a root and a chain (``--mesh-root``
/ ``--mesh-chain``). What is timed is what ``mesh trust`` does after parsing its options: read
every cluster's ``cacerts`` (:func:`airgap.connected.trust.read_fleet_trust`) and compute the
invariant (:func:`airgap.connected.trust.evaluate`). Best of ``ROUNDS``, the two sides alternated.
Target: the parallel run takes at most 0.2x the serial one. Writes ``bench/results/trust.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

from bench._clusters import start_clusters

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CLUSTERS = 50
LATENCY = 0.02
ROUNDS = 3
TARGET = 0.2


def _once(contexts: list[str], kubeconfig: Path, parallel: int) -> float:
    from airgap.connected.kube import RetryPolicy
    from airgap.connected.trust import evaluate, read_fleet_trust

    t0 = time.perf_counter()
    state = evaluate(
        read_fleet_trust(contexts, parallel=parallel, kubeconfig=kubeconfig, policy=RetryPolicy(backoff=0.05))
    )
    elapsed = time.perf_counter() - t0
    if not state.whole or len(state.clusters) != len(contexts):
        raise RuntimeError("the benchmark fleet is not whole:\n" + state.table())
    return elapsed


def main() -> list[dict[str, object]]:
    from tests.helpers import make_pki

    with tempfile.TemporaryDirectory(prefix="bench-trust-") as d:
        tmp = Path(d)
        make_pki(tmp / "pki", ["bench"], passphrase=None, key_passphrase=None)
        folder = tmp / "pki" / "bench"
        kubeconfig = tmp / "kubeconfig"
        proc = start_clusters(
            kubeconfig, CLUSTERS, LATENCY, "--mesh-root", str(folder / "root-cert.pem"),
            "--mesh-chain", str(folder / "cert-chain.pem"),
        )  # fmt: skip
        try:
            contexts = [f"emu-{i}" for i in range(1, CLUSTERS + 1)]
            _once(contexts[:2], kubeconfig, 2)  # warm up: the kubernetes package imported once
            serial, parallel = [], []
            for _ in range(ROUNDS):
                serial.append(_once(contexts, kubeconfig, 1))
                parallel.append(_once(contexts, kubeconfig, 8))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    row: dict[str, object] = {
        "case": f"mesh trust over {CLUSTERS} emulated clusters ({LATENCY * 1000:.0f} ms per request)",
        "parallel_1_s": round(min(serial), 3),
        "parallel_8_s": round(min(parallel), 3),
        "ratio": round(min(parallel) / min(serial), 3),
        "target_ratio": TARGET,
    }
    _write(row, serial, parallel)
    print(json.dumps(row))
    return [row]


def _write(row: dict[str, object], serial: list[float], parallel: list[float]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    met = "yes" if float(str(row["ratio"])) <= TARGET else "no"
    lines = [
        f"# python -m bench trust ({when}, {os.cpu_count()} cores, best of {ROUNDS}, sides alternated)",
        "",
        "| case | --parallel 1 s | --parallel 8 s | ratio | target | met |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        f"| {row['case']} | {row['parallel_1_s']} | {row['parallel_8_s']} | {row['ratio']} | ≤ {TARGET} | {met} |",
        "",
        f"- every round, serial: {', '.join(f'{s:.3f}' for s in serial)}; parallel: "
        f"{', '.join(f'{s:.3f}' for s in parallel)}",
        "- timed: reading each cluster's cacerts (one GET per cluster, a fresh client per context, as the "
        "command does) and computing the invariant; the emulator runs in its own process on the same cores.",
        f"- load average (1 min) when written: {os.getloadavg()[0]:.2f} (the machine is shared).",
    ]
    (RESULTS / "trust.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "trust.json").write_text(json.dumps([row], indent=2) + "\n")


if __name__ == "__main__":
    main()
