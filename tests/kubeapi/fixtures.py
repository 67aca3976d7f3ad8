"""Pytest fixtures for cluster tests: an emulator per test, or a real cluster.

Test modules load them with ``from tests.kubeapi.fixtures import *  # noqa: F403``.

With ``AIRGAP_TEST_KUBECONFIG`` set (and optionally ``AIRGAP_TEST_CONTEXT``), ``kube_cluster``
yields that real cluster instead; tests that need the emulator (fault injection, simulated
installs, seeded workloads) call :meth:`Cluster.emu`, which skips them there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.kubeapi.istioctl import IstioctlSimulator
from tests.kubeapi.server import Emulator, write_kubeconfig

REAL_KUBECONFIG = os.environ.get("AIRGAP_TEST_KUBECONFIG")
# The clusters airgap's ASM 1.8 flows are tested on: a server in ASM 1.8's range (1.16-1.19).
# The emulator itself defaults to a current version (server.DEFAULT_VERSION).
# ``AIRGAP_TEST_EMULATOR_VERSION`` runs them against another emulated version (e.g. v1.32.4).
ASM_VERSION = os.environ.get("AIRGAP_TEST_EMULATOR_VERSION") or "v1.19.16"


@dataclass
class Cluster:
    """One cluster for a test: its kubeconfig, context, and (when emulated) the emulator."""

    kubeconfig: Path
    context: str
    emulator: Emulator | None
    istioctl_log: Path
    simulator: IstioctlSimulator | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig), "ISTIOCTL_LOG": str(self.istioctl_log)}

    def emu(self) -> Emulator:
        """The emulator; skips the test on a real cluster (emulator-only assertion)."""
        if self.emulator is None:
            pytest.skip("needs the Kubernetes API emulator (fault injection or simulated state)")
        return self.emulator


@dataclass
class Fleet:
    kubeconfig: Path
    contexts: list[str]
    emulators: dict[str, Emulator]
    istioctl_log: Path
    simulator: IstioctlSimulator | None = None
    _extra: list[Emulator] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig), "ISTIOCTL_LOG": str(self.istioctl_log)}


def _real_cluster(tmp_path: Path) -> Cluster:
    from kubernetes import config as kconfig

    assert REAL_KUBECONFIG is not None
    _contexts, current = kconfig.list_kube_config_contexts(REAL_KUBECONFIG)
    context = os.environ.get("AIRGAP_TEST_CONTEXT") or current["name"]
    return Cluster(Path(REAL_KUBECONFIG), context, None, tmp_path / "istioctl.log")


@pytest.fixture
def kube_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh emulated cluster (context ``test``) with an istioctl simulator, or the real cluster."""
    log = tmp_path / "istioctl.log"
    if REAL_KUBECONFIG:
        yield _real_cluster(tmp_path)
        return
    emu = Emulator(name="test", version=ASM_VERSION).start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", [("test", emu)])
    sim = IstioctlSimulator(log, {"test": emu}, default_context="test").start()
    try:
        yield Cluster(kubeconfig, "test", emu, log, sim)
    finally:
        sim.stop()
        emu.stop()
    _no_unknown_fields([emu])


@pytest.fixture
def kube_fleet(tmp_path: Path) -> Iterator[Callable[[int], Fleet]]:
    """A factory of emulated fleets: ``kube_fleet(3)`` gives contexts ``c1``..``c3`` (emulator only)."""
    if REAL_KUBECONFIG:
        pytest.skip("fleet tests need the emulator")
    started: list[Emulator] = []
    sims: list[IstioctlSimulator] = []

    def make(n: int) -> Fleet:
        emus = {f"c{i}": Emulator(name=f"c{i}", version=ASM_VERSION).start() for i in range(1, n + 1)}
        started.extend(emus.values())
        log = tmp_path / f"istioctl-{len(sims)}.log"
        kubeconfig = write_kubeconfig(tmp_path / f"kubeconfig-{len(sims)}", list(emus.items()))
        sim = IstioctlSimulator(log, emus).start()
        sims.append(sim)
        return Fleet(kubeconfig, list(emus), emus, log, sim)

    try:
        yield make
    finally:
        for s in sims:
            s.stop()
        for e in started:
            e.stop()
    _no_unknown_fields(started)


def _no_unknown_fields(emulators: list[Emulator]) -> None:
    """No request of the test sent a field its kind does not have (a 1.25+ server warns or refuses)."""
    sent = [(e.name, r.method, r.path, r.unknown_fields) for e in emulators for r in e.requests if r.unknown_fields]
    assert not sent, f"requests with unknown fields: {sent}"
