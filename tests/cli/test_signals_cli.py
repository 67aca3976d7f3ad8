"""Issue 9 item 4: a SIGTERM (or SIGHUP, or Ctrl-C) mid-write leaves no temp file, and a temp that
holds a plaintext key (``bundle create --no-encrypt``) is 0600 while it exists.

The child runs the real CLI with ``publish`` (the last step of every atomic write) replaced by one
that announces the bundle's temp and waits, so the signal arrives at a known point without any timing.
"""

# ruff: noqa: F811  (the bkeys fixture is imported from tests.bundle_fixtures)

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bundle_fixtures import Keys, bkeys  # noqa: F401
from tests.helpers import REPO

CHILD = """
import pathlib, sys, time
import airgap.core.atomic as atomic
flag = pathlib.Path(sys.argv[1])
real = atomic.publish
def held(tmp, final, *, replace):
    if not str(final).endswith(".bundle"):
        return real(tmp, final, replace=replace)
    flag.write_text(str(tmp))
    time.sleep(300)
atomic.publish = held
from airgap.cli import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_during_bundle_create_no_encrypt_leaves_no_plaintext_temp(
    sig: signal.Signals, pki: Path, passfile: Path, bkeys: Keys, tmp_path: Path
) -> None:
    flag, out = tmp_path / "flag", tmp_path / "bundles" / "c1.bundle"
    argv = [
        "bundle", "create", "c1", "--dir", str(pki), "--sign-key", str(bkeys.signer), "--no-encrypt",
        "--passphrase-file", str(passfile), "--out", str(out),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRGAP_")}
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(flag), *argv], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        while not flag.exists() or not flag.read_text():
            if p.poll() is not None:
                raise AssertionError(p.stderr.read() if p.stderr else "child exited")
            time.sleep(0.02)  # polling for the flag, not a timing assert
        tmp = Path(flag.read_text())
        assert tmp.exists() and tmp.parent == out.parent
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600  # it holds the CA key in the clear
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 128 + sig or (sig == signal.SIGINT and p.returncode == 130), err
    assert "Traceback" not in err
    assert not tmp.exists()
    assert list(out.parent.iterdir()) == []
