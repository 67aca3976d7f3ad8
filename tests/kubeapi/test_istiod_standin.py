"""The emulator's istiod stand-in (tests only): cacerts' root-cert.pem copied into the
``istio-ca-root-cert`` ConfigMap of injected namespaces, only while istiod runs."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kubeapi.server import Emulator


@pytest.fixture
def emu() -> Iterator[Emulator]:
    e = Emulator(name="standin").start()
    try:
        yield e
    finally:
        e.stop()


def _wait(check: object, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    pytest.fail(f"stand-in never {what}")


def _cm(emu: Emulator, ns: str) -> str | None:
    cm = emu.get("configmaps", ns, "istio-ca-root-cert")
    return None if cm is None else str(cm["data"]["root-cert.pem"])


def test_roots_are_published_into_injected_namespaces_while_istiod_runs(emu: Emulator) -> None:
    emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    emu.create(
        "secrets",
        "istio-system",
        {"metadata": {"name": "cacerts"}, "data": {"root-cert.pem": base64.b64encode(b"ROOT A").decode()}},
    )
    for name, labels in (("shop", {"istio.io/rev": "r1"}), ("legacy", {"istio-injection": "enabled"}), ("plain", {})):
        emu.create("namespaces", None, {"metadata": {"name": name, "labels": labels}})
    emu.root_publish_delay = 0.0
    emu.wait_idle()
    time.sleep(0.2)  # several controller ticks: no istiod, nothing published
    assert emu.list("configmaps") == []
    emu.simulate_istio_install("r1")
    _wait(lambda: _cm(emu, "shop") == "ROOT A" and _cm(emu, "legacy") == "ROOT A", "published")
    assert _cm(emu, "plain") is None
    emu.patch("secrets", "istio-system", "cacerts", {"data": {"root-cert.pem": base64.b64encode(b"ROOT A+B").decode()}})
    _wait(lambda: _cm(emu, "shop") == "ROOT A+B", "republished")


def test_off_by_default(emu: Emulator) -> None:
    assert emu.root_publish_delay is None
    emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    emu.create(
        "secrets",
        "istio-system",
        {"metadata": {"name": "cacerts"}, "data": {"root-cert.pem": base64.b64encode(b"R").decode()}},
    )
    emu.create("namespaces", None, {"metadata": {"name": "shop", "labels": {"istio.io/rev": "r1"}}})
    emu.simulate_istio_install("r1")
    emu.wait_idle()
    time.sleep(0.2)
    assert emu.list("configmaps") == []


def test_the_real_kubectl_creates_and_reads_a_configmap(emu: Emulator, tmp_path: Path) -> None:
    """kubectl sends ConfigMaps as protobuf; the emulator decodes them (what a hand-made split uses)."""
    kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    run = [shutil.which("kubectl") or "kubectl", "--context", "standin"]
    made = subprocess.run([*run, "create", "configmap", "x", "--from-literal=root-cert.pem=PEM"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    cm = emu.get("configmaps", "default", "x")
    assert cm is not None and cm["data"] == {"root-cert.pem": "PEM"}
    got = subprocess.run([*run, "get", "configmap", "x", "-o", "jsonpath={.data.root-cert\\.pem}"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert got.returncode == 0 and got.stdout == "PEM", got.stderr
