"""A Kubernetes API emulator for airgap's cluster tests (see :mod:`tests.kubeapi.server`)."""

from tests.kubeapi.server import Emulator, Faults, Gate, write_kubeconfig

__all__ = ["Emulator", "Faults", "Gate", "write_kubeconfig"]
