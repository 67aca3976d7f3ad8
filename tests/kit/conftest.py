"""Fixtures for the offline-kit tests: one kit built per test run, shared by the xdist workers.

Building needs the package registry (pip download, hash-checked against requirements/runtime.lock);
installing never does: every install here runs in ``unshare -n`` (a network namespace with no
interface but a down loopback), so pip would fail if it tried to reach anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "kit" / "build_kit.py"


@dataclass(frozen=True)
class Kit:
    tarball: Path
    out: Path  # the --out folder: kit-signing.key/.pub live here
    key: Path
    pub: Path
    stdout: str
    top: str  # airgap-offline-VERSION

    @property
    def tree(self) -> Path:
        """The unpacked kit folder (shared: copy it before changing anything)."""
        return self.out / "unpacked" / self.top


def needs_root_and_unshare() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (CI runs as root) for a network namespace")


@contextmanager
def _shared_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_kit(repo: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BUILD), "--repo", str(repo), "--out", str(out), *extra],
        capture_output=True, text=True, check=False, timeout=900,
    )


def _shared_kit(base: Path, name: str, *extra: str) -> Kit:
    out = base / name
    done = out / "kit.json"
    with _shared_lock(base / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            proc = build_kit(REPO, out, *extra)
            assert proc.returncode == 0, proc.stderr
            (tarball,) = out.glob("airgap-offline-*.tar.gz")
            with tarfile.open(tarball) as tf:
                top = tf.getnames()[0]
                tf.extractall(out / "unpacked", filter="tar")
            done.write_text(json.dumps({"tarball": str(tarball), "stdout": proc.stdout, "top": top}))
    doc = json.loads(done.read_text())
    return Kit(Path(doc["tarball"]), out, out / "kit-signing.key", out / "kit-signing.pub", doc["stdout"], doc["top"])


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A folder every xdist worker of this run sees (the parent of the workers' basetemp)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if worker_id != "master" else base


@pytest.fixture(scope="session")
def kit(shared_tmp: Path) -> Kit:
    """The kit of HEAD for this Python, signed by a key ``make kit`` makes itself (no KIT_SIGN_KEY)."""
    return _shared_kit(shared_tmp, "kit-default")


@pytest.fixture(scope="session")
def installed(kit: Kit, shared_tmp: Path) -> Path:
    """The kit installed once with no network (``--verify-key``: openssl checks the signature too):
    the prefix (read-only use)."""
    needs_root_and_unshare()
    prefix = shared_tmp / "kit-installed" / "airgap"
    with _shared_lock(shared_tmp / "kit-installed.lock"):
        if not (prefix / "bin" / "airgap").exists():
            prefix.parent.mkdir(parents=True, exist_ok=True)
            proc = install(kit.tree, prefix, "--verify-key", str(kit.pub))
            assert proc.returncode == 0, proc.stderr
    return prefix


def install(tree: Path, prefix: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``sh install.sh --prefix PREFIX`` in a network namespace with no network."""
    return subprocess.run(
        ["unshare", "--net", "sh", str(tree / "install.sh"), "--prefix", str(prefix), *extra],
        capture_output=True, text=True, check=False, timeout=900,
    )
