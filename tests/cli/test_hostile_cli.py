"""The hostile user's findings: each test is one fault found by misusing the CLI on purpose.

Wrong order, bad values, special files, piped output, forged inputs: every failure is one
``airgap: error:`` line, the contract's exit code, nothing half-written, no hang.
"""

# ruff: noqa: F811  (the bkeys fixture is imported from tests.bundle_fixtures)

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bundle_fixtures import Keys, bkeys  # noqa: F401
from tests.helpers import REPO, one_error_line, run_cli, run_proc, tree
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


@pytest.mark.parametrize("args", [["release", "keys"], ["release", "keys", "--json"], ["--help"]])
def test_a_reader_that_went_away_gives_exit_141_not_the_verification_failed_code(args: list[str]) -> None:
    """``airgap ... | head -1`` under ``set -o pipefail``: exit 1 would read as "verification failed"."""
    r_fd, w_fd = os.pipe()
    os.close(r_fd)  # the reader is gone before the first write: every write is EPIPE, deterministically
    try:
        p = subprocess.run(
            [sys.executable, "-m", "airgap", *args],
            stdout=w_fd, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
    finally:
        os.close(w_fd)
    assert p.returncode in (0, 128 + signal.SIGPIPE), p.stderr
    assert p.returncode != 1
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr


def test_a_reader_that_went_away_from_a_rich_table_gives_exit_141_too(pki: Path) -> None:
    """``ca list`` prints through rich, whose own broken-pipe handler exited 1."""
    r_fd, w_fd = os.pipe()
    os.close(r_fd)
    try:
        p = subprocess.run(
            [sys.executable, "-m", "airgap", "ca", "list", "--dir", str(pki)],
            stdout=w_fd, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
    finally:
        os.close(w_fd)
    assert p.returncode == 128 + signal.SIGPIPE, p.stderr
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr


@pytest.mark.parametrize("args", [["release", "keys"], ["release", "keys", "--json"]])
def test_stdout_on_a_full_disk_is_one_error_line_not_an_internal_error(args: list[str]) -> None:
    """``airgap ... > /dev/full``: ENOSPC on stdout was 'internal error: OSError', exit 70."""
    with open("/dev/full", "w") as full:
        p = subprocess.run(
            [sys.executable, "-m", "airgap", *args],
            stdout=full, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
    assert p.returncode == 3, p.stderr
    one_error_line(p.stderr, "No space left on device")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["", "--context", "c"], "namespace ''"),  # was a PATCH on /api/v1/namespaces/ (the collection), exit 5
        (["../x", "--context", "c"], "namespace '../x'"),
        (["Shop_NS", "--context", "c"], "namespace 'Shop_NS'"),
        (["shop", "--context", "c", "--revision", "../../x"], "--revision '../../x'"),
    ],
)
def test_mesh_inject_refuses_a_bad_namespace_or_revision_before_any_cluster_is_asked(
    args: list[str], needle: str, tmp_path: Path
) -> None:
    # KUBECONFIG points nowhere: an exit-3 name error proves no cluster (not even the kubeconfig) was read
    r = run_cli("mesh", "inject", *args, env={"KUBECONFIG": str(tmp_path / "absent")})
    assert r.code == 3
    one_error_line(r, needle)


def test_a_huge_cluster_name_is_refused_in_one_short_line_not_echoed_whole(tmp_path: Path) -> None:
    r = run_cli("ca", "issue", "x" * 5000, "--dir", tmp_path / "pki", "--no-passphrase")
    assert r.code == 3
    line = one_error_line(r, "is not valid", "(5000 characters)")
    assert len(line) < 400 and not (tmp_path / "pki").exists()
