"""A SoftHSM2 token for tests: a private config and token folder under a session temp dir.

SoftHSM2 reads ``SOFTHSM2_CONF`` once, when the module is first loaded into a process, and a
token initialised after that is not seen by that process. So one session fixture sets the
config and initialises the token before any test loads the module; tests share the token and
use their own key labels. Skips (with the reason) when SoftHSM2 is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE = Path(os.environ.get("AIRGAP_TEST_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so"))
TOKEN = "airgap-test"
CUSTODY_TOKEN = "airgap-custody"  # its user PIN is changed by the split-custody test: no other test uses it
PIN = "4711-user"
SO_PIN = "0815-security-officer"


@dataclass(frozen=True)
class SoftHSM:
    module: Path
    token_label: str
    pin: str
    pin_file: Path
    conf: Path

    def key_label(self, prefix: str = "root") -> str:
        """A key label no other test uses (the token is shared by the session)."""
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    def options(self, key_label: str) -> tuple[str, ...]:
        """The CLI options that name a key in this token."""
        return (
            "--pkcs11-module",
            str(self.module),
            "--token-label",
            self.token_label,
            "--key-label",
            key_label,
            "--pin-file",
            str(self.pin_file),
        )


@pytest.fixture(scope="session", autouse=True)
def _softhsm_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM | str]:
    """Set up the token before the first test of each process, whichever test that is.

    A test that loads the SoftHSM2 module in-process before the token exists (a CLI run with
    --pkcs11-module, doctor's probe...) would fix the module's configuration for the whole process,
    so this runs first for every test; it yields the reason instead where SoftHSM2 is missing."""
    if not MODULE.is_file():
        yield f"SoftHSM2 is not installed ({MODULE} missing; Debian package softhsm2)"
        return
    util = shutil.which("softhsm2-util")
    if util is None:
        yield "softhsm2-util is not on PATH (Debian package softhsm2)"
        return
    base = tmp_path_factory.mktemp("softhsm")
    tokens = base / "tokens"
    tokens.mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    for label in (TOKEN, CUSTODY_TOKEN):  # both before any test loads the module
        subprocess.run(
            [util, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
            check=True,
            capture_output=True,
        )
    pin_file = base / "pin.txt"
    pin_file.write_text(PIN + "\n")
    try:
        yield SoftHSM(MODULE, TOKEN, PIN, pin_file, conf)
    finally:
        if saved is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = saved


@pytest.fixture(scope="session")
def softhsm(_softhsm_session: SoftHSM | str) -> SoftHSM:
    """The session's SoftHSM2 token (skips, with the reason, where SoftHSM2 is missing)."""
    if isinstance(_softhsm_session, str):
        pytest.skip(_softhsm_session)
    return _softhsm_session
