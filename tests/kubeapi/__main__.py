"""Run emulated clusters on their own: ``python -m tests.kubeapi --kubeconfig FILE [--clusters N]``.

Writes a kubeconfig with one context per cluster (``emu-1`` ...; the first is current), prints
it, and serves until interrupted. Try the CLI against it::

    KUBECONFIG=FILE airgap preflight --context emu-1

``--istioctl-log FILE`` follows the fake istioctl's log and simulates its installs; with
``--workloads`` each cluster gets a ``demo`` namespace with one deployment to inject.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tests.kubeapi.istioctl import IstioctlSimulator
from tests.kubeapi.server import Emulator, write_kubeconfig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.kubeapi", description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", required=True, type=Path, help="where to write the kubeconfig")
    ap.add_argument("--clusters", type=int, default=1, help="how many clusters (contexts emu-1 ...)")
    ap.add_argument("--prefix", default="emu", help="context name prefix")
    ap.add_argument(
        "--server-version", default="v1.19.16", help="the Kubernetes version reported (default: ASM 1.8's v1.19.16)"
    )
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    ap.add_argument(
        "--publish-roots-after",
        type=float,
        default=None,
        help="turn on the istiod stand-in: copy cacerts' root-cert.pem into istio-ca-root-cert ConfigMaps "
        "of injected namespaces this many seconds after it changes",
    )
    ap.add_argument("--istioctl-log", type=Path, help="follow the fake istioctl's log and simulate installs")
    ap.add_argument("--workloads", action="store_true", help="a demo namespace with one deployment per cluster")
    ap.add_argument(
        "--mesh-root",
        type=Path,
        help="seed each cluster as mesh install + bundle import leave it: istio-system (network, clusterName, "
        "meshID) and a cacerts holding this root-cert.pem",
    )
    ap.add_argument(
        "--mesh-chain",
        type=Path,
        help="with --mesh-root: also put this cert-chain.pem into each seeded cacerts (mesh trust reads both)",
    )
    args = ap.parse_args(argv)
    emulators: dict[str, Emulator] = {}
    for i in range(1, args.clusters + 1):
        name = f"{args.prefix}-{i}"
        emu = Emulator(name=name, version=args.server_version).start()
        emu.faults.latency = args.latency
        emu.root_publish_delay = args.publish_roots_after
        if args.workloads:
            emu.add_deployment("demo", "web", {"app": "web"})
        if args.mesh_root:
            chain = args.mesh_chain.read_bytes() if args.mesh_chain else None
            _seed_mesh(emu, name, args.mesh_root.read_bytes(), chain)
        emulators[name] = emu
    write_kubeconfig(args.kubeconfig, list(emulators.items()))
    sim = IstioctlSimulator(args.istioctl_log, emulators).start() if args.istioctl_log else None
    print(f"emulated clusters (NOT a real Kubernetes): {', '.join(emulators)}", flush=True)
    print(f"kubeconfig: {args.kubeconfig}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    if sim is not None:
        sim.stop()
    for emu in emulators.values():
        emu.stop()
    return 0


def _seed_mesh(emu: Emulator, name: str, root_pem: bytes, chain_pem: bytes | None = None) -> None:
    import base64

    emu.create(
        "namespaces",
        None,
        {
            "metadata": {
                "name": "istio-system",
                "labels": {"topology.istio.io/network": f"net-{name}"},
                "annotations": {"airgap.dev/cluster-name": name, "airgap.dev/mesh-id": "bench-mesh"},
            }
        },
    )
    data = {"root-cert.pem": base64.b64encode(root_pem).decode()}
    if chain_pem is not None:
        data["cert-chain.pem"] = base64.b64encode(chain_pem).decode()
    emu.create("secrets", "istio-system", {"metadata": {"name": "cacerts"}, "data": data})


if __name__ == "__main__":
    sys.exit(main())
