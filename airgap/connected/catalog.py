"""Release lines airgap knows: the default revision, profile and Kubernetes range of each.

``mesh install`` and ``preflight --release`` take their defaults from the release they are given
(its version read from ``RELEASE.json``), not from constants for ASM 1.8. A release that is not in
the catalog gets the revision derived from its version the way ASM names revisions
(``1.8.6-asm.8`` -> ``asm-186-8``; plain Istio ``1.20.3`` -> ``1-20-3``), the ``default``
profile, and a preflight *warning* instead of a Kubernetes version check.

Each fact names its public source in a comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from airgap.errors import InvalidInput


@dataclass(frozen=True)
class ReleaseLine:
    """What one release line (``major.minor`` of ASM or Istio) installs with, and where it runs."""

    line: str  # "asm-1.8", "istio-1.8"
    profile: str
    kubernetes: tuple[tuple[int, int], tuple[int, int]]  # lowest and highest supported minor, inclusive
    source: str
    # Images an install needs that the release's own files do not name (``images list`` adds them at
    # the profile's hub and tag); each with its public source in a comment. None so far.
    images: tuple[str, ...] = ()


CATALOG: dict[str, ReleaseLine] = {
    line.line: line
    for line in (
        # Google's "Installing Anthos Service Mesh 1.8.6 on GKE on VMware": profile asm-multicloud,
        # revision asm-186-8 (cluster.yaml); ASM 1.8 supported platforms: Kubernetes 1.16 - 1.19.
        ReleaseLine("asm-1.8", "asm-multicloud", ((1, 16), (1, 19)), "ASM 1.8 on-prem install guide"),
        # istio.io "Supported Releases" table: Istio 1.8 was tested on Kubernetes 1.16 - 1.19.
        ReleaseLine("istio-1.8", "default", ((1, 16), (1, 19)), "istio.io supported releases"),
        # istio.io "Supported Releases" table: Istio 1.20 on Kubernetes 1.25 - 1.29.
        ReleaseLine("istio-1.20", "default", ((1, 25), (1, 29)), "istio.io supported releases"),
        # istio.io "Supported Releases" table: Istio 1.24 on Kubernetes 1.28 - 1.31.
        ReleaseLine("istio-1.24", "default", ((1, 28), (1, 31)), "istio.io supported releases"),
    )
}

_ASM = re.compile(r"^(\d+)\.(\d+)\.(\d+)-asm\.(\d+)$")
_ISTIO = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class ReleaseDefaults:
    """Defaults for one release version; ``line`` is None when the catalog does not know it."""

    version: str
    revision: str
    profile: str
    line: ReleaseLine | None

    @property
    def known(self) -> bool:
        return self.line is not None


def defaults_for(version: str) -> ReleaseDefaults:
    """The revision, profile and (when known) Kubernetes range for a release ``version``."""
    if m := _ASM.match(version):
        major, minor, patch, build = m.groups()
        revision = f"asm-{major}{minor}{patch}-{build}"
        line = CATALOG.get(f"asm-{major}.{minor}")
    elif m := _ISTIO.match(version):
        major, minor, patch = m.groups()
        revision = f"{major}-{minor}-{patch}"
        line = CATALOG.get(f"istio-{major}.{minor}")
    else:
        raise InvalidInput(f"release version {version!r}: not an ASM (1.8.6-asm.8) or Istio (1.20.3) version")
    return ReleaseDefaults(version, revision, line.profile if line else "default", line)


def release_version(release: Path) -> str:
    """The version of an extracted release: from its ``istio-VERSION`` folder (recorded in RELEASE.json)."""
    from airgap.core.release import release_root

    name = release_root(release).name
    version = name.removeprefix("istio-")
    if version == name or not version:
        raise InvalidInput(f"{release}: cannot tell the release version from folder {name!r}")
    return version
