"""Helpers shared by the tests: run the CLI in-process or as a real process."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airgap.offline.ca import CAStore
    from airgap.offline.ceremony import Officer

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Result:
    """Run ``airgap ARGS`` in this process (fast) and return exit code, stdout and stderr."""
    from airgap.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    if env:
        os.environ.update(env)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return Result(code, out.getvalue(), err.getvalue())


def run_proc(*args: str | os.PathLike[str], env: Mapping[str, str] | None = None, timeout: float = 120) -> Result:
    """Run ``python -m airgap ARGS`` as a separate process."""
    full_env = {**os.environ, **(env or {})}
    p = subprocess.run(
        [sys.executable, "-m", "airgap", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def openssl(
    *args: str | os.PathLike[str], check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run the real openssl CLI."""
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, check=check, input=input)


def tree(path: Path) -> list[str]:
    """Every file and folder below ``path`` (relative, sorted): for 'nothing was written' checks."""
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def one_error_line(err: str | Result, *needles: str, alone: bool = True) -> str:
    """The one ``airgap: error:`` line of stderr, holding every ``needle``; no traceback.

    With ``alone`` it must be stderr's only non-blank line; without, other (progress) lines may stand beside it.
    """
    text = err.err if isinstance(err, Result) else err
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("airgap: error: ")]
    assert len(errors) == 1, text
    if alone:
        assert len(lines) == 1, text
    assert "Traceback" not in text, text
    for n in needles:
        assert n in errors[0], text
    return errors[0]


def without_file_override() -> list[str]:
    """A command prefix under which mode bits bind: as root, ``setpriv`` drops CAP_DAC_OVERRIDE/READ_SEARCH.

    Skips the calling test when that is impossible (root without setpriv).
    """
    import shutil

    import pytest

    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("root ignores file modes and setpriv is missing")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def make_pki(
    pki: Path,
    clusters: Sequence[str],
    *,
    passphrase: bytes | None,
    key_passphrase: bytes | None,
    cn: str = "Root CA",
    officer: Officer | None = None,
) -> CAStore:
    """A P-256 root (10 years) and a P-256 intermediate (730 days, the istiod SAN) per cluster, as
    the tests' and benches' PKIs are made; ``passphrase`` encrypts the root key, ``key_passphrase``
    the cluster keys, ``officer`` starts a ceremony log."""
    from airgap.offline.ca import CAStore

    store = CAStore(pki)
    store.init_root(key_type="ecdsa-p256", days=3650, org="Istio", cn=cn, passphrase=passphrase, officer=officer)
    store.issue(
        list(clusters),
        key_type="ecdsa-p256",
        days=730,
        org="Istio",
        cn="Intermediate CA",
        sans=["DNS:istiod.istio-system.svc"],
        passphrase=passphrase,
        key_passphrase=key_passphrase,
        workers=1,
        officer=officer,
    )
    return store
