"""The hostile user's findings: each test is one fault found by misusing the CLI on purpose.

Wrong order, bad values, special files, piped output, forged inputs: every failure is one
``airgap: error:`` line, the contract's exit code, nothing half-written, no hang.
"""

# ruff: noqa: F811  (the bkeys fixture is imported from tests.bundle_fixtures)

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.bundle_fixtures import Keys, bkeys  # noqa: F401
from tests.helpers import one_error_line, run_proc, tree
from tests.release_fixtures import make_signed_release


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe nobody writes to: opening it for reading blocks forever unless done non-blocking."""
    path = tmp_path / "in.fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_bundle_verify_and_inspect_refuse_a_fifo_at_once_instead_of_hanging(
    command: str, fifo: Path, bkeys: Keys
) -> None:
    args = ["bundle", command, fifo] + (["--trust", bkeys.signer_pub] if command == "verify" else [])
    r = run_proc(*args, timeout=60)  # the fault: this waited forever for a writer
    assert r.code == 3
    one_error_line(r, str(fifo), "not a regular file")


def test_release_verify_and_extract_refuse_a_fifo_at_once_instead_of_hanging(fifo: Path, tmp_path: Path) -> None:
    _, sig, pub = make_signed_release(tmp_path / "mirror")
    r = run_proc("release", "verify", fifo, "--signature", sig, "--key", pub, timeout=60)
    assert r.code == 3
    one_error_line(r, str(fifo), "not a regular file")
    out = tmp_path / "out"
    r = run_proc("release", "extract", fifo, "--signature", sig, "--key", pub, "--out", out, timeout=60)
    assert r.code == 3
    one_error_line(r, str(fifo), "not a regular file")
    assert tree(out) == []
