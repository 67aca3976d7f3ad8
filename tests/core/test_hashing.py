"""Every byte hashed once: the streaming hash primitives, and the release paths that use them.

The digest objects are counted: :func:`airgap.core.hashing.new_hash` is the one factory, so a test
that swaps it for a counting wrapper sees every byte each digest was fed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airgap.core import hashing
from airgap.core.archive import extract_archive
from airgap.core.hashing import MAP_AT_LEAST, WINDOW, Digests, WriteBehind, copy_hashed, hash_fd, hash_file
from airgap.core.release import extract_release, verify_release
from airgap.errors import InvalidInput, VerificationError
from tests.bundle_fixtures import NOW, Keys, make_bundle, trust_of
from tests.bundle_fixtures import bkeys as bkeys  # a fixture, used by name
from tests.hashing_fixtures import Counted
from tests.release_fixtures import openssl_keypair, openssl_sign


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Counted]]:
    made: list[Counted] = []

    def factory(name: str) -> Counted:
        made.append(Counted(name))
        return made[-1]

    monkeypatch.setattr(hashing, "new_hash", factory)
    yield made


def _data(n: int) -> bytes:
    return os.urandom(n)


# --- the primitives ------------------------------------------------------------------------------


@pytest.mark.parametrize("mmap_off", [False, True], ids=["mapped", "read"])
@pytest.mark.parametrize("size", [0, 1, 4095, MAP_AT_LEAST + 12345, 2 * WINDOW + 1])
def test_hash_file_feeds_each_byte_once(
    tmp_path: Path, counted: list[Counted], monkeypatch: pytest.MonkeyPatch, size: int, mmap_off: bool
) -> None:
    if mmap_off:
        monkeypatch.setenv("AIRGAP_NO_MMAP", "1")
    data = _data(size)
    p = tmp_path / "f"
    p.write_bytes(data)
    digests, got = hash_file(p, ["sha256"])
    assert got == size
    assert digests["sha256"] == hashlib.sha256(data).digest()
    assert [c.fed for c in counted] == [size]  # one digest, every byte once


def test_two_digests_only_when_asked(tmp_path: Path, counted: list[Counted]) -> None:
    data = _data(MAP_AT_LEAST + 1)
    p = tmp_path / "f"
    p.write_bytes(data)
    digests, _ = hash_file(p, ["sha256", "sha384", "sha256"])
    assert digests == {"sha256": hashlib.sha256(data).digest(), "sha384": hashlib.sha384(data).digest()}
    assert sorted((c.name, c.fed) for c in counted) == [("sha256", len(data)), ("sha384", len(data))]


@pytest.mark.parametrize("offset", [0, 1, 4097, WINDOW - 1, WINDOW + 3])
def test_hash_fd_ranges_across_windows(tmp_path: Path, offset: int) -> None:
    data = _data(2 * WINDOW + 999)
    p = tmp_path / "f"
    p.write_bytes(data)
    fd = os.open(p, os.O_RDONLY)
    try:
        for length in (None, 0, 5, MAP_AT_LEAST + 7):
            d = Digests()
            n = hash_fd(fd, d, offset=offset, length=length)
            want = data[offset:] if length is None else data[offset : offset + length]
            assert n == len(want) == d.size
            assert d.hexdigest() == hashlib.sha256(want).hexdigest()
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # the position is not used
    finally:
        os.close(fd)


def test_hash_file_errors_are_exit_3(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="file not found"):
        hash_file(tmp_path / "missing")
    with pytest.raises(InvalidInput, match="is a folder"):
        hash_file(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput, match="not a regular file"):
        hash_file(fifo)


def test_write_behind_writes_and_hashes_in_order(tmp_path: Path, counted: list[Counted]) -> None:
    chunks = [_data(n) for n in (1, 1 << 20, 3, 70_000)]
    calls: list[str] = []
    with open(tmp_path / "a", "wb") as a, open(tmp_path / "b", "wb") as b, WriteBehind(depth=2) as w:
        da, db = Digests(), Digests()
        for i, c in enumerate(chunks):
            w.write(a if i % 2 == 0 else b, da if i % 2 == 0 else db, c)
        w.call(lambda: calls.append("after the writes"))
        w.drain()
        assert calls == ["after the writes"]
    assert (tmp_path / "a").read_bytes() == chunks[0] + chunks[2]
    assert (tmp_path / "b").read_bytes() == chunks[1] + chunks[3]
    assert da.hexdigest() == hashlib.sha256(chunks[0] + chunks[2]).hexdigest()
    assert [c.fed for c in counted] == [len(chunks[0]) + len(chunks[2]), len(chunks[1]) + len(chunks[3])]


MiB = 1024 * 1024


def _cached(path: Path) -> int:
    """Bytes of ``path`` in the page cache (util-linux ``fincore``, an essential package)."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.split()[0])


