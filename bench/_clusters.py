"""Emulated clusters for the fleet benchmarks: ``python -m tests.kubeapi`` in its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def start_clusters(kubeconfig: Path, clusters: int, latency: float, *extra: str) -> subprocess.Popen[str]:
    """Start ``clusters`` emulated clusters with ``latency`` seconds per request; return once they serve.

    ``extra`` are more ``tests.kubeapi`` options (``--mesh-root FILE``). Stop the process with terminate().
    """
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "tests.kubeapi", "--kubeconfig", str(kubeconfig),
            "--clusters", str(clusters), "--latency", str(latency), *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("kubeconfig:"):
            return proc
    raise RuntimeError("the emulator did not start")
