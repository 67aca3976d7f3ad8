"""core/release_lines.py: the newest accepted release of each line, and the downgrade refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.core.release_lines import RELEASES_FILE, check_not_downgrade, record_accepted, release_line
from airgap.errors import InvalidInput, Rollback


def test_lines_and_their_order() -> None:
    assert release_line("1.8.6-asm.8") == ("asm-1.8", (1, 8, 6, 8))
    assert release_line("1.20.3") == ("istio-1.20", (1, 20, 3))
    assert release_line("1.8.10-asm.1")[1] > release_line("1.8.9-asm.12")[1]  # type: ignore[index]
    assert release_line("1.9.0-beta.1") is None and release_line("1") is None


def test_the_mark_only_rises_and_an_older_release_is_refused(tmp_path: Path) -> None:
    check_not_downgrade("1.8.5-asm.1", state=tmp_path)  # nothing accepted yet
    record_accepted("1.8.6-asm.8", state=tmp_path)
    record_accepted("1.8.5-asm.1", state=tmp_path)  # accepted with --allow-downgrade: the mark stays
    record_accepted("1.20.3", state=tmp_path)  # another line
    assert (tmp_path / RELEASES_FILE).stat().st_mode & 0o777 == 0o600
    with pytest.raises(Rollback, match=r"release 1\.8\.5-asm\.1 is older than 1\.8\.6-asm\.8") as err:
        check_not_downgrade("1.8.5-asm.1", state=tmp_path)
    assert err.value.exit_code == 4
    check_not_downgrade("1.8.5-asm.1", state=tmp_path, allow_downgrade=True)
    check_not_downgrade("1.8.6-asm.8", state=tmp_path)  # the same release again
    check_not_downgrade("1.9.0-asm.1", state=tmp_path)  # a newer line
    check_not_downgrade("1.20.1-asm.1", state=tmp_path)  # ASM 1.20 is not Istio 1.20
    with pytest.raises(Rollback):
        check_not_downgrade("1.20.2", state=tmp_path)


@pytest.mark.parametrize(
    "content", [b"{", b"[]", b'{"format": "airgap-releases/1", "lines": {"asm-1.8": "x"}}', b"[" * 5000]
)
def test_a_malformed_state_file_is_exit_3(tmp_path: Path, content: bytes) -> None:
    (tmp_path / RELEASES_FILE).write_bytes(content)
    with pytest.raises(InvalidInput) as err:
        check_not_downgrade("1.8.6-asm.8", state=tmp_path)
    assert err.value.exit_code == 3 and str(tmp_path / RELEASES_FILE) in err.value.message


def test_a_link_at_the_state_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.json").write_text('{"format": "airgap-releases/1", "lines": {}}')
    (tmp_path / RELEASES_FILE).symlink_to("elsewhere.json")
    with pytest.raises(InvalidInput, match="not a regular file"):
        check_not_downgrade("1.8.6-asm.8", state=tmp_path)
    with pytest.raises(InvalidInput, match="not a regular file"):
        record_accepted("1.8.6-asm.8", state=tmp_path)
    assert (tmp_path / "elsewhere.json").read_text() == '{"format": "airgap-releases/1", "lines": {}}'
