"""The fleet layout of ``--output-dir``: a Git-ready tree that Flux and Argo CD consume.

::

    DIR/.sops.yaml                      creation rules (with --sops-age): recipients, data/stringData only
    DIR/clusters/NAME/kustomization.yaml   every NN-*.yaml of the folder, in name (= apply) order
    DIR/clusters/NAME/00-namespace.yaml    istio-system (mesh install adds the network label)
    DIR/clusters/NAME/10-cacerts-secret.sops.yaml   bundle import (10-cacerts-secret.yaml: --plaintext-secrets)
    DIR/clusters/NAME/30-istiod-service.yaml        mesh install
    DIR/clusters/NAME/cluster.yaml, istioctl-install.sh   mesh install: istioctl's input, not applied by kustomize

``bundle import`` and ``mesh install`` (and later ``mesh connect``) render into the same tree; each
command owns its files, and ``kustomization.yaml`` is rebuilt from the folder's ``NN-*.yaml``
files after every render, so ``kubectl kustomize clusters/NAME`` builds whatever was rendered.

Re-rendering is how the tree changes: a file whose content is unchanged is left byte for byte as
it is (a SOPS file is compared by its content digest and recipients, see :mod:`airgap.core.sops`),
so Git shows no diff; a file with other content is replaced only when the command was told to
(``bundle import --rotate``, ``mesh install --force``), else the cluster is refused (exit 4) with
nothing written in its folder. Each cluster's changed files are written completely under
temporary names (ciphertext only, when SOPS is on) and then renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airgap.core import sops
from airgap.core.atomic import (
    TMP_PREFIX,
    ensure_dir,
    fsync_dir,
    publish,
    remove_stale_temps,
    write_new,
    write_replace,
)
from airgap.core.files import read_capped
from airgap.core.locking import exclusive_lock
from airgap.errors import InvalidInput, Refused, WouldOverwrite

CLUSTERS = "clusters"
KUSTOMIZATION = "kustomization.yaml"
SOPS_CONFIG = ".sops.yaml"
NAMESPACE_FILE = "00-namespace.yaml"
MAX_RENDERED = 4 * 1024 * 1024
_RESOURCE = re.compile(r"^\d\d-[A-Za-z0-9][-A-Za-z0-9_.]*\.yaml$")
_CLUSTER = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,252}$")


@dataclass(frozen=True)
class RenderedFile:
    """One file a command renders into a cluster folder.

    Exactly one of ``data`` (the bytes) or ``secret`` (a Secret manifest, written by
    :func:`airgap.core.sops.write_secret_file`'s rules: SOPS when the render has recipients).
    ``replaceable(existing)`` says an existing, different file may be replaced without the
    command's override flag; ``check_existing(existing)`` may refuse even with it (a rollback).
    ``supersedes``: other names of the same resource (the plaintext/SOPS twin), removed when
    this file is written. ``keep_existing``: any existing file of this name is left as it is.
    """

    name: str
    data: bytes | None = field(default=None, repr=False)
    secret: dict[str, Any] | None = field(default=None, repr=False)
    mode: int = 0o644
    keep_existing: bool = False
    replaceable: Callable[[bytes], bool] | None = None
    check_existing: Callable[[bytes], None] | None = None
    supersedes: tuple[str, ...] = ()

    @property
    def resource(self) -> bool:
        """Listed in ``kustomization.yaml`` (``NN-name.yaml``)."""
        return bool(_RESOURCE.match(self.name))


@dataclass(frozen=True)
class ClusterRender:
    """What one cluster's render did, file by file: ``created``, ``updated``, ``unchanged``, ``kept``, ``removed``."""

    cluster: str
    folder: Path
    actions: dict[str, str]

    @property
    def changed(self) -> bool:
        return any(a in ("created", "updated", "removed") for a in self.actions.values())

    def summary(self) -> str:
        changed = sorted(n for n, a in self.actions.items() if a in ("created", "updated", "removed"))
        if not changed:
            return "unchanged"
        return ", ".join(f"{n} {self.actions[n]}" for n in changed)


def check_cluster_name(name: str) -> str:
    """A cluster folder name: letters, digits, '-', '_', '.'; never a path, '.' or '..'."""
    if not _CLUSTER.match(name) or name in (".", "..") or name.startswith(TMP_PREFIX):
        raise InvalidInput(f"{name!r}: not usable as a cluster folder name under {CLUSTERS}/")
    return name


def cluster_folder(root: Path, cluster: str) -> Path:
    return Path(root) / CLUSTERS / check_cluster_name(cluster)


def kustomization(resources: Sequence[str]) -> bytes:
    """``kustomization.yaml`` listing ``resources`` in the order given."""
    doc = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": list(resources)}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).encode("utf-8")


def _read(path: Path) -> bytes | None:
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise Refused(f"{path}: exists and is not a regular file; refusing to replace it")
    if not path.exists():
        return None
    return read_capped(path, MAX_RENDERED, "rendered file", regular=True)


def write_sops_config(root: Path, recipients: Sequence[str]) -> str:
    """``DIR/.sops.yaml`` for ``recipients``: ``created``, ``unchanged`` or ``updated`` (new recipients)."""
    ensure_dir(Path(root))
    path = Path(root) / SOPS_CONFIG
    want = sops.sops_config(recipients)
    have = _read(path)
    if have == want:
        return "unchanged"
    if have is None:
        write_new(path, want)
        return "created"
    write_replace(path, want)
    return "updated"


def _plan(
    folder: Path, f: RenderedFile, recipients: Sequence[str] | None, replace: bool, binary: Path | None
) -> tuple[str, bytes | None]:
    """(action, bytes to write) for one file; raises :class:`Refused` before anything is written."""
    existing = _read(folder / f.name)
    if existing is not None and f.keep_existing:
        return "kept", None
    if f.secret is not None:
        if existing is not None and sops.is_current(existing, f.secret, recipients):
            return "unchanged", None
        # the same Secret under its twin's name (plaintext <-> SOPS) counts as what is there
        before, where = existing, folder / f.name
        for twin in f.supersedes:
            if before is None:
                before, where = _read(folder / twin), folder / twin
        if before is not None and sops.existing_digest(before) != sops.content_digest(f.secret):
            if f.check_existing is not None:
                f.check_existing(before)
            if not replace and not (f.replaceable is not None and f.replaceable(before)):
                raise WouldOverwrite(f"{where}: already exists with other content; refusing to overwrite")
        return ("created" if existing is None else "updated"), sops.render_secret(f.secret, recipients, binary=binary)
    assert f.data is not None
    if existing == f.data:
        return "unchanged", None
    if existing is not None:
        if f.check_existing is not None:
            f.check_existing(existing)
        if not replace and not (f.replaceable is not None and f.replaceable(existing)):
            raise WouldOverwrite(f"{folder / f.name}: already exists with other content; refusing to overwrite")
    return ("created" if existing is None else "updated"), f.data


def render_cluster(
    root: Path,
    cluster: str,
    files: Sequence[RenderedFile],
    *,
    recipients: Sequence[str] | None,
    replace: bool = False,
    binary: Path | None = None,
) -> ClusterRender:
    """Bring ``root/clusters/CLUSTER/`` to ``files`` and rebuild its ``kustomization.yaml``.

    Every decision (and every sops encryption) is made before the first file is touched: a
    refusal leaves the folder as it was. Leftover temporary files of a killed run are removed.
    """
    folder = cluster_folder(root, cluster)
    ensure_dir(folder)
    with _folder_lock(folder):
        return _render_locked(folder, cluster, files, recipients, replace, binary)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive flock on the cluster folder itself (no lock file in the Git tree): one render at a time."""
    with exclusive_lock(folder, holder=f"another render into {folder}", folder=True):
        yield


def _render_locked(
    folder: Path,
    cluster: str,
    files: Sequence[RenderedFile],
    recipients: Sequence[str] | None,
    replace: bool,
    binary: Path | None,
) -> ClusterRender:
    remove_stale_temps(folder)  # a killed run's leftovers (ciphertext only); no other render runs now
    planned: list[tuple[RenderedFile, str, bytes | None]] = []
    for f in files:
        action, data = _plan(folder, f, recipients, replace, binary)
        planned.append((f, action, data))
    actions = {f.name: a for f, a, _d in planned}
    stage = folder / f"{TMP_PREFIX}render-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        stage.mkdir(mode=0o700)
        for f, _a, data in planned:
            if data is not None:
                write_new(stage / f.name, data, mode=0o600 if f.secret is not None else f.mode)
        for f, _a, data in planned:
            if data is not None:
                publish(stage / f.name, folder / f.name, replace=True)  # never over a link
                for twin in f.supersedes:
                    if (folder / twin).is_file() and not (folder / twin).is_symlink():
                        (folder / twin).unlink()
                        actions[twin] = "removed"
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    resources = sorted(p.name for p in folder.iterdir() if _RESOURCE.match(p.name) and p.is_file())
    want = kustomization(resources)
    have = _read(folder / KUSTOMIZATION)
    if have != want:
        write_replace(folder / KUSTOMIZATION, want)
        actions[KUSTOMIZATION] = "created" if have is None else "updated"
    else:
        actions[KUSTOMIZATION] = "unchanged"
    fsync_dir(folder)
    return ClusterRender(cluster, folder, actions)


__all__ = [
    "CLUSTERS",
    "KUSTOMIZATION",
    "NAMESPACE_FILE",
    "SOPS_CONFIG",
    "ClusterRender",
    "RenderedFile",
    "check_cluster_name",
    "cluster_folder",
    "kustomization",
    "render_cluster",
    "write_sops_config",
]
