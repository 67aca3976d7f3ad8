"""The jump host's history: appended, read back in order, damaged lines named, never through a link."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from airgap.core import history
from airgap.errors import InvalidInput, Refused

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def test_events_read_back_in_order(tmp_path: Path) -> None:
    history.record_event(history.BUNDLE_IMPORT, {"cluster": "c1", "bundle_id": "b1"}, state=tmp_path, now=T0)
    history.record_event(history.RELEASE_EXTRACT, {"sha256": "ab"}, state=tmp_path, now=T0)
    got = history.read_events(tmp_path)
    assert [e["kind"] for e in got.events] == ["bundle-import", "release-extract"]
    first = {"bundle_id": "b1", "cluster": "c1", "kind": "bundle-import", "time": "2026-12-01T12:00:00Z"}
    assert got.events[0] == first
    assert got.damaged == ()
    assert os.stat(tmp_path / history.HISTORY_FILE).st_mode & 0o777 == 0o600


def test_absent_history_is_empty(tmp_path: Path) -> None:
    assert history.read_events(tmp_path / "none") == history.History()


def test_damaged_lines_are_named_not_trusted(tmp_path: Path) -> None:
    history.record_event(history.IMAGES_PUSH, {"registry": "r"}, state=tmp_path, now=T0)
    with open(tmp_path / history.HISTORY_FILE, "ab") as fh:
        fh.write(b'{"kind": "images-pu')  # a line cut short by a crash
        fh.write(b"\n" + b"[" * 5000 + b"\n")  # deeply nested
        fh.write(b'{"kind": "made-up", "time": "x"}\n')
    history.record_event(history.IMAGES_PUSH, {"registry": "r2"}, state=tmp_path, now=T0)
    got = history.read_events(tmp_path)
    assert [e["registry"] for e in got.events] == ["r", "r2"]
    assert got.damaged == (2, 3, 4)


def test_unknown_kind_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown history event kind"):
        history.record_event("nope", {}, state=tmp_path)


def test_planted_link_is_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    state = tmp_path / "state"
    state.mkdir()
    (state / history.HISTORY_FILE).symlink_to(victim)
    with pytest.raises(Refused, match="not a regular file"):
        history.record_event(history.BUNDLE_IMPORT, {}, state=state)
    assert victim.read_bytes() == b"keep"


def test_oversized_history_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "HISTORY_CAP", 10)
    history.record_event(history.BUNDLE_IMPORT, {"cluster": "c1"}, state=tmp_path, now=T0)
    with pytest.raises(InvalidInput, match="too large"):
        history.read_events(tmp_path)


def test_state_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGAP_STATE_DIR", str(tmp_path / "a"))
    assert history.resolve_state_dir() == tmp_path / "a"
    monkeypatch.delenv("AIRGAP_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "x"))
    assert history.resolve_state_dir() == tmp_path / "x" / "airgap"
    assert history.resolve_state_dir(tmp_path / "o") == tmp_path / "o"


def test_credentials_in_urls_are_never_recorded(tmp_path: Path) -> None:
    """Issue 23, fault 15: the history is a record airgap keeps; a URL's user-info never reaches it."""
    history.record_event(
        history.IMAGES_PUSH,
        {"registry": "https://bob:S3cretPW@reg.example:5000/mesh", "refs": ["docker://alice:pw@reg/x:1"], "n": 1},
        state=tmp_path,
    )
    (event,) = history.read_events(tmp_path).events
    assert event["registry"] == "https://reg.example:5000/mesh" and event["refs"] == ["docker://reg/x:1"]
    assert b"S3cretPW" not in (tmp_path / history.HISTORY_FILE).read_bytes()
