"""Safe extraction: every hostile archive is refused (exit 3) and leaves nothing anywhere."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from airgap.core.archive import check_member_name, extract_archive
from airgap.core.limits import Limits
from airgap.errors import InvalidInput, Refused
from tests.helpers import tree
from tests.release_fixtures import EVIL_KINDS, build_tarball, evil_archive

REASONS = {
    "dotdot": "'..' in path",
    "absolute": "absolute path",
    "symlink-out": "outside",
    "symlink-abs": "absolute path",
    "symlink-write-through": "passes through a link",
    "symlink-chain": "link points outside",
    "hardlink-out": "'..' in path",
    "hardlink-abs": "absolute path",
    "device": "device file",
    "fifo": "FIFO file",
    "duplicate": "appears twice",
    "bomb": "decompression bomb",
    "garbage": "not a valid tar archive",
    "zip-dotdot": "'..' in path",
    "zip-absolute": "absolute path",
    "zip-symlink": "link entry in a zip",
    "zip-bomb": "decompression bomb",
}


def test_every_attack_has_a_reason() -> None:
    assert set(REASONS) == set(EVIL_KINDS)


@pytest.mark.parametrize("kind", EVIL_KINDS)
def test_hostile_archive_is_refused(kind: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    archive = evil_archive(kind, src)
    work = tmp_path / "work"
    work.mkdir()
    before = tree(tmp_path)
    with pytest.raises(InvalidInput, match=REASONS[kind]) as err:
        extract_archive(archive, work / "out")
    assert err.value.exit_code == 3
    assert str(archive) in err.value.message
    assert tree(tmp_path) == before  # no output folder, no temp folder, nothing escaped
    assert not Path("/tmp/escaped-abs.txt").exists()


def test_total_size_cap(tmp_path: Path) -> None:
    archive = evil_archive("bomb", tmp_path / "src")
    limits = Limits(max_archive_total=2 * 1024 * 1024, max_archive_ratio=10_000)
    with pytest.raises(InvalidInput, match="more than 2097152 bytes"):
        extract_archive(archive, tmp_path / "out", limits=limits)
    assert not (tmp_path / "out").exists()


def test_member_count_cap(tmp_path: Path) -> None:
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(20):
            info = tarfile.TarInfo(f"istio-1/f{i}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(InvalidInput, match="more than 10 members"):
        extract_archive(archive, tmp_path / "out", limits=Limits(max_archive_members=10))
    assert not (tmp_path / "out").exists()
    extract_archive(archive, tmp_path / "out", limits=Limits(max_archive_members=30))
    assert len(list((tmp_path / "out" / "istio-1").iterdir())) == 20


def test_good_tarball_and_modes(tmp_path: Path) -> None:
    archive = tmp_path / "istio.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, mode in (("istio-1/bin/setuid", 0o4777), ("istio-1/readme", 0o666), ("istio-1/bin/tool", 0o750)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = 2, mode
            tar.addfile(info, io.BytesIO(b"hi"))
        link = tarfile.TarInfo("istio-1/bin/tool-link")
        link.type, link.linkname = tarfile.SYMTYPE, "tool"
        tar.addfile(link)
        hard = tarfile.TarInfo("istio-1/readme2")
        hard.type, hard.linkname = tarfile.LNKTYPE, "istio-1/readme"
        tar.addfile(hard)
        up = tarfile.TarInfo("istio-1/bin/up")
        up.type, up.linkname = tarfile.SYMTYPE, "../readme"
        tar.addfile(up)
    out = tmp_path / "out"
    entries = {e.path: e for e in extract_archive(archive, out)}
    root = out / "istio-1"
    # PEP 706 data filter: setuid and group/other write bits dropped, owner rw kept.
    assert stat.S_IMODE((root / "bin" / "setuid").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "readme").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "bin" / "tool").stat().st_mode) == 0o750
    assert (root / "bin" / "tool-link").is_symlink()
    assert (root / "bin" / "up").read_bytes() == b"hi"
    assert entries["istio-1/readme2"].kind == "hardlink"
    assert entries["istio-1/readme2"].sha256 == entries["istio-1/readme"].sha256
    assert not any(p.name.startswith(".airgap-tmp-") for p in tmp_path.iterdir())


def test_out_must_be_missing_or_empty(tmp_path: Path) -> None:
    archive = tmp_path / "istio.tar.gz"
    build_tarball(archive, "1.8.6-asm.8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(Refused, match="not empty"):
        extract_archive(archive, out)
    assert tree(out) == ["x"]
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(Refused, match="is a link"):
        extract_archive(archive, link)
    assert not (tmp_path / "elsewhere").exists()


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"not a \.tar\.gz or \.zip"):
        extract_archive(tmp_path / "x.rar", tmp_path / "out")
    with pytest.raises(InvalidInput, match="archive not found"):
        extract_archive(tmp_path / "x.tar.gz", tmp_path / "out")
    assert tree(tmp_path) == []


def test_zip_modes(tmp_path: Path) -> None:
    zp = tmp_path / "x.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        info = zipfile.ZipInfo("istio-1/bin/istioctl.exe")
        info.external_attr = 0o104777 << 16  # setuid, world-writable
        zf.writestr(info, b"MZ")
        plain = zipfile.ZipInfo("istio-1/plain.txt")
        plain.external_attr = 0o100666 << 16  # world-writable
        zf.writestr(plain, b"rw for all")
    extract_archive(zp, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out/istio-1/bin/istioctl.exe").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out/istio-1/plain.txt").stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("istio-1/bin/istioctl", "istio-1/bin/istioctl"),
        ("./istio-1//bin/./x", "istio-1/bin/x"),
        ("/etc/passwd", None),
        ("a/../b", None),
        ("..", None),
        ("C:/windows", None),
        ("a\\..\\b", None),
        ("a\x00b", None),
    ],
)
def test_member_names(name: str, ok: str | None) -> None:
    if ok is None:
        with pytest.raises(InvalidInput, match="unsafe member"):
            check_member_name(name, source="x")
    else:
        assert check_member_name(name, source="x") == ok
