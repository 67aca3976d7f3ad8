"""``airgap.core.canonical.load_json``: the one strict JSON reader (issue 23 fault 16)."""

from __future__ import annotations

import pytest

from airgap.core.canonical import json_depth, load_json
from airgap.errors import LogTampered, Malformed, TooLarge


def test_fault_16_depth_is_counted_outside_strings_only() -> None:
    assert json_depth(b'{"a": "[[[[{{{{", "b": [[1]]}') == 3
    assert json_depth(b'["\\"[[[[", [2]]') == 2
    assert json_depth(b"42") == 0


def test_fault_16_over_deep_is_malformed_before_json_recurses() -> None:
    with pytest.raises(Malformed, match=r"x\.json is nested too deeply"):
        load_json(b"[" * 100_000 + b"]" * 100_000, what="x.json")
    assert load_json(b"[" * 64 + b"]" * 64, what="x.json") is not None


def test_fault_16_size_duplicates_constants_and_the_chosen_error() -> None:
    with pytest.raises(TooLarge, match="too large"):
        load_json(b"[1, 2, 3]", what="x", max_bytes=4)
    for bad in (b'{"a": 1, "a": 2}', b"[NaN]", b"[1,", b"\xff"):
        with pytest.raises(Malformed, match="x is not valid JSON"):
            load_json(bad, what="x")
    with pytest.raises(LogTampered, match="entry is nested too deeply"):
        load_json(b"[" * 70, what="entry", error=LogTampered, invalid="is changed")
    with pytest.raises(LogTampered, match="entry is changed"):
        load_json(b"{", what="entry", error=LogTampered, invalid="is changed")
