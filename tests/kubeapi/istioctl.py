"""Simulate what ``istioctl install`` does to a cluster, driven by the fake istioctl's log.

The test release's fake ``bin/istioctl`` appends its argv as one JSON line to ``$ISTIOCTL_LOG``.
:class:`IstioctlSimulator` follows that file: for each ``install`` line it reads the ``-f`` file's
``spec.revision`` and the ``--context``, and creates istiod (of that revision) and the ingress
gateway in the matching emulator, whose controller then marks their pods Ready. A real istioctl
would apply hundreds of objects; airgap only waits for these pods, so that is all we emulate.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import yaml

from tests.kubeapi.server import Emulator


def parse_install(argv: list[str]) -> tuple[str | None, list[str]]:
    """(context, -f files) of an ``istioctl install`` argv."""
    context, files = None, []
    it = iter(range(len(argv)))
    for i in it:
        a = argv[i]
        if a.startswith("--context="):
            context = a.split("=", 1)[1]
        elif a == "--context" and i + 1 < len(argv):
            context = argv[i + 1]
            next(it, None)
        elif a in ("-f", "--filename") and i + 1 < len(argv):
            files.append(argv[i + 1])
            next(it, None)
        elif a.startswith("--filename="):
            files.append(a.split("=", 1)[1])
    return context, files


class IstioctlSimulator:
    """Follows ``log`` and applies each ``istioctl install`` to the emulator named by its context."""

    def __init__(self, log: Path, emulators: dict[str, Emulator], default_context: str | None = None) -> None:
        self.log = log
        self.emulators = emulators
        self.default_context = default_context
        self.installs: list[tuple[str, str]] = []  # (context, revision)
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> IstioctlSimulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.poll()

    def poll(self) -> None:
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            try:
                argv = json.loads(line)
            except ValueError:
                continue
            if isinstance(argv, dict):
                argv = argv.get("argv", [])
            args = [str(a) for a in argv]
            if "install" not in args:
                continue
            context, files = parse_install(args)
            context = context or self.default_context
            emu = self.emulators.get(context or "")
            if emu is None:
                continue
            revision = "default"
            proxy_image: str | None = None
            gateways: list[tuple[str, dict[str, str]]] = []
            for f in files:
                try:
                    doc = yaml.safe_load(Path(f).read_text()) or {}
                except OSError:
                    continue
                spec = doc.get("spec") or {}
                revision = spec.get("revision") or revision
                image = (((spec.get("values") or {}).get("global") or {}).get("proxy") or {}).get("image")
                if isinstance(image, str) and "/" in image:  # Istio uses an image with a '/' verbatim
                    proxy_image = image
                if spec.get("profile") == "empty":  # a gateway-only install (the east-west gateway)
                    for gw in (spec.get("components") or {}).get("ingressGateways") or []:
                        if gw.get("enabled"):
                            gateways.append((str(gw["name"]), {str(k): str(v) for k, v in gw["label"].items()}))
            if gateways:
                for name, labels in gateways:
                    emu.simulate_gateway(name, labels)
                self.installs.append((context or "", f"gateways:{revision}"))
                continue
            emu.simulate_istio_install(revision, proxy_image=proxy_image)
            self.installs.append((context or "", revision))
