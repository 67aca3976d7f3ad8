"""Scratch folders: removed on the way out, and swept when a killed run left them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airgap.core.scratch import STALE_AFTER, scratch_dir, sweep


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _aged(path: Path) -> Path:
    old = time.time() - STALE_AFTER - 60
    os.utime(path, (old, old))
    return path


def test_the_folder_is_private_and_removed_on_the_way_out_error_or_not(tmp_path: Path) -> None:
    with scratch_dir("airgap-t-", tmp_path) as d:
        assert d.parent == tmp_path and d.name.startswith(f"airgap-t-{os.getpid()}-")
        assert (d.stat().st_mode & 0o777) == 0o700
        (d / "blob").write_bytes(b"x")
    assert not d.exists()
    with pytest.raises(RuntimeError), scratch_dir("airgap-t-", tmp_path) as d2:
        raise RuntimeError("boom")
    assert not d2.exists()


def test_what_a_killed_run_left_is_swept_and_nothing_else(tmp_path: Path) -> None:
    dead = _dead_pid()
    left = tmp_path / f"airgap-t-{dead}-abc_12"
    left.mkdir()
    (left / "blob").write_bytes(b"copy of a verified blob")
    _aged(left)
    fresh = tmp_path / f"airgap-t-{dead}-new"  # a dead pid, but touched just now: maybe another namespace's run
    fresh.mkdir()
    running = tmp_path / f"airgap-t-{os.getppid()}-live"
    running.mkdir()
    _aged(running)
    other_prefix = tmp_path / f"airgap-u-{dead}-abc"
    other_prefix.mkdir()
    _aged(other_prefix)
    link_target = tmp_path / "target"
    link_target.mkdir()
    link = tmp_path / f"airgap-t-{dead}-link"
    link.symlink_to(link_target)
    file = tmp_path / f"airgap-t-{dead}-file"
    file.write_bytes(b"")
    _aged(file)

    with scratch_dir("airgap-t-", tmp_path) as mine:
        assert not left.exists()
        assert fresh.exists() and running.exists() and other_prefix.exists()
        assert link.is_symlink() and link_target.exists() and file.exists()
        assert sweep(tmp_path, "airgap-t-", now=time.time() + 10 * STALE_AFTER) == [fresh]  # its own stays
        assert mine.exists()


def test_a_missing_parent_sweeps_nothing(tmp_path: Path) -> None:
    assert sweep(tmp_path / "nope", "airgap-t-") == []
