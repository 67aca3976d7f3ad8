"""Fixtures of the act and ceremony-log tests: a logged PKI, the issue parameters, the SIGKILL loop.

Shared by tests/offline/test_act.py, test_ceremony.py and test_sign_crash.py (a test module never
imports another test module: tests/test_test_imports.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.core.crashpoint import ENV_KILL_AT_WRITE
from airgap.core.keys import encode_private_key
from airgap.offline import ceremony
from airgap.offline.ca import CAStore
from airgap.offline.ceremony import Officer, verify_log
from airgap.offline.issue import issue_intermediates
from tests.conftest import PASSPHRASE
from tests.helpers import REPO

EC = ("--key-type", "ecdsa-p256")
ISSUE = {
    "key_type": "ecdsa-p256",
    "days": 365,
    "org": "Istio",
    "cn": "Intermediate CA",
    "sans": ["DNS:istiod.istio-system.svc"],
    "passphrase": PASSPHRASE,
    "key_passphrase": PASSPHRASE,
    "workers": 1,
}


@dataclass(frozen=True)
class Logged:
    """A PKI folder that keeps a ceremony log, and its officer."""

    pki: Path
    officer: Officer
    key_file: Path | None = None  # the officer's log key (plain PEM), for the CLI


@pytest.fixture(scope="session")
def _logged_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("act-logged")
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = d / "officer.key"
    key_file.write_bytes(encode_private_key(key, None))
    officer = Officer.from_key(key)
    store = CAStore(d / "pki")
    store.init_root(key_type="ecdsa-p256", days=3650, org="Istio", cn="Root CA", passphrase=PASSPHRASE, officer=officer)
    store.issue(["c1", "c2"], **ISSUE, officer=officer)  # type: ignore[arg-type]
    return d / "pki", key_file


@pytest.fixture
def logged(_logged_template: tuple[Path, Path], tmp_path: Path) -> Logged:
    src, key_file = _logged_template
    shutil.copytree(src, tmp_path / "pki")
    from airgap.core.keys import load_private_key

    return Logged(tmp_path / "pki", Officer.from_key(load_private_key(key_file, None)), key_file)


def _proc(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airgap", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        cwd=REPO,
    )


def _acts(pki: Path) -> list[str]:
    return [e.act for e in ceremony.read_entries(pki)]


def _next_act_works(lg: Logged, name: str) -> None:
    """After a crash: the next act runs (recovering first, and recording that) and the log verifies."""
    had_journal = (lg.pki / ".journal.json").exists()
    before = len(_acts(lg.pki))
    issue_intermediates(lg.pki, [name], **ISSUE, officer=lg.officer, notify=None)  # type: ignore[arg-type]
    acts = _acts(lg.pki)[before:]
    assert acts[-1] == "issue"
    if had_journal:
        assert "recover" in acts, acts  # the recovery is itself in the log
    assert not (lg.pki / ".journal.json").exists()
    assert not [p for p in lg.pki.iterdir() if p.name.startswith((".rotate-", ".airgap-tmp-"))]
    verify_log(lg.pki, [lg.officer.key.public_key()])


def _kill_at_every_write(lg: Logged, tmp_path: Path, args: list[str]) -> Iterator[tuple[int, Logged]]:
    """Run ``airgap ARGS`` on a fresh copy of the PKI, killed at write 1, 2, ... until it completes.

    Yields (N, the killed copy). The final, unkilled run must succeed, and there must be writes.
    """
    n = 1
    while True:
        copy = tmp_path / f"kill-{n}"
        shutil.copytree(lg.pki, copy)
        full = [a.replace("{pki}", str(copy)) for a in args]
        p = _proc(*full, env={ENV_KILL_AT_WRITE: str(n)})
        if p.returncode == 0:
            assert n > 1, "the command made no atomic write"
            return
        assert p.returncode == -signal.SIGKILL, (n, p.returncode, p.stderr)
        yield n, Logged(copy, lg.officer, lg.key_file)
        n += 1
        assert n < 200


def _common(lg: Logged, passfile: Path) -> list[str]:
    assert lg.key_file is not None
    return ["--dir", "{pki}", "--passphrase-file", str(passfile), "--log-key", str(lg.key_file)]