def test_write_behind_writeback_drops_what_earlier_rounds_wrote_back(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    with open(probe, "wb") as fh:
        fh.write(os.urandom(MiB))
        fh.flush()
        os.fsync(fh.fileno())
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if _cached(probe):
        pytest.skip("this file system keeps clean pages cached after POSIX_FADV_DONTNEED (tmpfs?)")
    big, block = tmp_path / "big", os.urandom(MiB)
    every = hashing.WRITEBACK_EVERY // MiB
    with open(big, "wb") as out, WriteBehind(writeback=True) as w:
        for _ in range(every + every // 4):
            w.write(out, None, block)
        w.drain()
        out.flush()
        os.fsync(out.fileno())  # all of it is clean now; only a later advice can drop it
        for _ in range(every):
            w.write(out, None, block)  # the next advice comes during these
        w.drain()
    # The advice covers the whole file: the clean head is dropped and what stays cached is the
    # tail written since (its writeback just started). Advising only the newest range kept the
    # head cached too, so a 1 GiB fetch grew the cache, and the fresh memory it needs, by 1 GiB.
    assert _cached(big) <= every * MiB
    assert big.stat().st_size == (2 * every + every // 4) * MiB


class _FullDisk(io.BytesIO):
    def write(self, data: Any) -> int:
        if self.tell() > 0:
            raise OSError(28, "No space left on device")
        return super().write(data)


def test_write_behind_reports_the_first_write_error() -> None:
    out, d = _FullDisk(), Digests()
    with WriteBehind() as w:
        w.write(out, d, b"x" * 10)
        w.write(out, d, b"y" * 10)  # fails on the worker
        w.write(out, d, b"z" * 10)  # skipped, never blocks
        with pytest.raises(OSError, match="No space left"):
            w.drain()
        with pytest.raises(OSError, match="No space left"):
            w.write(out, d, b"again")
    assert out.getvalue() == b"x" * 10
    assert d.size == 10  # the digests cover exactly what was written


def test_copy_hashed_copies_and_hashes_each_byte_once_through_reused_buffers(
    tmp_path: Path, counted: list[Counted]
) -> None:
    data = _data((hashing.COPY_BUFFERS + 3) * hashing.CHUNK + 12345)  # more chunks than buffers: each is refilled
    src = tmp_path / "src"
    src.write_bytes(b"head" + data + b"tail")
    d = Digests()
    with open(src, "rb") as fh, open(tmp_path / "out", "wb") as out:
        out.write(b"before|")
        assert copy_hashed(fh.fileno(), 4, len(data), out, d) == len(data)
        out.write(b"|after")
    assert (tmp_path / "out").read_bytes() == b"before|" + data + b"|after"
    assert d.hexdigest() == hashlib.sha256(data).hexdigest()
    assert [c.fed for c in counted] == [len(data)]


class _SlowFile(io.BytesIO):
    def write(self, data: Any) -> int:
        time.sleep(0.005)
        return super().write(data)


class _SlowDigests(Digests):
    def update(self, chunk: Any) -> None:
        time.sleep(0.005)
        super().update(chunk)


@pytest.mark.parametrize("slow", ["writer", "hasher"])
def test_copy_hashed_refills_a_buffer_only_after_both_the_hasher_and_the_writer_are_done(
    tmp_path: Path, slow: str
) -> None:
    # Every chunk differs, and one side lags: a buffer handed back after the fast side alone
    # would be refilled under the slow one, which would then write or hash the next chunk's bytes.
    n = 3 * hashing.COPY_BUFFERS
    data = b"".join(bytes([i]) * hashing.CHUNK for i in range(n))
    src = tmp_path / "src"
    src.write_bytes(data)
    out = _SlowFile() if slow == "writer" else io.BytesIO()
    d = _SlowDigests() if slow == "hasher" else Digests()
    with open(src, "rb") as fh:
        assert copy_hashed(fh.fileno(), 0, len(data), out, d, writeback=False) == len(data)
    assert out.getvalue() == data
    assert d.hexdigest() == hashlib.sha256(data).hexdigest()


def test_copy_hashed_raises_a_write_error_and_never_hangs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(_data(12 * (1 << 20)))  # far more chunks than buffers in flight
    with open(src, "rb") as fh, pytest.raises(OSError, match="No space left"):
        copy_hashed(fh.fileno(), 0, 12 * (1 << 20), _FullDisk(), Digests())


# --- release verify and extract ------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return openssl_keypair(tmp_path_factory.mktemp("signer"), "rel")


def _release(tmp: Path, signer: tuple[Path, Path], *, big: int = MAP_AT_LEAST + 4321) -> tuple[Path, Path, bytes]:
    """A signed tarball with one big incompressible file and a few small ones."""
    tarball = tmp / "istio-1.8.6-asm.8-linux-amd64.tar.gz"
    payload = _data(big)
    with tarfile.open(tarball, "w:gz") as tar:
        root = "istio-1.8.6-asm.8"  # the root folder of the version in the file's name
        for name, data in ((f"{root}/bin/istioctl", payload), (f"{root}/a.yaml", b"a: 1\n"), (f"{root}/b", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    sig = openssl_sign(signer[0], tarball, tmp / f"{tarball.name}.1.sig")
    return tarball, sig, payload


def test_release_verify_hashes_each_byte_once(
    tmp_path: Path, signer: tuple[Path, Path], counted: list[Counted]
) -> None:
    tarball, sig, _ = _release(tmp_path, signer)
    v = verify_release(tarball, sig, key=signer[1])
    assert v.sha256 == hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert [(c.name, c.fed) for c in counted] == [("sha256", tarball.stat().st_size)]


def test_release_extract_hashes_the_tarball_twice_and_each_file_once(
    tmp_path: Path, signer: tuple[Path, Path], counted: list[Counted]
) -> None:
    """Verify (one pass) before extracting anything; extraction hashes the bytes it reads (the
    same read, not a third pass) to prove they are the verified ones; each file once as written."""
    tarball, sig, payload = _release(tmp_path, signer)
    rel = extract_release(tarball, tmp_path / "out", sig, key=signer[1])
    size = tarball.stat().st_size
    fed = sorted(c.fed for c in counted)
    assert fed == sorted([size, size, len(payload), 5, 0])
    assert rel.record["files"]["istio-1.8.6-asm.8/bin/istioctl"]["sha256"] == hashlib.sha256(payload).hexdigest()
    assert (tmp_path / "out" / "istio-1.8.6-asm.8" / "bin" / "istioctl").read_bytes() == payload


def test_release_changed_in_place_after_verification_is_refused(
    tmp_path: Path, signer: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same inode rewritten between the verification and the extraction: nothing is left."""
    import airgap.core.release as release_mod

    tarball, sig, _ = _release(tmp_path, signer)
    original = release_mod._verify_open

    def verify_then_tamper(*args: Any) -> Any:
        verified = original(*args)
        with open(tarball, "r+b") as fh:  # same file, same size: one byte of the big member
            fh.seek(tarball.stat().st_size // 2)
            b = fh.read(1)
            fh.seek(-1, os.SEEK_CUR)
            fh.write(bytes([b[0] ^ 1]))
        return verified

    monkeypatch.setattr(release_mod, "_verify_open", verify_then_tamper)
    with pytest.raises((VerificationError, InvalidInput)):
        extract_release(tarball, tmp_path / "out", sig, key=signer[1])
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".airgap-tmp-")] == []


# --- the tar stream reader -----------------------------------------------------------------------


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_multi_member_gzip_and_zero_padding_extract(tmp_path: Path, counted: list[Counted]) -> None:
    raw = _tar_bytes({"a": _data(300_000), "b": b"hello"})
    cut = 100_000  # two gzip members, as `cat a.gz b.gz` makes, then zero padding
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]) + b"\0" * 1000)
    counted.clear()
    d = Digests()
    entries = {e.path: e for e in extract_archive(archive, tmp_path / "out", digests=d)}
    assert entries["b"].sha256 == hashlib.sha256(b"hello").hexdigest()
    assert (tmp_path / "out" / "a").read_bytes() == raw[512 : 512 + 300_000]
    assert d.size == archive.stat().st_size  # every byte of the archive, once
    assert d.hexdigest() == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_plain_tar_is_read_too(tmp_path: Path) -> None:
    archive = tmp_path / "x.tar"
    archive.write_bytes(_tar_bytes({"dir/f": b"data"}))
    entries = {e.path: e for e in extract_archive(archive, tmp_path / "out")}
    assert entries["dir/f"].size == 4


@pytest.mark.parametrize("cut", [10, 2000, -9])
def test_truncated_gzip_is_refused(tmp_path: Path, cut: int) -> None:
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(gzip.compress(_tar_bytes({"f": _data(5000)}))[:cut])
    with pytest.raises(InvalidInput, match="not a valid tar archive"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_bomb_is_inflated_in_bounded_steps(tmp_path: Path) -> None:
    """64 MiB of zeros compress to ~64 KiB; the ratio cap refuses it without ever holding more
    than one bounded inflate step (the tracemalloc peak stays a few MiB)."""
    import tracemalloc

    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 64 * 1024 * 1024
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match="decompression bomb"):
            extract_archive(archive, tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, peak


# --- bundle create and verify --------------------------------------------------------------------


def test_bundle_create_and_verify_hash_each_byte_once(
    pki: Path, tmp_path: Path, bkeys: Keys, counted: list[Counted]
) -> None:
    """bundle create: the include is read and hashed once as it is written; bundle verify: every
    member once (the large include in place, without a copy)."""
    from airgap.core.bundle import open_bundle

    inc = tmp_path / "istio-1.2.3-linux-amd64.tar.gz"
    inc.write_bytes(_data(MAP_AT_LEAST + 999))
    bundle, *_ = make_bundle(pki, tmp_path, keys=bkeys, includes=(inc,))
    assert [c.fed for c in counted] == [inc.stat().st_size]
    counted.clear()
    vb = open_bundle(bundle, trust_of(bkeys), now=NOW)
    sizes = sorted(m.size for m in vb.manifest.members)
    assert sorted(c.fed for c in counted) == sizes
    entry = vb.manifest.member(f"include/{inc.name}")
    assert entry is not None and entry.sha256 == hashlib.sha256(inc.read_bytes()).hexdigest()
