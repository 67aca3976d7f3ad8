"""The release catalog: defaults follow the release a command is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.connected.catalog import CATALOG, defaults_for, release_version
from airgap.errors import InvalidInput


def test_asm_186_gives_the_guides_revision_profile_and_range() -> None:
    d = defaults_for("1.8.6-asm.8")
    assert (d.revision, d.profile, d.known) == ("asm-186-8", "asm-multicloud", True)
    assert d.line is not None and d.line.kubernetes == ((1, 16), (1, 19))


def test_a_release_not_in_the_catalog_gets_a_derived_revision_and_no_range() -> None:
    d = defaults_for("1.9.5-asm.2")
    assert (d.revision, d.profile, d.known) == ("asm-195-2", "default", False)
    assert defaults_for("1.20.3").revision == "1-20-3" and defaults_for("1.20.3").known
    assert not defaults_for("1.99.0").known


@pytest.mark.parametrize("bad", ["", "1.8", "latest", "1.8.6-asm", "../1.8.6"])
def test_a_version_that_is_neither_asm_nor_istio_is_bad_input(bad: str) -> None:
    with pytest.raises(InvalidInput, match="not an ASM"):
        defaults_for(bad)


def test_every_catalog_line_has_a_sane_range_and_source() -> None:
    for line in CATALOG.values():
        (lo, hi) = line.kubernetes
        assert lo <= hi and lo[0] == 1 and line.source


def test_release_version_from_the_extracted_folder(tmp_path: Path) -> None:
    (tmp_path / "istio-1.8.6-asm.8").mkdir()
    assert release_version(tmp_path) == "1.8.6-asm.8"
    with pytest.raises(InvalidInput):
        release_version(tmp_path / "missing")
